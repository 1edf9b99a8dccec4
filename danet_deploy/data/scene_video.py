"""A short street video the project renders itself: a generated scene seen through a panning camera.

Tests and the demo need a video with known labels and no download: one wide generated scene
(seeded, so every machine renders the same pixels) is cropped by a window that slides across it,
as a camera panning along a street would see it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .scenes import SPLITS, generate_scene


def scene_pan(
    frames: int = 24, size: tuple[int, int] = (128, 160), pan: float = 0.5, seed: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``frames`` (image, label) crops of one wide val scene, the window moving by ``pan`` x its width."""
    if frames < 1 or min(size) < 16 or not 0 <= pan <= 4:
        raise ConfigError(f"scene_pan needs frames >= 1, size >= 16x16 and 0 <= pan <= 4; got {frames}, {size}, {pan}")
    h, w = size
    travel = int(round(w * pan))
    image, label = generate_scene(SPLITS["val"].start if seed is None else seed, h, w + travel)
    offsets = np.linspace(0, travel, frames).round().astype(int)
    return [image[:, x : x + w].copy() for x in offsets], [label[:, x : x + w].copy() for x in offsets]


def render_scene_video(
    path: str | Path, frames: int = 24, size: tuple[int, int] = (128, 160), fps: float = 12.0, seed: int | None = None
) -> list[np.ndarray]:
    """Write the panning scene as an MP4 (see :class:`~danet_deploy.runtime.video.VideoWriter`); return its labels."""
    from ..runtime.video import VideoWriter

    images, labels = scene_pan(frames, size, seed=seed)
    writer = VideoWriter(path, fps, size)
    ok = False
    try:
        for image in images:
            writer.write(image)
        ok = True
    finally:
        writer.close(ok=ok)
    return labels
