"""How well *any* output-stride-8 model could segment the generated scenes: the OS8 ceiling per class.

DANet predicts at 1/8 resolution and upsamples bilinearly. Thin and small objects (poles, distant
pedestrians) then lose IoU at their edges however well the network is trained. This script
measures that ceiling without a network: the ideal 1/8-resolution prediction is each 8x8 block's
class share (the one-hot labels average-pooled), upsampled bilinearly (half-pixel, as the model
does) and arg-maxed, then scored against the full-resolution labels. A trained OS8 model can beat
it a little (confident logits give sharper edges than averaged one-hots) but not by much, so a
target above it asks for a finer output stride or a decoder, not for more training.

Reproduces benchmarks/results/stride_ceiling.md:

    python benchmarks/stride_ceiling.py --count 50 --sizes 512x512,512x1024,384x640 --strides 8,4
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ceiling(size: tuple[int, int], stride: int, count: int) -> dict:
    import torch
    import torch.nn.functional as F

    from danet_deploy.data.metrics import SegmentationMetrics
    from danet_deploy.data.scenes import IGNORE_INDEX, SceneDataset
    from danet_deploy.model.registry import DEMO_CLASSES

    metrics = SegmentationMetrics(len(DEMO_CLASSES), DEMO_CLASSES, IGNORE_INDEX)
    for _, label in SceneDataset("val", size=size, count=count):
        onehot = F.one_hot(torch.from_numpy(label.astype(np.int64)), len(DEMO_CLASSES)).permute(2, 0, 1)[None].float()
        low = F.avg_pool2d(onehot, stride, ceil_mode=True)
        up = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        metrics.update(up.argmax(1).numpy().astype(np.uint8), label[None])
    return metrics.to_dict()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50, help="val scenes per size (the demo model is scored on 50)")
    p.add_argument("--sizes", default="512x512,512x1024,384x640")
    p.add_argument("--strides", default="8,4")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "stride_ceiling.md")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    strides = [int(s) for s in args.strides.split(",")]
    rows = []
    for stride in strides:
        for size in sizes:
            result = ceiling(size, stride, args.count)  # type: ignore[arg-type]
            rows.append((stride, size, result))
            print(f"OS{stride} {size[0]}x{size[1]}: mIoU {result['miou']:.3f}", flush=True)
    classes = list(rows[0][2]["per_class_iou"])
    lines = [
        "# Output-stride ceiling on the generated val scenes",
        "",
        f"Command: `python benchmarks/stride_ceiling.py --count {args.count} --sizes {args.sizes} "
        f"--strides {args.strides}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='minutes')}; no network involved: "
        "ideal block-averaged labels at 1/stride, bilinear upsampling, arg-max, scored on "
        f"{args.count} val scenes per size.",
        "",
        "| output stride | size | " + " | ".join(classes) + " | mIoU |",
        "|---" * (len(classes) + 3) + "|",
    ]
    for stride, size, result in rows:
        lines.append(
            f"| {stride} | {size[0]}x{size[1]} | "
            + " | ".join(f"{result['per_class_iou'][c]:.3f}" for c in classes)
            + f" | {result['miou']:.3f} |"
        )
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
