"""Process memory: peak resident set size (what the OS had to give this process at worst).

Each benchmark combination runs in its own process, so ``ru_maxrss`` of that process is the
peak of exactly one engine (plus the interpreter and numpy, recorded separately as the
baseline before the engine is loaded, so the engine's own share can be read off).
"""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def current_rss_mb() -> float | None:
    """Current RSS in MiB (psutil), or ``None`` without psutil."""
    try:
        import os

        import psutil
    except ImportError:
        return None
    return round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)
