"""The accuracy-budget flags of ``danet-export`` (INT8), kept apart so the export CLI stays small."""

from __future__ import annotations

import argparse
from typing import Any


def add_budget_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INT8 accuracy budget (see danet_deploy.export.budget)")
    g.add_argument("--max-accuracy-drop", type=float, metavar="X",
                   help="INT8: return the fewest layers to float so the drop stays <= X points on the validation "
                        "set (ONNX Runtime/TensorRT: per-layer sensitivity search; OpenVINO: NNCF accuracy control); "
                        "unmet: exit 2, best graph in <output>.budget-unmet")
    g.add_argument("--accuracy-metric", choices=("miou", "agreement"),
                   help="miou: FP32 minus INT8 mIoU vs labels, x100 (a labelled --val dataset or generated scenes); agreement: %% of pixels whose "
                        "argmax differs from FP32 (default: miou when the validation set has labels)")
    g.add_argument("--val", help="validation source, apart from calibration: a labelled dataset (cityscapes:ROOT, "
                                 "ade20k:ROOT, voc:ROOT, folder:IMAGES,LABELS: its validation split, mIoU), "
                                 "'generated' (val scenes, labelled; default), 'photos' or an image folder")
    g.add_argument("--val-count", type=int, default=8, help="validation images (default %(default)s)")
    g.add_argument("--budget-evaluations", type=int, default=8,
                   help="most graphs the search quantizes and scores (default %(default)s)")


def budget_fields(args: argparse.Namespace) -> dict[str, Any]:
    """ExportRequest keyword arguments from the parsed flags."""
    return {"max_accuracy_drop": args.max_accuracy_drop, "accuracy_metric": args.accuracy_metric, "val": args.val,
            "val_count": args.val_count, "budget_evaluations": args.budget_evaluations}
