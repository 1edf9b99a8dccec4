"""The demo model's training objective: DANet's summed cross-entropy, class-balanced, with OHEM.

Why not plain cross-entropy: in street scenes persons and poles cover about 1% of the pixels
each, so an unweighted loss lets the model trade them away for a slightly better road and sky
(the first demo model reached 0.44 person IoU beside 0.97 road). Segmentation practice answers
with two things, both here:

* **class weights** from pixel frequencies (median-frequency balancing, Eigen & Fergus 2015),
  damped by a square root so rare classes gain recall without flooding false positives;
* **online hard example mining** (OHEM, Shrivastava et al. 2016; as in mmsegmentation's
  ``OHEMPixelSampler``): only the hardest fraction of the fused output's pixels contributes, so
  the easy interiors of sky and road stop dominating the gradient late in training.

The frequencies are measured on training scenes (seeded), so the weights are reproducible and
recorded in the training report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.scenes import IGNORE_INDEX


def class_frequencies(labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Pixel share of each class over ``labels`` (ignore pixels excluded); sums to 1."""
    counts = np.zeros(num_classes, np.float64)
    for label in labels:
        valid = label[label != IGNORE_INDEX]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        return np.full(num_classes, 1.0 / num_classes)
    return counts / counts.sum()


def balanced_weights(frequencies: np.ndarray, power: float = 0.5, cap: float = 5.0) -> np.ndarray:
    """``(median / frequency) ** power``, clipped to ``[1 / cap, cap]``; absent classes get ``cap``.

    ``power=0`` gives uniform weights, ``power=1`` full median-frequency balancing.
    """
    freq = np.asarray(frequencies, np.float64)
    present = freq[freq > 0]
    median = float(np.median(present)) if present.size else 1.0
    with np.errstate(divide="ignore"):
        weights = np.where(freq > 0, (median / np.maximum(freq, 1e-12)) ** power, cap)
    return np.clip(weights, 1.0 / cap, cap).astype(np.float32)


def labels_at(target: Any, size: tuple[int, int]) -> Any:
    """``[B, H, W]`` labels at the centres of an ``h x w`` grid of equal cells (pixel
    ``floor((i + 0.5) * H / h)``; ``s * i + s // 2`` at stride ``s``), i.e. a stride-``s`` output's
    own resolution.

    Only the auxiliary outputs are scored this way, and only to guide the features: which pixel of
    a cell stands for it shifts their targets by at most half a cell (the prediction itself is
    upsampled exactly as at inference).
    """
    import torch

    (h, w), (full_h, full_w) = size, target.shape[-2:]
    if (h, w) == (full_h, full_w):
        return target
    rows = torch.clamp(((torch.arange(h, dtype=torch.float64) + 0.5) * (full_h / h)).long(), max=full_h - 1)
    cols = torch.clamp(((torch.arange(w, dtype=torch.float64) + 0.5) * (full_w / w)).long(), max=full_w - 1)
    return target[:, rows.to(target.device)[:, None], cols.to(target.device)[None, :]]


def danet_loss(
    outputs: Any, target: Any, class_weights: Any = None, ohem_keep: float = 1.0, align_corners: bool = True
) -> Any:
    """Sum over DANet's outputs (prediction, then auxiliary: PAM, CAM, ...) of the (weighted,
    hard-mined) cross-entropy.

    Args:
        outputs: one ``[B, C, h, w]`` logits tensor or a tuple of them (training mode). They may be
            coarser than ``target`` (``DANet.forward_lowres``): the first, the prediction, is then
            upsampled bilinearly to the labels, exactly as at inference; the auxiliary ones are scored
            at their own resolution against labels sampled at cell centres (:func:`labels_at`).
            Why: upsampling three auxiliary outputs to full size and back-propagating through it
            was a third of a CPU training step, and they only guide the features.
        target: ``[B, H, W]`` int64 labels, ``IGNORE_INDEX`` where unlabelled.
        class_weights: ``[C]`` float tensor, or ``None`` for the official unweighted objective.
        ohem_keep: fraction of valid pixels of the prediction (first output) kept, hardest first
            (``1.0`` = all). Auxiliary outputs keep every pixel: mining them too cost a third of a
            training step on a 2-core CPU for no measurable gain in the prediction.
        align_corners: the model's upsampling mode, for the prediction.
    """
    import torch.nn.functional as F

    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    total = 0.0
    for position, logits in enumerate(outputs):
        labels = target
        if position == 0 and logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=align_corners)
        elif position > 0:
            labels = labels_at(target, tuple(logits.shape[-2:]))
        total = total + _cross_entropy(logits, labels, class_weights, ohem_keep if position == 0 else 1.0)
    return total


def _cross_entropy(logits: Any, target: Any, class_weights: Any, keep: float) -> Any:
    """Pixel-weighted cross-entropy of one output, averaged over the ``keep`` hardest valid pixels."""
    import torch
    import torch.nn.functional as F

    valid = target != IGNORE_INDEX
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    pixel_weight = (
        class_weights[safe_target] if class_weights is not None else torch.ones_like(target, dtype=torch.float32)
    )
    pixel_weight = pixel_weight * valid
    losses = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
    weighted = losses * pixel_weight
    if keep >= 1.0:
        return weighted.sum() / pixel_weight.sum().clamp_min(1e-6)
    n_valid = int(valid.sum())
    if n_valid == 0:  # a batch with every pixel ignored contributes nothing (topk of nothing fails)
        return weighted.sum()
    hardest = torch.topk(losses[valid], max(1, int(n_valid * keep)), sorted=False).indices  # ranked by raw loss ...
    kept_losses = weighted[valid][hardest]
    kept_weights = pixel_weight[valid][hardest]
    return kept_losses.sum() / kept_weights.sum().clamp_min(1e-6)  # ... averaged with weights
