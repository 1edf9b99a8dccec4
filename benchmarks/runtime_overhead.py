"""What the runtime costs around the engine, and what streaming and in-graph masks buy.

For each engine (ONNX Runtime, OpenVINO) and size, in one process per engine so the ratios compare
like with like on the same machine:

* ``raw``: the backend's own call on an already preprocessed tensor (the engine alone);
* ``run logits``: ``Session.run(uint8 image)`` of a ``--emit logits`` artifact (preprocess, engine,
  host resize/arg-max): today's path, the baseline;
* ``run mask``: ``Session.run`` of a ``--emit mask`` artifact (arg-max in the graph);
* ``stream``: ``Session.stream`` over N frames vs the raw engine back to back on the same frames;
* host bytes per frame that leave the engine (logits vs mask) and the process's peak RSS growth.

Usage: python benchmarks/runtime_overhead.py [--model danet_edge_r18_d8] [--sizes 512x512,1024x2048]
       [--frames 200] [--threads 2] [--out FILE.md [--force]]
(default --out: a fresh runs/benchmarks/runtime_overhead-<time>/ folder; the committed
benchmarks/results/runtime_overhead.md is replaced only by naming it with --force)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def measure(
    artifact_logits: str,
    artifact_mask: str,
    backend: str,
    size: tuple[int, int],
    frames: int,
    threads: int,
    repeats: int,
    stream_rounds: int = 5,
) -> dict:
    """Runs inside a worker process (one engine per process)."""

    from danet_deploy import runtime
    from danet_deploy.bench.memory import peak_rss_mb
    from danet_deploy.data.scene_video import scene_pan
    from danet_deploy.runtime.preprocess import preprocess

    images = scene_pan(frames=min(frames, 24), size=size)[0]
    stream_frames = [images[i % len(images)] for i in range(frames)]
    out: dict = {"backend": backend, "size": list(size), "threads": threads}

    def p50(fn, n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    for kind, artifact in (("logits", artifact_logits), ("mask", artifact_mask)):
        rss_before = peak_rss_mb()
        with runtime.load(artifact, backend=backend, threads=threads) as session:
            tensor = session.check_tensor(preprocess([images[0]], session.preprocessing, size))
            engine = session.backend.infer_outputs if kind == "mask" else session.backend.infer
            for _ in range(3):  # warm-up (OpenVINO compiles on the first call)
                engine(tensor)
                session.run(images[0])
            raw, run = [], []
            for _ in range(repeats):  # interleaved, so drift hits both alike
                raw.append(p50(lambda: engine(tensor), 1))  # noqa: B023 p50 calls it in this iteration
                run.append(p50(lambda: session.run(images[0]), 1))
            out[f"raw_{kind}_ms"] = statistics.median(raw)
            out[f"run_{kind}_ms"] = statistics.median(run)
            outputs = session.backend.infer_outputs(tensor)
            out[f"host_bytes_{kind}"] = int(sum(v.nbytes for v in outputs.values()))
            if kind == "mask":
                start = time.perf_counter()
                for f in stream_frames:
                    engine(session.check_tensor(preprocess([f], session.preprocessing, size)))
                raw_pipeline = time.perf_counter() - start
                tensors = [session.check_tensor(preprocess([f], session.preprocessing, size)) for f in images]
                # alternating blocks (engine, stream, engine, stream ...): the machine's drift over a
                # minute hits both alike, and the per-block ratios show the spread
                block = max(1, frames // stream_rounds)
                back_to_back = streamed = 0.0
                count = 0
                ratios = []
                for r in range(stream_rounds):
                    chunk = stream_frames[r * block : (r + 1) * block] or stream_frames[:block]
                    start = time.perf_counter()
                    for i in range(len(chunk)):
                        engine(tensors[i % len(tensors)])
                    engine_s = time.perf_counter() - start
                    start = time.perf_counter()
                    done = sum(1 for _ in session.stream(iter(chunk), depth=2))
                    stream_s = time.perf_counter() - start
                    back_to_back += engine_s
                    streamed += stream_s
                    count += done
                    ratios.append((done / stream_s) / (len(chunk) / engine_s))
                out.update(
                    stream_fps=count / streamed,
                    engine_back_to_back_fps=count / back_to_back,
                    sequential_fps=frames / raw_pipeline,
                    stream_frames=count,
                    stream_ratio_median=statistics.median(ratios),
                    stream_ratio_min=min(ratios),
                    stream_ratio_max=max(ratios),
                    stream_rounds=stream_rounds,
                )
        out[f"peak_rss_growth_{kind}_mb"] = round(peak_rss_mb() - rss_before, 1)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="danet_edge_r18_d8")
    p.add_argument("--sizes", default="512x512,1024x2048")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument(
        "--stream-rounds", type=int, default=5, help="alternating engine/stream blocks the stream frames are split into"
    )
    p.add_argument("--backends", default="onnxruntime,openvino")
    p.add_argument(
        "--out", type=Path, help="Markdown report (a .json beside it); default: a fresh folder under runs/benchmarks/"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out (and its .json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(**spec)))
        return 0
    from danet_deploy.util.result_files import benchmark_result_paths

    # checked before minutes of measuring: the default never lands on the committed results
    out, out_json = benchmark_result_paths(args.out, ["runtime_overhead.md", "runtime_overhead.json"], ROOT, args.force)
    from danet_deploy.bench.machine import machine_info
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.util.files import atomic_write_text

    rows = []
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for text in args.sizes.split(","):
            size = _size(text)
            frames = args.frames if size[0] * size[1] <= 512 * 512 else max(20, args.frames // 10)
            arts = {}
            for emit in ("logits", "mask"):
                folder, _ = export(
                    ExportRequest(
                        model=args.model, target="onnx", input_size=size, emit=emit, output=Path(tmp) / f"{text}-{emit}"
                    ),
                    log=lambda m: None,
                )
                arts[emit] = str(folder)
            for backend in args.backends.split(","):
                spec = {
                    "artifact_logits": arts["logits"],
                    "artifact_mask": arts["mask"],
                    "backend": backend,
                    "size": size,
                    "frames": frames,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "stream_rounds": args.stream_rounds,
                }
                print(f"measuring {backend} {text} ({frames} stream frames)", file=sys.stderr, flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=True
                )
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cpu = machine_info()["cpu"]
    lines = [
        f"# Runtime overhead, streaming and in-graph masks: {args.model}",
        "",
        f"- machine: {cpu.get('model')}, {cpu.get('logical_cores')} logical cores; features: "
        + " ".join(k for k, v in (cpu.get("features") or {}).items() if v),
        f"- command: `python benchmarks/runtime_overhead.py --model {args.model} --sizes {args.sizes} "
        f"--frames {args.frames} --threads {args.threads} --stream-rounds {args.stream_rounds}`",
        f"- {args.threads} threads per engine, p50 of {args.repeats} interleaved calls; stream over {args.frames} "
        f"frames at 512x512 (a tenth at larger sizes) in {args.stream_rounds} blocks alternating with the engine "
        "back to back on the same frames; stream / engine is the median of the blocks' ratios [min-max]",
        "",
        "| engine | size | raw engine ms (logits) | run() logits ms | overhead | raw engine ms (mask) | "
        "run() mask ms | overhead | host bytes/frame logits -> mask | stream fps | engine back-to-back fps | "
        "stream / engine | sequential run fps |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        oh_l = r["run_logits_ms"] / r["raw_logits_ms"] - 1
        oh_m = r["run_mask_ms"] / r["raw_mask_ms"] - 1
        lines.append(
            f"| {r['backend']} | {r['size'][0]}x{r['size'][1]} | {r['raw_logits_ms']:.1f} | "
            f"{r['run_logits_ms']:.1f} | {100 * oh_l:+.1f}% | {r['raw_mask_ms']:.1f} | {r['run_mask_ms']:.1f} | "
            f"{100 * oh_m:+.1f}% | {r['host_bytes_logits'] / 2**20:.1f} MiB -> "
            f"{r['host_bytes_mask'] / 2**20:.2f} MiB | {r['stream_fps']:.2f} | "
            f"{r['engine_back_to_back_fps']:.2f} | {r['stream_ratio_median']:.3f} [{r['stream_ratio_min']:.2f}-"
            f"{r['stream_ratio_max']:.2f}] | "
            f"{r['sequential_fps']:.2f} |"
        )
    lines += [
        "",
        "Peak RSS growth while loading and running (MiB, logits / mask artifact): "
        + "; ".join(
            f"{r['backend']} {r['size'][0]}x{r['size'][1]}: {r['peak_rss_growth_logits_mb']} / "
            f"{r['peak_rss_growth_mask_mb']}"
            for r in rows
        ),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines))
    atomic_write_text(out_json, json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out_json.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
