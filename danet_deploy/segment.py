"""Masks for images, a video, a camera or a ROS 2 bag with any artifact: what ``danet-run`` does, callable.

``run(RunRequest(model="out/ort-int8", images=("a.jpg",)))`` is ``danet-run --model out/ort-int8 a.jpg``;
:func:`segment_images` is the image loop alone. The frame pipelines are the runtime's
(:func:`danet_deploy.runtime.video.segment_video`, :func:`danet_deploy.runtime.bag.replay_bag`); this
module checks the request, refuses overwrites before anything is written, and shows progress.
Not in ``runtime``: it reads image files through :mod:`danet_deploy.data.images` (header checks,
pixel limits), which the torch-free runtime does not reach.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.images import MAX_PIXELS
from .errors import ConfigError
from .request_fields import arg, parse_size

Record = dict[str, Any]


def image_outputs(stem: str) -> dict[str, str]:
    """The files written for one input image, by kind: one naming rule for the overwrite check and the writes."""
    return {kind: f"{stem}_{kind}.png" for kind in ("mask", "color", "overlay")}


def _print_record(record: Record) -> None:
    print(json.dumps(record))


@dataclass(frozen=True)
class RunRequest:
    """What ``danet-run`` was asked (the CLI is generated from these fields); checked when made."""

    model: str = arg(help="artifact folder, model file, or preset name", required=True)
    images: tuple[str, ...] = arg((), "image files (jpg/png/bmp)", positional=True, nargs="*")
    video: str | None = arg(None, "a video file: writes OUTPUT/overlay.mp4, frames.jsonl, summary.json")
    bag: str | None = arg(
        None,
        "a ROS 2 recording (.mcap): writes OUTPUT/masks.mcap (sensor_msgs/Image, same stamps), "
        "overlay.mp4, frames.jsonl, summary.json",
    )
    topic: str | None = arg(None, "--bag: the sensor_msgs/Image or CompressedImage topic (default: the bag's only one)")
    mask_topic: str = arg("/segmentation/mask", "--bag: the masks' topic in masks.mcap")
    camera: str | None = arg(None, "a V4L2 camera index or device (Linux); stops after --max-frames")
    max_frames: int | None = arg(None, "stop after this many frames (video/camera)")
    policy: str | None = arg(
        None,
        "frames to process: every one (default for files) or the newest (default for cameras)",
        choices=("all", "latest"),
    )
    depth: int = arg(2, "frames in flight between pipeline stages")
    no_video: bool = arg(False, "records only, no overlay.mp4")
    output: str = arg("runs/masks", "folder the masks, overlays and records go to", flag=("--output", "-o"))
    force: bool = arg(False, "replace output files already in --output")
    backend: str | None = arg(None, "override the artifact's backend")
    threads: int | None = arg(None, "engine threads (default: the backend's)")
    tile: tuple[int, int] | None = arg(None, "sliding-window crop size", parser=parse_size, metavar="HxW")
    stride: tuple[int, int] | None = arg(None, "sliding-window stride", parser=parse_size, metavar="HxW")
    alpha: float = arg(0.5, "overlay opacity")
    max_pixels: float = arg(
        MAX_PIXELS / 1e6,
        "refuse images and video frames above this many megapixels (read from "
        "the header, before decoding; 0: no limit)",
        metavar="MP",
    )

    def __post_init__(self) -> None:
        """One source, and numbers that cannot silently change the result, before anything is opened.

        Why: an opacity outside [0, 1] wraps the overlay's colours, a NaN or negative pixel limit
        turned the limit off, and a frame count below 1 left an empty record behind.
        """
        object.__setattr__(self, "images", tuple(self.images))
        if sum([bool(self.images), bool(self.video), self.camera is not None, bool(self.bag)]) != 1:
            raise ConfigError("give images, --video FILE, --bag FILE.mcap or --camera N (one of them)")
        if self.topic and not self.bag:
            raise ConfigError("--topic names a topic of a --bag recording: add --bag FILE.mcap, or drop --topic")
        if self.camera is not None and self.max_frames is None:
            raise ConfigError("--camera needs --max-frames N (a live camera never ends)")
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise ConfigError(f"--alpha (overlay opacity) must be between 0 and 1, got {self.alpha}")
        if not (math.isfinite(self.max_pixels) and self.max_pixels >= 0):
            raise ConfigError(f"--max-pixels must be a number of megapixels >= 0 (0: no limit), got {self.max_pixels}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.stride and not self.tile:
            raise ConfigError("--stride sets the sliding window's step: add --tile HxW, or drop --stride")
        if (self.tile or self.stride) and not self.images:
            raise ConfigError("--tile / --stride apply to images, not to --video, --bag or --camera frames: drop them")

    @property
    def pixel_limit(self) -> int | None:
        """``max_pixels`` in pixels (``None``: no limit)."""
        return int(self.max_pixels * 1e6) if self.max_pixels > 0 else None


def run(request: RunRequest, on_image: Callable[[Record], None] = _print_record) -> list[Record] | Record:
    """Do what the request asks: the image records (each also passed to ``on_image`` as it is written),
    or the summary of a video, camera or bag run."""
    from .util.result_files import check_output_folder

    check_output_folder(request.output)
    if request.bag or request.video or request.camera is not None:
        return _frames(request)
    return segment_images(
        request.model,
        request.images,
        request.output,
        backend=request.backend,
        threads=request.threads,
        tile=request.tile,
        stride=request.stride,
        alpha=request.alpha,
        max_pixels=request.pixel_limit,
        force=request.force,
        on_image=on_image,
    )


def _frames(r: RunRequest) -> Record:
    """A video file, a camera or a bag through the runtime's frame pipeline, with a progress bar."""
    from . import runtime
    from .runtime.video import (
        open_camera,
        open_video,
        segment_video,
        video_output_names,
    )
    from .util.progress import progress_bar
    from .util.result_files import refuse_overwrite

    names = video_output_names(write_video=not r.no_video)
    if r.bag:
        from .runtime.bag import MASKS_MCAP, replay_bag

        names = [MASKS_MCAP, *names]
    refuse_overwrite(r.output, names, r.force)
    source = None
    if r.video:
        source = open_video(r.video, r.pixel_limit)
    elif r.camera is not None:
        source = open_camera(r.camera, max_pixels=r.pixel_limit)
    with runtime.load(r.model, backend=r.backend, threads=r.threads) as session:
        total = r.max_frames if source is None else (r.max_frames or source.frame_count or None)
        bar = progress_bar(total=total, desc="frames", unit="frame")
        progress = (lambda *_: bar.update(1)) if bar is not None else None
        if source is None:
            summary = replay_bag(
                session,
                str(r.bag),
                r.output,
                topic=r.topic,
                mask_topic=r.mask_topic,
                alpha=r.alpha,
                max_frames=r.max_frames,
                write_video=not r.no_video,
                max_pixels=r.pixel_limit,
                progress=progress,
            )
        else:
            summary = segment_video(
                session,
                source,
                r.output,
                policy=r.policy,
                depth=r.depth,
                alpha=r.alpha,
                max_frames=r.max_frames,
                write_video=not r.no_video,
                progress=progress,
            )
        if bar is not None:
            bar.close()
    return summary


