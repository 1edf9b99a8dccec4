"""``danet-run``: masks and overlay PNGs for images, or an overlay video + per-frame records for a
video file or camera, with any artifact (or a reference preset)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..data.images import MAX_PIXELS
from .common import EXIT_OK, cli_main, parse_size


def image_outputs(stem: str) -> dict[str, str]:
    """The files written for one input image, by kind: one naming rule for the overwrite check and the writes."""
    return {kind: f"{stem}_{kind}.png" for kind in ("mask", "color", "overlay")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-run", description=__doc__)
    p.add_argument("--model", required=True, help="artifact folder, model file, or preset name")
    p.add_argument("images", nargs="*", help="image files (jpg/png/bmp)")
    p.add_argument("--video", help="a video file: writes OUTPUT/overlay.mp4, frames.jsonl, summary.json")
    p.add_argument("--bag", help="a ROS 2 recording (.mcap): writes OUTPUT/masks.mcap (sensor_msgs/Image, same "
                                 "stamps), overlay.mp4, frames.jsonl, summary.json")
    p.add_argument("--topic", help="--bag: the sensor_msgs/Image or CompressedImage topic (default: the bag's only one)")
    p.add_argument("--mask-topic", default="/segmentation/mask", help="--bag: the masks' topic in masks.mcap")
    p.add_argument("--camera", help="a V4L2 camera index or device (Linux); stops after --max-frames")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (video/camera)")
    p.add_argument("--policy", choices=("all", "latest"),
                   help="frames to process: every one (default for files) or the newest (default for cameras)")
    p.add_argument("--depth", type=int, default=2, help="frames in flight between pipeline stages")
    p.add_argument("--no-video", action="store_true", help="records only, no overlay.mp4")
    p.add_argument("--output", "-o", default="runs/masks")
    p.add_argument("--force", action="store_true", help="replace output files already in --output")
    p.add_argument("--backend", help="override the artifact's backend")
    p.add_argument("--threads", type=int)
    p.add_argument("--tile", type=parse_size, metavar="HxW", help="sliding-window crop size")
    p.add_argument("--stride", type=parse_size, metavar="HxW", help="sliding-window stride")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--max-pixels", type=float, default=MAX_PIXELS / 1e6, metavar="MP",
                   help="refuse images and video frames above this many megapixels (read from the header, before "
                        "decoding; 0: no limit)")
    return p


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse, before anything is opened or written, numbers that would silently change the result:
    an opacity outside [0, 1] wraps the overlay's colours, a NaN or negative pixel limit turned the
    limit off, and a frame count below 1 left an empty record behind."""
    from ..errors import ConfigError

    if not (math.isfinite(args.alpha) and 0.0 <= args.alpha <= 1.0):
        raise ConfigError(f"--alpha (overlay opacity) must be between 0 and 1, got {args.alpha}")
    if not (math.isfinite(args.max_pixels) and args.max_pixels >= 0):
        raise ConfigError(f"--max-pixels must be a number of megapixels >= 0 (0: no limit), got {args.max_pixels}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.stride and not args.tile:
        raise ConfigError("--stride sets the sliding window's step: add --tile HxW, or drop --stride")
    if (args.tile or args.stride) and not args.images:
        raise ConfigError("--tile / --stride apply to images, not to --video, --bag or --camera frames: drop them")


def replay(args: argparse.Namespace, max_pixels: int | None) -> int:
    """``--bag``: the recording's frames through the same pipeline as ``--video``, masks into masks.mcap."""
    from .. import runtime
    from ..progress import progress_bar
    from ..result_files import refuse_overwrite
    from ..runtime.bag import MASKS_MCAP, replay_bag
    from ..runtime.video import video_output_names

    refuse_overwrite(args.output, [MASKS_MCAP, *video_output_names(write_video=not args.no_video)], args.force)
    with runtime.load(args.model, backend=args.backend, threads=args.threads) as session:
        bar = progress_bar(total=args.max_frames, desc="frames", unit="frame")
        summary = replay_bag(session, args.bag, args.output, topic=args.topic, mask_topic=args.mask_topic,
                             alpha=args.alpha, max_frames=args.max_frames, write_video=not args.no_video,
                             max_pixels=max_pixels, progress=(lambda *_: bar.update(1)) if bar is not None else None)
        if bar is not None:
            bar.close()
    print(json.dumps(summary))
    return EXIT_OK


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import runtime
    from ..data.images import check_image_file, read_image
    from ..errors import ConfigError
    from ..progress import progress_bar
    from ..result_files import (
        check_output_folder,
        output_stems,
        prepare_output_folder,
        refuse_overwrite,
        save_png,
    )
    from ..runtime.preprocess import colorize, overlay

    sources = [bool(args.images), bool(args.video), args.camera is not None, bool(args.bag)]
    if sum(sources) != 1:
        raise ConfigError("give images, --video FILE, --bag FILE.mcap or --camera N (one of them)")
    if args.topic and not args.bag:
        raise ConfigError("--topic names a topic of a --bag recording: add --bag FILE.mcap, or drop --topic")
    if args.camera is not None and args.max_frames is None:
        raise ConfigError("--camera needs --max-frames N (a live camera never ends)")
    check_numbers(args)
    check_output_folder(args.output)
    max_pixels = int(args.max_pixels * 1e6) if args.max_pixels > 0 else None
    if args.bag:
        return replay(args, max_pixels)
    if args.video or args.camera is not None:
        from ..runtime.video import (
            open_camera,
            open_video,
            segment_video,
            video_output_names,
        )

        refuse_overwrite(args.output, video_output_names(write_video=not args.no_video), args.force)
        source = open_video(args.video, max_pixels) if args.video else open_camera(args.camera, max_pixels=max_pixels)
        with runtime.load(args.model, backend=args.backend, threads=args.threads) as session:
            bar = progress_bar(total=args.max_frames or source.frame_count or None, desc="frames", unit="frame")
            summary = segment_video(session, source, args.output, policy=args.policy, depth=args.depth,
                                    alpha=args.alpha, max_frames=args.max_frames, write_video=not args.no_video,
                                    progress=(lambda *_: bar.update(1)) if bar is not None else None)
            if bar is not None:
                bar.close()
        print(json.dumps(summary))
        return EXIT_OK
    for name in args.images:  # every input is checked before the model loads or anything is written
        check_image_file(name, max_pixels=None)
    stems = output_stems(args.images)
    refuse_overwrite(args.output, [name for stem in stems for name in image_outputs(stem).values()], args.force)
    renamed = {name: stem for name, stem in zip(args.images, stems) if stem != Path(name).stem}
    if renamed:
        print(f"note: {len(renamed)} input(s) share a file name stem; their outputs are named "
              + ", ".join(f"{n} -> {s}_*.png" for n, s in renamed.items()), file=sys.stderr)
    with runtime.load(args.model, backend=args.backend, threads=args.threads) as session:
        for name in args.images:
            check_image_file(name, max_pixels=max_pixels, reduce_to=session.input_spec.static_hw)
        out = prepare_output_folder(args.output)
        for name, stem in zip(args.images, stems):
            image = read_image(name, max_pixels=max_pixels, reduce_to=session.input_spec.static_hw)
            mask = session.run(image, tile=args.tile, stride=args.stride)
            names = image_outputs(stem)
            save_png(out / names["mask"], mask)
            save_png(out / names["color"], colorize(mask, session.num_classes))
            save_png(out / names["overlay"], overlay(image, mask, session.num_classes, args.alpha))
            counts = {session.class_names[c] if c < len(session.class_names) else str(c): int(n)
                      for c, n in zip(*__import__("numpy").unique(mask, return_counts=True))}
            print(json.dumps({"image": name, "mask": str(out / names["mask"]), "pixels": counts}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
