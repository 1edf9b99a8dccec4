"""One rule for counts that users pass as numbers: threads, class counts, tile sides, queue depths.

Why one place: ``int()`` truncates ``1.5`` silently, ``True`` is an int to Python, and a NaN or a
string fails far from the argument that carried it. Each caller keeps its own message (naming its
option); what counts as a whole number is decided here. Torch-free.
"""

from __future__ import annotations

import numbers
from typing import Any

#: The most classes a model may have: far above any segmentation dataset (ADE20K-full has 3688).
#: Here, below both ``model`` and the manifest, so the runtime checks it without importing ``model``.
MAX_CLASSES = 65536


def is_count(value: Any, low: int = 1, high: int | None = None) -> bool:
    """Whether ``value`` is a whole number (a Python or numpy integer, not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    n = int(value)
    return low <= n and (high is None or n <= high)
