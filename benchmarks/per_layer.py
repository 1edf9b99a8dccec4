"""Does the per-layer report rediscover the attention-float policy on its own?

Reproduces benchmarks/results/per_layer-<model>.md (+ .json, .png):

    .venv/bin/python benchmarks/per_layer.py --model danet_r50_d8 --size 512x1024 --calib-count 8 --images 2

Exports the model to ONNX Runtime INT8 with ``--policy quantize-all`` (nothing kept in float),
runs ``danet-parity --per-layer`` against the re-exported FP32 reference, and lists the layers
ranked by the noise they add, marking the attention core (PAM/CAM energy MatMuls, their
softmaxes, the attention-times-value MatMuls: the nodes ``attention-float`` keeps in float).
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="danet_r50_d8")
    p.add_argument("--size", default="512x1024")
    p.add_argument("--calib-count", type=int, default=8)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    out = ROOT / "results" / f"per_layer-{args.model}"
    out.parent.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "int8"
        export_cmd = [
            py,
            "-m",
            "danet_deploy.cli.export",
            "--model",
            args.model,
            "--target",
            "onnxruntime",
            "--precision",
            "int8",
            "--policy",
            "quantize-all",
            "--input-size",
            args.size,
            "--calib-count",
            str(args.calib_count),
            "-o",
            str(art),
        ]
        subprocess.run(export_cmd, check=True)
        parity_cmd = [
            py,
            "-m",
            "danet_deploy.cli.parity",
            str(art),
            "--per-layer",
            "--generated",
            str(args.images),
            "--threads",
            str(args.threads),
            "--output",
            f"{out}.json",
            "--plot",
            f"{out}.png",
            "--no-manifest",
        ]
        subprocess.run(parity_cmd, check=False, stdout=subprocess.DEVNULL)
        # the attention core as the policy finds it, on the FP32 graph (same node names, no Q/DQ in the way)
        fp32 = Path(tmp) / "fp32"
        subprocess.run(
            [
                py,
                "-m",
                "danet_deploy.cli.export",
                "--model",
                args.model,
                "--target",
                "onnx",
                "--input-size",
                args.size,
                "-o",
                str(fp32),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        from danet_deploy.export.policy import PrecisionPolicy

        attention = set(PrecisionPolicy.from_spec("attention-float").float_nodes(fp32 / "model.onnx"))
    report = json.loads(Path(f"{out}.json").read_text())
    layers = [l for l in report["layers"] if l["matched"] and l["added_nsr"] is not None]
    layers.sort(key=lambda l: -(l["added_nsr"] or 0))
    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        "?",
    )
    rank_of = {l["tensor"]: i + 1 for i, l in enumerate(layers)}
    att = [l for l in layers if l["node"] in attention]
    lines = [
        f"# Per-layer INT8 report: {args.model} `quantize-all`, ONNX Runtime, {args.size}",
        "",
        f"Command: `python benchmarks/per_layer.py --model {args.model} --size {args.size} --calib-count "
        f"{args.calib_count} --images {args.images} --threads {args.threads}`  ",
        f"Machine: {cpu}, {platform.system()} {platform.release()}; "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; model weights: "
        f"{'shipped (trained)' if args.model == 'danet_demo' else 'seeded random (untrained preset)'}",
        "",
        f"{report['matched']}/{report['layers_total']} layers matched. Attention-core layers (the nodes "
        f"`attention-float` keeps in float) rank: {', '.join(str(rank_of[l['tensor']]) for l in att) or 'none matched'} "
        f"of {len(layers)}.",
        "",
        "| rank | layer | op | SQNR dB | added NSR | attention core |",
        "|---|---|---|---|---|---|",
    ]
    for i, l in enumerate(layers[: args.top]):
        sq = l["sqnr_db"]
        lines.append(
            f"| {i + 1} | `{l['tensor']}` | {l['op']} | {sq if isinstance(sq, str) else f'{sq:.1f}'} | "
            f"{l['added_nsr']:.2e} | {'yes' if l['node'] in attention else ''} |"
        )
    lines += ["", f"![SQNR along depth]({out.name}.png)"]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
