"""Segmentation metrics (confusion matrix, per-class IoU/Acc, mIoU, mAcc, aAcc), numpy only.

The definitions are mmsegmentation's ``IoUMetric`` (``mmseg/evaluation/metrics/iou_metric.py``):
per image, pixels labelled ``ignore_index`` are dropped and the intersection, prediction area and
label area of every class are counted; these are summed over the whole set and only then divided:
IoU = sum(intersect) / sum(union), Acc = sum(intersect) / sum(label area), aAcc = all intersect /
all label area, mIoU / mAcc = the mean over classes that are not NaN (a class with no union, or no
label pixel for Acc). Every count is read off one confusion matrix accumulated per image, so
memory does not grow with the set. One difference, on purpose: a label value outside the classes
(other than ``ignore_index``) is an error here, where mmseg's ``torch.histc`` drops it silently.

Kept free of torch so that exported artifacts (ONNX, OpenVINO, TensorRT) are scored by exactly
the same code as the reference model, on a machine that only has the runtime installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        evaluated: Sequence[int] | None = None,
    ) -> None:
        """``evaluated``: the classes the means and tables cover (default: all). A model class the
        dataset does not have stays out of them, while its predictions still count against the
        classes the pixels really belong to (see :mod:`danet_deploy.data.datasets`)."""
        if class_names is not None and len(class_names) != num_classes:
            raise InputError(f"{len(class_names)} class names for {num_classes} classes")
        self.evaluated = tuple(range(num_classes)) if evaluated is None else tuple(int(i) for i in evaluated)
        if not self.evaluated or any(not 0 <= i < num_classes for i in self.evaluated):
            raise InputError(f"evaluated classes must be a non-empty subset of 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.class_names = (
            tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(num_classes))
        )
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.images = 0

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one prediction/label pair (``[H, W]`` or a batch ``[B, H, W]``)."""
        self.confusion += confusion_matrix(pred, label, self.num_classes, self.ignore_index)
        self.images += 1 if np.ndim(label) == 2 else int(np.shape(label)[0])

    def merge(self, other: SegmentationMetrics) -> None:
        """Add another accumulator's counts (same classes), e.g. one per worker."""
        if other.confusion.shape != self.confusion.shape:
            raise InputError(f"cannot merge metrics of {other.num_classes} classes into {self.num_classes}")
        self.confusion += other.confusion
        self.images += other.images

    def areas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """mmseg's four totals per class: ``(intersect, union, pred_area, label_area)`` (int64)."""
        intersect = np.diag(self.confusion).copy()
        pred_area, label_area = self.confusion.sum(0), self.confusion.sum(1)
        return intersect, pred_area + label_area - intersect, pred_area, label_area

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both predictions and labels."""
        intersect, union, _, _ = self.areas()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, intersect / np.maximum(union, 1), np.nan)

    def acc(self) -> np.ndarray:
        """Per-class accuracy (recall) as mmseg's ``Acc``; NaN for a class with no label pixel."""
        intersect, _, _, label_area = self.areas()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(label_area > 0, intersect / np.maximum(label_area, 1), np.nan)

    def _mean(self, values: np.ndarray) -> float:
        picked = values[list(self.evaluated)]
        return float(np.nanmean(picked)) if np.isfinite(picked).any() else float("nan")

    def miou(self) -> float:
        """Mean IoU over the evaluated classes that are not NaN (NaN if nothing was seen)."""
        return self._mean(self.iou())

    def macc(self) -> float:
        """mmseg's ``mAcc``: mean per-class accuracy over the evaluated classes with labels."""
        return self._mean(self.acc())

    def pixel_accuracy(self) -> float:
        """mmseg's ``aAcc``: all intersections over all label pixels that are not ignored."""
        intersect, _, _, label_area = self.areas()
        total = label_area.sum()
        return float(intersect.sum() / total) if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN IoUs become ``None``); ``aAcc``/``mAcc`` named as mmseg names them."""
        names = [self.class_names[i] for i in self.evaluated]
        iou, acc = self.iou()[list(self.evaluated)], self.acc()[list(self.evaluated)]
        return {
            "miou": finite_or_none(self.miou()),
            "pixel_accuracy": finite_or_none(self.pixel_accuracy()),
            "aAcc": finite_or_none(self.pixel_accuracy()),
            "mAcc": finite_or_none(self.macc()),
            "per_class_iou": {name: finite_or_none(v) for name, v in zip(names, iou)},
            "per_class_acc": {name: finite_or_none(v) for name, v in zip(names, acc)},
            "images": self.images,
            "pixels": int(self.confusion.sum()),
        }

    def summary(self) -> str:
        """A human-readable per-class table (IoU and Acc)."""
        iou, acc = self.iou(), self.acc()
        lines = [f"{self.class_names[i]:>12s}  {_cell(iou[i])}  {_cell(acc[i])}" for i in self.evaluated]
        lines.append(
            f"{'mIoU':>12s}  {self.miou():.4f}   (mAcc {self.macc():.4f}, aAcc {self.pixel_accuracy():.4f}, "
            f"{self.images} images)"
        )
        return "\n".join(lines)


def _cell(value: float) -> str:
    return "     -" if np.isnan(value) else f"{value:.4f}"


def finite_or_none(value: float) -> float | None:
    """A JSON-ready metric: rounded to 6 digits, ``None`` for NaN/inf (nothing to score)."""
    return None if not np.isfinite(value) else round(float(value), 6)
