"""Peak memory of INT8 calibration on every INT8 path, each export in its own process.

Reproduces benchmarks/results/calibration_memory.md:

    .venv/bin/python benchmarks/calibration_memory.py --size 1024x2048 --count 32

For each INT8 path (ONNX Runtime, OpenVINO/NNCF, TensorRT Q/DQ prepare with ModelOpt and with the
ONNX Runtime fallback) one ``danet-export`` of ``danet_demo`` runs in a fresh process with an
empty calibration cache; its peak RSS (``ru_maxrss``), wall time and the planned peak the
export logged before calibrating are recorded. ``--unbounded`` adds the ONNX Runtime path with
ONNX Runtime's own (all-activations-alive) min/max calibration for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

WORKER = r"""
import json, os, resource, sys, tempfile, time
from pathlib import Path
target, options, size, count, out, unbounded = (sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]),
                                                sys.argv[5], sys.argv[6] == "1")
os.environ["DANET_DEPLOY_CACHE"] = tempfile.mkdtemp(prefix="calibmem-cache-")
if unbounded:
    from danet_deploy.export import ort_quant
    original = ort_quant.quantize_qdq
    ort_quant.quantize_qdq = lambda *a, **k: original(*a, **{**k, "bounded_memory": False})
    import danet_deploy.export.onnxruntime as ortt
    ortt.quantize_qdq = ort_quant.quantize_qdq
from danet_deploy.export.pipeline import ExportRequest, export
h, w = map(int, size.split("x"))
logs = []
started = time.perf_counter()
export(ExportRequest(model="danet_demo", target=target, precision="int8", input_size=(h, w), calib_count=count,
                     output=Path(tempfile.mkdtemp(prefix="calibmem-")) / "a", options=options), log=logs.append)
plan = next((l for l in logs if l.startswith("calibration memory:")), None)
json.dump({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "seconds": round(time.perf_counter() - started, 1), "plan": plan}, open(out, "w"))
"""

PATHS = [
    ("onnxruntime", "onnxruntime", {}),
    ("openvino (NNCF)", "openvino", {}),
    ("tensorrt prepare (ModelOpt)", "tensorrt", {"quantizer": "modelopt"}),
    ("tensorrt prepare (ORT fallback)", "tensorrt", {"quantizer": "onnxruntime"}),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1024x2048")
    p.add_argument("--count", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--unbounded", action="store_true", help="also run ORT's own unbounded min/max calibration")
    p.add_argument("--paths", default=",".join(str(i) for i in range(len(PATHS))), help="indices into the path list")
    p.add_argument("--output", default=str(ROOT / "results" / "calibration_memory.md"))
    args = p.parse_args()
    chosen = [PATHS[int(i)] for i in args.paths.split(",")]
    if args.unbounded:
        chosen.append(("onnxruntime, ORT's unbounded calibrator", "onnxruntime", {"__unbounded": True}))
    env = {"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    rows = []
    for label, target, options in chosen:
        unbounded = bool(options.pop("__unbounded", False)) if "__unbounded" in options else False
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            cmd = [
                sys.executable,
                "-c",
                WORKER,
                target,
                json.dumps(options),
                args.size,
                str(args.count),
                str(out),
                "1" if unbounded else "0",
            ]
            proc = subprocess.run(
                cmd,
                env={**env, **{k: v for k, v in __import__("os").environ.items() if k in ("PYTHONPATH", "HOME")}},
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0 or not out.is_file():
                rows.append({"path": label, "error": (proc.stderr or "").strip().splitlines()[-1:]})
            else:
                rows.append({"path": label, **json.loads(out.read_text())})
        print(json.dumps(rows[-1]), flush=True)
    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        "?",
    )
    lines = [
        f"# INT8 calibration memory, danet_demo at {args.size}, {args.count} calibration images",
        "",
        f"Command: `python benchmarks/calibration_memory.py --size {args.size} --count {args.count}"
        f"{' --unbounded' if args.unbounded else ''} --threads {args.threads}`  ",
        f"Machine: {cpu}, {platform.system()} {platform.release()}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| INT8 path | peak RSS MiB | export s | plan logged before calibrating |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['path']} | failed: {' '.join(r['error'])} | | |")
        else:
            lines.append(f"| {r['path']} | {r['peak_rss_mb']:.0f} | {r['seconds']} | {r['plan'] or '-'} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
