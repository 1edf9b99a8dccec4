"""``danet-eval``'s results: the per-class table (terminal, Markdown, CSV, JSON) and its pictures.

Rows are the dataset's classes the models share, columns the models' IoU (x100), each model after
the first with its difference to the first; then mIoU, mAcc and aAcc, images/s and the protocol.
Pictures: a row-normalised confusion matrix per model and the worst images (lowest per-image
mIoU) as image | ground truth | prediction, with a legend of the classes they show.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .evaluate import EvalResult, ModelResult

RESULT_FILES = ("results.json", "results.csv", "results.md")


def _pct(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def _diff(value: float, base: float) -> str:
    if value is None or base is None or not (np.isfinite(value) and np.isfinite(base)):
        return ""
    return f"{100 * (value - base):+.2f}"


def table_rows(outcome: EvalResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-class table (IoU x100, differences to the first model)."""
    results = outcome.results
    base = results[0]
    header = ["class"]
    for i, r in enumerate(results):
        header += [r.label] if i == 0 else [r.label, f"diff vs {base.label}"]
    classes = sorted({c for r in results for c in r.match.evaluated})
    rows = []
    for c in classes:
        row = [base.metrics.class_names[c]]
        values = [r.metrics.iou()[c] if c in r.match.evaluated else float("nan") for r in results]
        for i, v in enumerate(values):
            row += [_pct(v)] if i == 0 else [_pct(v), _diff(v, values[0])]
        rows.append(row)
    for name, get in (
        ("mIoU", lambda r: r.metrics.miou()),
        ("mAcc", lambda r: r.metrics.macc()),
        ("aAcc", lambda r: r.metrics.pixel_accuracy()),
    ):
        values = [get(r) for r in results]
        row = [name]
        for i, v in enumerate(values):
            row += [_pct(v)] if i == 0 else [_pct(v), _diff(v, values[0])]
        rows.append(row)
    speed = ["images/s"]
    for i, r in enumerate(results):
        value = f"{r.metrics.images / r.seconds:.2f}" if r.seconds > 0 else "-"
        speed += [value] if i == 0 else [value, ""]
    rows.append(speed)
    return header, rows


def protocols_text(outcome: EvalResult) -> str:
    """The protocol of each model, once when they all share it."""
    texts = [r.protocol.describe() for r in outcome.results]
    if len(set(texts)) == 1:
        return f"protocol: {texts[0]}"
    return "protocols: " + "; ".join(f"{r.label}: {t}" for r, t in zip(outcome.results, texts))


def terminal_table(outcome: EvalResult) -> str:
    header, rows = table_rows(outcome)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.append("IoU/Acc in % (mmsegmentation IoUMetric definitions); " + protocols_text(outcome))
    if outcome.dataset.skipped:
        lines.append(f"skipped {len(outcome.dataset.skipped)} image(s) without a label file (listed in results.json)")
    return "\n".join(lines)


def markdown_table(outcome: EvalResult) -> str:
    header, rows = table_rows(outcome)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    d = outcome.dataset
    lines.append("")
    lines.append(
        f"Dataset `{d.spec}` split `{d.split}`, {len(d.labelled())} labelled images"
        + (f" ({len(d.skipped)} without a label skipped)" if d.skipped else "")
        + "; "
        + protocols_text(outcome)
        + "."
    )
    return "\n".join(lines) + "\n"


def csv_table(outcome: EvalResult) -> str:
    header, rows = table_rows(outcome)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(outcome: EvalResult, folder: Path, force: bool, log: Callable[[str], None]) -> None:
    """results.json/.csv/.md, confusion_<model>.png and worst/<model>/NN_<image>.png in ``folder``."""
    from ..util.files import atomic_write_text
    from ..util.result_files import prepare_output_folder, refuse_overwrite

    folder = prepare_output_folder(folder)
    names = [*RESULT_FILES, *(f"confusion_{r.label}.png" for r in outcome.results)]
    refuse_overwrite(folder, names, force)
    atomic_write_text(folder / "results.json", json.dumps(outcome.to_dict(), indent=1, default=str) + "\n")
    atomic_write_text(folder / "results.csv", csv_table(outcome))
    atomic_write_text(folder / "results.md", markdown_table(outcome))
    for r in outcome.results:
        confusion_plot(r, folder / f"confusion_{r.label}.png")
        worst_images(outcome, r, folder / "worst" / r.label)
    log(f"results written to {folder}")


def confusion_plot(result: ModelResult, path: Path) -> None:
    """The confusion matrix of the evaluated classes, each row normalised to the class's label pixels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the numbers are in results.json; the picture needs the bench extra (matplotlib)
    idx = list(result.match.evaluated)
    conf = result.metrics.confusion[np.ix_(idx, idx)].astype(np.float64)
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    names = [result.metrics.class_names[i] for i in idx]
    side = max(4.0, 0.45 * len(idx) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(idx)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(idx)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{result.label}: mIoU {100 * result.metrics.miou():.2f}, rows sum to 1")
    fig.colorbar(im, ax=ax, label="fraction of the true class's pixels")
    if len(idx) <= 20:
        for (y, x), v in np.ndenumerate(norm):
            if v >= 0.01:
                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_images(outcome: EvalResult, result: ModelResult, folder: Path) -> None:
    """image | ground truth | prediction, over the image, for the lowest-scoring images, with a legend."""
    from ..runtime.preprocess import overlay, with_legend
    from ..util.result_files import save_png

    if not result.worst:
        return
    folder.mkdir(parents=True, exist_ok=True)
    samples = outcome.dataset.labelled()
    n = result.metrics.num_classes
    for rank, (score, index, name, mask) in enumerate(sorted(result.worst, key=lambda e: (e[0], e[1])), 1):
        sample = samples[index]
        image = outcome.dataset.read_image(sample)
        truth = result.match.apply(outcome.dataset.read_label(sample, image.shape[:2]))
        shown = np.where(truth == 255, 0, truth).astype(np.uint8)
        truth_view = overlay(image, shown, n)
        truth_view[truth == 255] = image[truth == 255] // 2  # ignored pixels: darkened, uncoloured
        row = np.concatenate([image, truth_view, overlay(image, mask, n)], axis=1)
        present = sorted(set(np.unique(mask).tolist()) | set(np.unique(truth[truth != 255]).tolist()))
        picture = with_legend(
            np.concatenate([_titles(row.shape[1], image.shape[1], name), row]), result.metrics.class_names, present
        )
        stem = name.replace("/", "_")
        save_png(folder / f"{rank:02d}_{stem}_miou{100 * score:.0f}.png", picture)


def _titles(width: int, column: int, name: str) -> np.ndarray:
    """A white strip naming the three columns of a worst-image picture."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, 14), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, text in enumerate((f"image {name}", "ground truth (dark: ignored)", "prediction")):
        draw.text((i * column + 4, 1), text, fill=(0, 0, 0))
    return np.asarray(strip)
