"""Chart of ``danet-train`` runs: mIoU and person IoU per run and evaluation size, with the targets.

Why: a recipe comparison is read as "which runs clear the line at every size", which a table of
numbers hides; the chart draws the demo model's targets (mIoU 0.90 at 512x512 / 0.87 elsewhere,
person IoU 0.70) across the bars.

Input: ``danet-train`` report JSON files (``--report``), or one file holding ``{"runs": [...]}``
whose entries carry ``run`` (a label) and ``val`` as the reports do. Example:

    python benchmarks/plot_training_runs.py benchmarks/results/demo_recipe_gpu-r2.json \
        --output benchmarks/results/demo_recipe_gpu-r2.png --title "GPU recipe sweep, round 2"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TARGETS = {"miou": {"512x512": 0.90, "default": 0.87}, "person": {"default": 0.70}}


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """``[{"run": label, "val": [...]}, ...]`` from reports or combined files, in the order given."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(path.read_text())
        if "runs" in data:
            runs.extend(data["runs"])
        else:
            runs.append({"run": path.stem, "val": data["val"]})
    for run in runs:
        if not run.get("val"):
            raise SystemExit(f"run {run.get('run')!r} has no 'val' results (trained with --eval-count 0?)")
    return runs


def plot(runs: list[dict[str, Any]], output: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = [f"{v['size'][0]}x{v['size'][1]}" for v in runs[0]["val"]]
    labels = [str(r["run"]) for r in runs]
    x = np.arange(len(runs))
    width = 0.8 / len(sizes)
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.7 * len(runs) + 2), 6.5), sharex=True)
    for ax, metric, name in ((axes[0], "miou", "mIoU"), (axes[1], "person", "person IoU")):
        for k, size in enumerate(sizes):
            values = [next(v for v in r["val"] if f"{v['size'][0]}x{v['size'][1]}" == size) for r in runs]
            heights = [v["miou"] if metric == "miou" else v["per_class_iou"]["person"] for v in values]
            ax.bar(x + (k - (len(sizes) - 1) / 2) * width, heights, width, label=size)
        targets: dict[float, list[str]] = {}
        for size in sizes:
            targets.setdefault(TARGETS[metric].get(size, TARGETS[metric]["default"]), []).append(size)
        for value, where in targets.items():
            ax.axhline(value, color="black", linestyle="--", linewidth=1)
            ax.annotate(
                f"target {value:.2f} ({', '.join(where)})",
                (len(runs) - 0.5, value),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=7,
            )
        low = min(v["miou"] if metric == "miou" else v["per_class_iou"]["person"] for r in runs for v in r["val"])
        ax.set_ylim(max(0.0, low - 0.05), 1.0 if metric == "miou" else max(0.8, low + 0.2))
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="eval size", fontsize=8, ncol=len(sizes), loc="lower left", bbox_to_anchor=(0.0, 1.0))
    axes[1].set_xticks(x, labels)
    axes[1].set_xlabel("run")
    fig.suptitle(title)
    fig.tight_layout()  # before the legend above the axes is placed
    fig.savefig(output, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--output", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="danet_demo training runs")
    args = p.parse_args(argv)
    try:
        runs = load_runs(args.reports)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable, not JSON, or not a report
        p.error(f"cannot read the reports ({type(exc).__name__}: {exc}); pass danet-train --report files")
    plot(runs, args.output, args.title)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
