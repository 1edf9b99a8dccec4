"""danet-eval's throughput on a 1024x2048 set vs the engine's own throughput, as a ratio from one run.

The goal (issue: accuracy on your dataset) is that decoding PNGs, reading and mapping labels,
preprocessing, resizing logits back to 1024x2048 and scoring hide behind the engine, so that
``danet-eval`` runs at >= 0.9x what ``danet-bench`` measures for the engine alone.

* ``engine``: ``Session.infer`` on an already preprocessed tensor at the engine's size, back to back
  (what danet-bench's rows time), as images/s;
* ``eval``: :func:`danet_deploy.verify.evaluate.evaluate` over a Cityscapes-layout folder of
  1024x2048 generated scenes (PNG images, ``*_gtFine_labelIds.png`` labels mapped by the official
  table), images/s from its own wall time.

Both run in this one process, interleaved round by round (engine, eval, engine, eval ...), so a
busy machine slows both alike and the ratio stays meaningful; the machine (CPU flags, load) is
recorded. Usage:

    python benchmarks/eval_throughput.py [--model danet_demo] [--engine-size HxW] [--images 12]
        [--rounds 2] [--threads 2] [--target onnx] [--emit logits] [--out benchmarks/results/eval_throughput.md]

By default the engine takes the images at their own size (1024x2048), as mmsegmentation's
Cityscapes protocol runs them (Resize(2048, 1024) keep_ratio is the identity there): the host then
decodes, arg-maxes and scores while the engine runs the next image. ``--engine-size 512x1024``
measures a downscaled engine instead, where the host also resizes 8x512x1024 logits to 1024x2048
per image (bilinear, as the protocol requires), which costs more than a small engine's own run on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def engine_rate(session, tensor, seconds: float) -> float:
    """Images/s of the engine alone: infer back to back for about ``seconds`` (one warm-up first)."""
    session.infer_outputs(tensor)  # every output the artifact emits (logits or an in-graph mask)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        session.infer_outputs(tensor)
        times.append(time.perf_counter() - start)
    return tensor.shape[0] / statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="danet_demo")
    p.add_argument("--target", default="onnx")
    p.add_argument("--precision", default="fp32")
    p.add_argument(
        "--engine-size",
        type=_size,
        default=None,
        help="engine input HxW (default: the image size, as the mmseg Cityscapes protocol feeds it)",
    )
    p.add_argument("--image-size", type=_size, default=(1024, 2048))
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--emit", default="logits", choices=("logits", "mask", "both"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_throughput.md")
    args = p.parse_args()
    args.engine_size = args.engine_size or args.image_size

    from danet_deploy import runtime
    from danet_deploy.bench.machine import load_average, machine_info
    from danet_deploy.data.images import read_image
    from danet_deploy.data.scene_layouts import write_scene_dataset
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest
    from danet_deploy.runtime.preprocess import preprocess
    from danet_deploy.verify.evaluate import EvalRequest, evaluate

    machine = machine_info()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        root = Path(tmp)
        data = root / "cityscapes"
        write_scene_dataset("cityscapes", data, count=args.images, size=args.image_size)
        artifact, _ = export(
            ExportRequest(
                model=args.model,
                target=args.target,
                precision=args.precision,
                input_size=args.engine_size,
                output=str(root / "artifact"),
                emit=args.emit,
            ),
            log=lambda _m: None,
        )
        rounds = []
        for _ in range(args.rounds):
            with runtime.load(artifact, threads=args.threads) as session:
                image = read_image(next((data / "leftImg8bit").rglob("*.png")))
                tensor = preprocess([image], session.preprocessing, args.engine_size)
                engine = engine_rate(session, tensor, seconds=max(5.0, args.images * 0.5))
            outcome = evaluate(
                EvalRequest(
                    models=(str(artifact),), data=f"cityscapes:{data}", threads=args.threads, quiet=True, worst=0
                ),
                log=lambda _m: None,
            )
            result = outcome.results[0]
            rate = result.metrics.images / result.seconds
            rounds.append(
                {
                    "engine_images_per_s": round(engine, 3),
                    "eval_images_per_s": round(rate, 3),
                    "ratio": round(rate / engine, 3),
                    "miou": round(result.metrics.miou(), 6),
                }
            )
            print(f"round {len(rounds)}: engine {engine:.2f} img/s, eval {rate:.2f} img/s, ratio {rate / engine:.3f}")
    ratio = statistics.median(r["ratio"] for r in rounds)
    report = {
        "config": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
        "rounds": rounds,
        "ratio_median": round(ratio, 3),
        "goal": 0.9,
        "meets_goal": ratio >= 0.9,
        "machine": {"cpu": machine["cpu"], "load_average": {"before": load_before, "after": load_average()}},
    }
    cpu = machine["cpu"]
    lines = [
        "# danet-eval throughput vs the engine alone",
        "",
        (
            f"Command: `python benchmarks/eval_throughput.py --model {args.model} --target {args.target} --precision "
            f"{args.precision} --engine-size {args.engine_size[0]}x{args.engine_size[1]} --images {args.images} "
            f"--rounds {args.rounds} --threads {args.threads} --emit {args.emit} --out {_shown(args.out)}`"
        ),
        "",
        (
            f"{args.images} generated scenes at {args.image_size[0]}x{args.image_size[1]} in the Cityscapes layout (PNG, "
            f"*_gtFine_labelIds.png); engine input {args.engine_size[0]}x{args.engine_size[1]} (static"
            + (
                "; the images go in at their own size, the host arg-maxes the logits)."
                if args.engine_size == args.image_size
                else "; danet-eval resizes each image to it and the logits back to the image size before scoring)."
            )
        ),
        "",
        "| round | engine alone (img/s) | danet-eval (img/s) | ratio |",
        "|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {r['engine_images_per_s']:.2f} | {r['eval_images_per_s']:.2f} | {r['ratio']:.3f} |"
            for i, r in enumerate(rounds)
        ],
        "",
        f"Median ratio **{ratio:.3f}** (goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}).",
        "",
        (
            f"Machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores, flags "
            f"{', '.join(k for k, v in cpu.get('features', {}).items() if v)}; "
            f"load average before {load_before}, after {report['machine']['load_average']['after']}."
        ),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"ratio {ratio:.3f}; written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
