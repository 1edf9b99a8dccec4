"""Validation tensors for accuracy budgets: generated ``val`` scenes with their labels.

Kept apart from calibration on purpose: calibration draws the ``calibration`` split, validation
the ``val`` split (disjoint seeds), so a drop measured here is on images the ranges never saw.
Preprocessed by the runtime's own code, like every tensor an engine is fed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime.preprocess import preprocess
from .scenes import SceneDataset


def generated_validation(
    count: int, size: tuple[int, int], preprocessing: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """``(tensors [N, 3, H, W] float32, labels [N, H, W])`` of the first ``count`` val scenes."""
    data = SceneDataset("val", size=size, count=count)
    pairs = [data[i] for i in range(len(data))]
    tensors = np.concatenate([preprocess([image], preprocessing, size) for image, _ in pairs])
    return np.ascontiguousarray(tensors, np.float32), np.stack([label for _, label in pairs])


def dataset_images(
    spec: str, count: int, size: tuple[int, int], class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], dict[str, Any]]:
    """The first ``count`` labelled images of a dataset's validation split at ``size``: ``(uint8
    images [N, H, W, 3], labels as the model's class indices resized by nearest neighbour [N, H, W],
    the classes the dataset shares with the model, a description for reports and manifests)``."""
    from ..runtime.preprocess import resize_image, resize_mask
    from .datasets import match_classes, open_dataset

    data = open_dataset(spec, limit=count)
    match = match_classes(list(class_names), data)
    images, labels = [], []
    for _, image, label in data.pairs():
        images.append(resize_image(image, size))
        labels.append(resize_mask(match.apply(label), size).astype(np.uint8))
    desc = {
        "source": spec,
        "split": data.split,
        "count": len(labels),
        "size": list(size),
        "classes": match.to_dict(),
        "skipped": len(data.skipped),
        "disjoint_from_calibration": "the dataset's validation split (calibration: its train split or another source)",
    }
    return np.stack(images), np.stack(labels), match.evaluated, desc


def dataset_validation(
    spec: str, count: int, size: tuple[int, int], preprocessing: dict[str, Any], class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], dict[str, Any]]:
    """:func:`dataset_images` preprocessed by the runtime's own code: ``(tensors [N, 3, H, W], ...)``."""
    images, labels, evaluated, desc = dataset_images(spec, count, size, class_names)
    tensors = np.concatenate([preprocess([image], preprocessing) for image in images])
    return np.ascontiguousarray(tensors, np.float32), labels, evaluated, desc
