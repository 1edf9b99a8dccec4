"""What the benchmark ran on: CPU model and SIMD features, cores, memory, GPU, library versions.

Recorded with every result because CPU inference speed (and INT8 speed-ups in particular)
depends on instruction sets: without VNNI/AVX-512, INT8 convolutions gain much less than on
recent Xeons, so a table is only meaningful next to the flags of the CPU that produced it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import NotRequired, TypedDict

from ..util.cpu import read_cpuinfo

#: SIMD/matrix features that decide which kernels FP32/FP16/INT8 engines can use.
FEATURE_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimddp",
)


class CpuJson(TypedDict):
    """``machine.cpu`` as written (read back as :class:`~danet_deploy.bench.sections.CpuInfo`)."""

    model: str | None
    arch: str
    features: dict[str, bool]
    logical_cores: int | None
    physical_cores: int | None
    affinity_cores: int | None


class LoadAverageJson(TypedDict):
    before: list[float] | None
    after: list[float] | None


class MachineJson(TypedDict):
    """``machine`` as written (read back as :class:`~danet_deploy.bench.sections.MachineInfo`);
    ``load_average`` is added by the run that measured it."""

    cpu: CpuJson
    memory_gib: float | None
    gpus: list[dict[str, str]]
    os: str
    python: str
    libraries: dict[str, str]
    load_average: NotRequired[LoadAverageJson]


def cpu_info() -> CpuJson:
    """CPU model name and the relevant feature flags (from ``/proc/cpuinfo`` on Linux)."""
    model, flags = read_cpuinfo()
    return {
        "model": model,
        "arch": platform.machine(),
        "features": {name: name in flags for name in FEATURE_FLAGS if flags},
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def memory_total_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def nvidia_smi(*query: str) -> str | None:
    """``nvidia-smi QUERY...``'s output, or ``None`` without an NVIDIA GPU (or when it fails or hangs)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(["nvidia-smi", *query], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as reported by ``nvidia-smi`` (empty when there is none)."""
    out = nvidia_smi("--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    if out is None:
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: a busy shared machine makes every latency noisier."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> MachineJson:
    """Everything above plus OS and library versions, as one JSON-ready dict."""
    from ..util.versions import tool_versions

    return {
        "cpu": cpu_info(),
        "memory_gib": memory_total_gib(),
        "gpus": gpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": tool_versions("matplotlib", "psutil"),
    }
