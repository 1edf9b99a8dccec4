"""Soak: 10 000 ``Session.run`` calls at 128x128 on one Session: memory and file descriptors must not grow.

    PYTHONPATH=. .venv/bin/python benchmarks/soak.py                      # onnxruntime, 10 000 calls
    PYTHONPATH=. .venv/bin/python benchmarks/soak.py --backend openvino --calls 10000 --threads 2

Exports danet_demo at 128x128 (static, FP32 ONNX) into a temporary folder, then calls ``run`` on
a fresh random image each time (so no cache can hide a leak), sampling RSS (``/proc/self/statm``)
and the open file-descriptor count (``/proc/self/fd``) every ``--every`` calls. Growth is measured
from the sample after ``--warmup`` calls (allocator arenas and lazy initialisation settle there)
to the last sample. Criteria from the hardening issue: RSS growth < 2 %, no fd growth. Linux only.
Writes the JSON result to ``--output`` (default benchmarks/results/soak-<backend>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(artifact: Path, backend: str | None, calls: int, every: int, warmup: int, threads: int) -> dict:
    from danet_deploy import runtime

    rng = np.random.default_rng(0)
    samples: list[dict] = []
    started = time.perf_counter()
    with runtime.load(artifact, backend=backend, threads=threads) as session:
        for i in range(1, calls + 1):
            image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            mask = session.run(image)
            assert mask.shape == (128, 128)
            if i % every == 0 or i == warmup:
                samples.append(
                    {
                        "call": i,
                        "rss_mib": round(rss_bytes() / 2**20, 2),
                        "fds": open_fds(),
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                )
    base = next(s for s in samples if s["call"] >= warmup)
    last = samples[-1]
    growth = (last["rss_mib"] - base["rss_mib"]) / base["rss_mib"]
    peak = max(s["rss_mib"] for s in samples if s["call"] >= warmup)
    return {
        "calls": calls,
        "warmup": warmup,
        "rss_mib_after_warmup": base["rss_mib"],
        "rss_mib_last": last["rss_mib"],
        "rss_mib_peak_after_warmup": peak,
        "rss_growth_pct": round(100 * growth, 3),
        "fds_after_warmup": base["fds"],
        "fds_last": last["fds"],
        "fd_growth": last["fds"] - base["fds"],
        "ms_per_call": round(1000 * last["seconds"] / calls, 2),
        "pass": bool(growth < 0.02 and last["fds"] <= base["fds"]),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino"))
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.util.cpu import read_cpuinfo

    cpu, flags = read_cpuinfo()
    with tempfile.TemporaryDirectory(prefix="danet-soak-") as tmp:
        artifact, _ = export(
            ExportRequest("danet_demo", input_size=(128, 128), output=Path(tmp) / "art"), log=lambda _: None
        )
        result = soak(artifact, args.backend, args.calls, args.every, args.warmup, args.threads)
    result.update(
        backend=args.backend,
        threads=args.threads,
        input="1x3x128x128 (danet_demo, static FP32 ONNX)",
        command="python " + " ".join(shlex.quote(a) for a in sys.argv),
        machine={
            "cpu": cpu,
            "features": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "amx_tile")),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    out = args.output or ROOT / "results" / f"soak-{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
