"""Progress bars for long work (calibration, training, benchmarks, engine builds), on stderr.

tqdm is optional: without it (or when disabled) long work runs silently rather than failing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr (``options`` go to tqdm), or ``None`` when disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    options.setdefault("file", sys.stderr)
    options.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **options)


def track(iterable: Iterable[Any], *, enabled: bool = True, **options: Any) -> Iterable[Any]:
    """``iterable`` itself, wrapped in a progress bar when one is available."""
    bar = progress_bar(iterable, enabled=enabled, **options)
    return iterable if bar is None else bar
