"""Deprecated spelling of :mod:`danet_deploy.verify.parity`, where parity moved with the package's relayout.

Why kept: ``from danet_deploy.parity import run_parity`` was the documented Python API (README and
docs/api.md) before the move; code written against it keeps working, with a DeprecationWarning that
names the new path. The name is the very module, so every function and record is the same object.
"""

from __future__ import annotations

import sys
import warnings

from .verify import parity as _parity

warnings.warn(
    "danet_deploy.parity moved to danet_deploy.verify.parity; import run_parity from there",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _parity