def segment_images(
    model: str | Path,
    images: Sequence[str | Path],
    output: str | Path = "runs/masks",
    *,
    backend: str | None = None,
    threads: int | None = None,
    tile: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    alpha: float = 0.5,
    max_pixels: int | None = MAX_PIXELS,
    force: bool = False,
    on_image: Callable[[Record], None] = _print_record,
) -> list[Record]:
    """``<stem>_mask.png``, ``_color.png`` and ``_overlay.png`` per image into ``output``; one record per image
    (its mask file and pixel count per class).

    Every input is checked and every output name refused (without ``force``) before the model
    loads or anything is written; images that share a file name stem get distinct output names.
    """
    import numpy as np

    from . import runtime
    from .data.images import check_image_file, read_image
    from .runtime.preprocess import colorize, overlay
    from .util.result_files import output_stems, prepare_output_folder, refuse_overwrite, save_png

    names_in = [str(name) for name in images]
    for name in names_in:
        check_image_file(name, max_pixels=None)
    stems = output_stems(names_in)
    refuse_overwrite(output, [name for stem in stems for name in image_outputs(stem).values()], force)
    renamed = {name: stem for name, stem in zip(names_in, stems) if stem != Path(name).stem}
    if renamed:
        print(
            f"note: {len(renamed)} input(s) share a file name stem; their outputs are named "
            + ", ".join(f"{n} -> {s}_*.png" for n, s in renamed.items()),
            file=sys.stderr,
        )
    records = []
    with runtime.load(model, backend=backend, threads=threads) as session:
        for name in names_in:
            check_image_file(name, max_pixels=max_pixels, reduce_to=session.input_spec.static_hw)
        out = prepare_output_folder(output)
        for name, stem in zip(names_in, stems):
            image = read_image(name, max_pixels=max_pixels, reduce_to=session.input_spec.static_hw)
            mask = session.run(session.from_rgb(image), tile=tile, stride=stride)
            files = image_outputs(stem)
            save_png(out / files["mask"], mask)
            save_png(out / files["color"], colorize(mask, session.num_classes))
            save_png(out / files["overlay"], overlay(image, mask, session.num_classes, alpha))
            counts = {
                session.class_names[c] if c < len(session.class_names) else str(c): int(n)
                for c, n in zip(*np.unique(mask, return_counts=True))
            }
            records.append({"image": name, "mask": str(out / files["mask"]), "pixels": counts})
            on_image(records[-1])
    return records
