"""Segmentation metrics (confusion matrix, per-class IoU, mIoU, pixel accuracy), numpy only.

Kept free of torch so that exported artifacts (ONNX, OpenVINO, TensorRT) are scored by exactly
the same code as the reference model, on a machine that only has the runtime installed.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts, rows = ground truth, columns = prediction.

    Pixels whose label is ``ignore_index`` are skipped. A label outside ``[0, num_classes)``
    that is not ignored, or a prediction outside that range, is an error rather than silently
    dropped, because it almost always means the wrong class list.
    """
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise InputError(f"prediction shape {pred.shape} does not match label shape {label.shape}")
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    keep = label != ignore_index
    p, t = pred[keep].astype(np.int64, copy=False), label[keep].astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise InputError(f"labels must be in [0, {num_classes}) or {ignore_index}; got values {t.min()}..{t.max()}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise InputError(f"predictions must be in [0, {num_classes}); got values {p.min()}..{p.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class SegmentationMetrics:
    """Accumulates a confusion matrix over many images; IoU is computed from the totals.

    Summing counts first (rather than averaging per-image IoU) is the standard Cityscapes /
    mmseg definition, and it does not over-weight tiny objects in single images.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore_index: int = 255) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise InputError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(num_classes))
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.images = 0

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one prediction/label pair (``[H, W]`` or a batch ``[B, H, W]``)."""
        self.confusion += confusion_matrix(pred, label, self.num_classes, self.ignore_index)
        self.images += 1 if np.ndim(label) == 2 else int(np.shape(label)[0])

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both predictions and labels."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over classes present in either predictions or labels (NaN if nothing was seen)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN IoUs become ``None``)."""
        iou = self.iou()
        return {
            "miou": finite_or_none(self.miou()),
            "pixel_accuracy": finite_or_none(self.pixel_accuracy()),
            "per_class_iou": {name: finite_or_none(v) for name, v in zip(self.class_names, iou)},
            "images": self.images,
            "pixels": int(self.confusion.sum()),
        }

    def summary(self) -> str:
        """A human-readable per-class table."""
        lines = [f"{name:>12s}  {'-' if np.isnan(v) else f'{v:.4f}'}" for name, v in zip(self.class_names, self.iou())]
        lines.append(f"{'mIoU':>12s}  {self.miou():.4f}   (pixel acc {self.pixel_accuracy():.4f}, {self.images} images)")
        return "\n".join(lines)


def finite_or_none(value: float) -> float | None:
    """A JSON-ready metric: rounded to 6 digits, ``None`` for NaN/inf (nothing to score)."""
    return None if not np.isfinite(value) else round(float(value), 6)
