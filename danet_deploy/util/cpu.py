"""What this CPU is: model name and feature flags, read once from ``/proc/cpuinfo``.

Shared by the exporters (INT8 formats depend on VNNI/AMX) and the benchmark (which records the
machine), so both see the same facts. Empty flags off Linux.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any


def read_cpuinfo(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """``(model name, feature flags)`` of the first CPU listed (x86 ``flags`` / ARM ``Features``)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    with contextlib.suppress(OSError):
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return model, flags


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU facts that decide INT8 formats and bfloat16 training: architecture, the dot-product
    extensions and native bfloat16 arithmetic."""
    _, flags = read_cpuinfo(cpuinfo)
    return {
        "machine": platform.machine(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
        "asimddp": "asimddp" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }
