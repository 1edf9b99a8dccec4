"""Memory-bounded position attention at full resolution: peak memory, exactness, latency cost.

Reproduces benchmarks/results/attention_memory.md:

    .venv/bin/python benchmarks/attention_memory.py            # ~10-15 min on 2 cores, ~10 GB RAM peak

What it measures, each engine run in its own process so peak RSS is its own:
1. danet_r50_d8 (paper size, seeded random weights) at 1x3x1024x2048, exported chunked (the
   planner's default: 16 query chunks) and unchunked; ONNX Runtime and OpenVINO: peak RSS, RSS
   after loading (the model's own footprint), latency, and chunked-vs-unchunked logits
   (max relative error, argmax identity).
2. The latency cost of chunking at 512x1024 (4 chunks vs unchunked), medians of several runs.
3. The dual attention block (PAM + CAM) on a 1x40x224x224 map (N = 50176; the unchunked energy
   alone is 9.4 GiB) with the planner's chunking, in torch: peak RSS.
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

import numpy as np

ROOT = Path(__file__).resolve().parent
GIB = 2**30

WORKER = r"""
import json, resource, sys, time
import numpy as np, psutil
from danet_deploy import runtime
artifact, backend, inputs, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
proc = psutil.Process()
x = np.load(inputs)
session = runtime.load(artifact, backend=backend, threads=2)
loaded_rss = proc.memory_info().rss
times = []
for _ in range(runs):
    t = time.perf_counter(); y = session.infer(x); times.append(time.perf_counter() - t)
if out != "-":
    np.save(out, y)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"loaded_rss": loaded_rss, "peak_rss": peak, "latency_s": times}))
