"""Validation tensors for accuracy budgets: generated ``val`` scenes with their labels.

Kept apart from calibration on purpose: calibration draws the ``calibration`` split, validation
the ``val`` split (disjoint seeds), so a drop measured here is on images the ranges never saw.
Preprocessed by the runtime's own code, like every tensor an engine is fed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.preprocess import preprocess
from .scenes import SceneDataset


def generated_validation(count: int, size: tuple[int, int], preprocessing: dict[str, Any]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(tensors [N, 3, H, W] float32, labels [N, H, W])`` of the first ``count`` val scenes."""
    data = SceneDataset("val", size=size, count=count)
    pairs = [data[i] for i in range(len(data))]
    tensors = np.concatenate([preprocess([image], preprocessing, size) for image, _ in pairs])
    return np.ascontiguousarray(tensors, np.float32), np.stack([label for _, label in pairs])
