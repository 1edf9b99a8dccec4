"""Sliding-window inference: overlapping crops, logits averaged where they overlap.

How the paper and mmsegmentation evaluate Cityscapes (769x769 crops), and how an engine built
at one fixed size serves frames of any size. Crops follow mmsegmentation's grid (the last crop
is aligned to the border); a crop smaller than the tile (an image smaller than the tile) is
zero-padded in normalised space and the padding is cut off the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from .session import Session


def window_grid(
    height: int, width: int, tile: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """``(y1, y2, x1, x2)`` crops covering the image; every pixel is covered at least once."""
    th, tw = tile
    sh, sw = stride
    rows = max(height - th + sh - 1, 0) // sh + 1
    cols = max(width - tw + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + th, height), min(c * sw + tw, width)
            boxes.append((max(y2 - th, 0), y2, max(x2 - tw, 0), x2))
    return boxes


def sliding_window_logits(
    session: Session, image: np.ndarray, tile: tuple[int, int], stride: tuple[int, int] | None = None
) -> np.ndarray:
    """``[classes, H, W]`` logits of ``image`` from overlapping ``tile`` crops every ``stride``."""
    th, tw = (int(tile[0]), int(tile[1]))
    if th < 1 or tw < 1:
        raise ConfigError(f"tile must be positive, got {tile}")
    static = session.input_spec.static_hw
    if static is not None and static != (th, tw):
        raise ConfigError(
            f"tile {th}x{tw} differs from the engine's fixed input {static[0]}x{static[1]}; "
            f"use tile=({static[0]}, {static[1]})"
        )
    sh, sw = stride if stride is not None else (max(1, th * 2 // 3), max(1, tw * 2 // 3))
    if sh < 1 or sw < 1 or sh > th or sw > tw:
        raise ConfigError(f"stride {sh}x{sw} must be between 1 and the tile {th}x{tw} (no gaps between crops)")
    height, width = image.shape[:2]
    total = np.zeros((session.num_classes, height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    batch = session.input_spec.static_batch
    for y1, y2, x1, x2 in window_grid(height, width, (th, tw), (sh, sw)):
        tensor = session.prepare([image[y1:y2, x1:x2]])  # float NCHW, or an --accept artifact's uint8 NHWC
        ch, cw = y2 - y1, x2 - x1
        if static is not None and (ch, cw) != (th, tw):
            pad = (
                [(0, 0), (0, th - ch), (0, tw - cw), (0, 0)]
                if session.input_spec.layout == "NHWC"
                else [(0, 0), (0, 0), (0, th - ch), (0, tw - cw)]
            )
            tensor = np.pad(tensor, pad)
        if batch and batch > 1:
            tensor = np.repeat(tensor, batch, axis=0)
        logits = session.infer(tensor)[0, :, :ch, :cw]
        total[:, y1:y2, x1:x2] += logits
        count[y1:y2, x1:x2] += 1
    return total / count[None]