"""

BLOCK = r"""
import json, resource, sys, time, torch
from danet_deploy.model import PositionAttention, ChannelAttention
from danet_deploy.planner import DEFAULT_ATTENTION_BUDGET
torch.set_num_threads(2); torch.manual_seed(0)
n = 224 * 224
chunks = max(1, -(-n * n * 4 // DEFAULT_ATTENTION_BUDGET))
pam, cam = PositionAttention(40, chunks=chunks), ChannelAttention()
with torch.no_grad():
    pam.gamma.fill_(0.5); cam.gamma.fill_(0.5)
    x = torch.randn(1, 40, 224, 224) * 0.1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter(); y = pam(x) + cam(x); seconds = time.perf_counter() - t
print(json.dumps({"chunks": chunks, "rss_before": before, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "seconds": seconds, "finite": bool(torch.isfinite(y).all())}))
"""


def sh(args: list[str]) -> dict:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(args[:4])} ...\n{result.stderr[-3000:]}")
    text = result.stdout.strip()
    try:
        return json.loads(text)  # danet-export --json prints one indented document
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])  # workers print one JSON line last


def export(model: str, size: str, chunks: int | None, out: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "danet_deploy.cli.export",
        "--model",
        model,
        "--input-size",
        size,
        "--output",
        str(out),
        "--json",
    ]
    if chunks is not None:
        args += ["--attention-chunks", str(chunks)]
    print(f"export {model} {size} chunks={chunks or 'planner'}", file=sys.stderr, flush=True)
    sh(args)


def run(artifact: Path, backend: str, inputs: Path, out: str, runs: int = 1) -> dict:
    print(f"run {artifact.name} on {backend} x{runs}", file=sys.stderr, flush=True)
    return sh([sys.executable, "-c", WORKER, str(artifact), backend, str(inputs), out, str(runs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="danet_r50_d8")
    parser.add_argument("--runs", type=int, default=5, help="latency runs at 512x1024")
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--output", default=str(ROOT / "results" / "attention_memory"))
    args = parser.parse_args()
    backends = args.backends.split(",")
    from danet_deploy.data.scenes import generate_scene
    from danet_deploy.model import get_config
    from danet_deploy.runtime.preprocess import preprocess

    pre = get_config(args.model).preprocessing.to_dict()
    results: dict = {
        "model": args.model,
        "date": dt.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "full": {},
        "latency_512x1024": {},
    }
    with tempfile.TemporaryDirectory(prefix="attn-bench-") as tmp:
        tmp = Path(tmp)
        # -- 1. full resolution ---------------------------------------------------------------
        x_full = tmp / "full.npy"
        np.save(x_full, preprocess([generate_scene(1_000_000, 1024, 2048)[0]], pre))
        export(args.model, "1024x2048", None, tmp / "chunked")
        export(args.model, "1024x2048", 1, tmp / "unchunked")
        plan = json.loads((tmp / "chunked" / "manifest.json").read_text())["export"]["attention_plan"]
        results["plan_1024x2048"] = plan
        for backend in backends:
            row = {}
            for kind in ("chunked", "unchunked"):
                row[kind] = run(tmp / kind, backend, x_full, str(tmp / f"{backend}-{kind}.npy"))
            a, b = np.load(tmp / f"{backend}-chunked.npy"), np.load(tmp / f"{backend}-unchunked.npy")
            row["max_rel_error"] = float(np.abs(a - b).max() / np.abs(b).max())
            row["argmax_identical"] = bool((a.argmax(1) == b.argmax(1)).all())
            row["argmax_agreement"] = float((a.argmax(1) == b.argmax(1)).mean())
            results["full"][backend] = row
        # -- 2. latency cost at 512x1024 --------------------------------------------------------
        x_half = tmp / "half.npy"
        np.save(x_half, preprocess([generate_scene(1_000_001, 512, 1024)[0]], pre))
        export(args.model, "512x1024", 1, tmp / "half-unchunked")
        export(args.model, "512x1024", 4, tmp / "half-chunked")
        for backend in backends:
            row = {
                kind: run(tmp / f"half-{kind}", backend, x_half, "-", args.runs + 1)
                for kind in ("unchunked", "chunked")
            }
            med = {k: float(np.median(v["latency_s"][1:])) for k, v in row.items()}
            results["latency_512x1024"][backend] = {
                "median_s": med,
                "chunked_over_unchunked": med["chunked"] / med["unchunked"],
            }
    # -- 3. the dual attention block at 224x224 -------------------------------------------------
    print("dual attention block 1x40x224x224", file=sys.stderr, flush=True)
    results["block_224"] = sh([sys.executable, "-c", BLOCK])
    write(results, Path(args.output))


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Memory-bounded position attention ({results['model']}, {results['date']}, {results['machine']}, 2 threads)",
        "",
        "Command: `.venv/bin/python benchmarks/attention_memory.py`",
        "",
        f"Plan at 1024x2048: N = {results['plan_1024x2048']['positions']}, unchunked energy "
        f"{results['plan_1024x2048']['energy_bytes'] / GIB:.1f} GiB, {results['plan_1024x2048']['chunks']} chunks of "
        f"{results['plan_1024x2048']['chunk_bytes'] / 2**20:.0f} MiB.",
        "",
        "## 1x3x1024x2048",
        "",
        "| engine | attention | RSS after load (GiB) | peak RSS (GiB) | peak - load (GiB) | latency (s) |",
        "|---|---|---|---|---|---|",
    ]
    for backend, row in results["full"].items():
        for kind in ("chunked", "unchunked"):
            r = row[kind]
            lines.append(
                f"| {backend} | {kind} | {r['loaded_rss'] / GIB:.2f} | {r['peak_rss'] / GIB:.2f} | "
                f"{(r['peak_rss'] - r['loaded_rss']) / GIB:.2f} | {r['latency_s'][0]:.1f} |"
            )
    lines += ["", "| engine | chunked vs unchunked: max relative error | argmax identical |", "|---|---|---|"]
    for backend, row in results["full"].items():
        lines.append(
            f"| {backend} | {row['max_rel_error']:.2e} | {row['argmax_identical']} ({row['argmax_agreement']:.6f}) |"
        )
    lines += [
        "",
        "## Latency cost of chunking at 512x1024 (4 chunks vs unchunked, median)",
        "",
        "| engine | unchunked (ms) | 4 chunks (ms) | ratio |",
        "|---|---|---|---|",
    ]
    for backend, row in results["latency_512x1024"].items():
        m = row["median_s"]
        lines.append(
            f"| {backend} | {m['unchunked'] * 1e3:.0f} | {m['chunked'] * 1e3:.0f} "
            f"| {row['chunked_over_unchunked']:.3f} |"
        )
    b = results["block_224"]
    lines += [
        "",
        "## Dual attention block, 1x40x224x224 (N = 50176; unchunked energy 9.4 GiB), torch",
        "",
        f"{b['chunks']} chunks: peak RSS {b['peak_rss'] / GIB:.2f} GiB (before the block {b['rss_before'] / GIB:.2f} GiB), "
        f"{b['seconds']:.1f} s, finite output: {b['finite']}. Exactness vs the NumPy oracle on sampled rows: "
        "tests/test_model.py::test_seed_case_dual_attention_224.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
