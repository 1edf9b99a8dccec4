"""Process memory: peak resident set size (what the OS had to give this process at worst).

Each benchmark combination runs in its own process, so that process's high-water mark is the
peak of exactly one engine (plus the interpreter and numpy, recorded separately as the
baseline before the engine is loaded, so the engine's own share can be read off).
"""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``, the high-water mark of this process's
    own address space. ``ru_maxrss`` is not used there because it survives ``fork``+``exec``: a
    worker started by a parent that held 500 MiB reports at least 500 MiB, whatever it used.
    Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS) is the fallback.
    """
    import resource

    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 2**10, 1)
    except (OSError, ValueError, IndexError):
        pass

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
