"""``danet-run``: masks and overlay PNGs for images, with any artifact (or a reference preset)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.images import MAX_PIXELS
from .common import EXIT_OK, cli_main, parse_size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-run", description=__doc__)
    p.add_argument("--model", required=True, help="artifact folder, model file, or preset name")
    p.add_argument("images", nargs="+", help="image files (jpg/png/bmp)")
    p.add_argument("--output", "-o", default="runs/masks")
    p.add_argument("--backend", help="override the artifact's backend")
    p.add_argument("--threads", type=int)
    p.add_argument("--tile", type=parse_size, metavar="HxW", help="sliding-window crop size")
    p.add_argument("--stride", type=parse_size, metavar="HxW", help="sliding-window stride")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--max-pixels", type=float, default=MAX_PIXELS / 1e6, metavar="MP",
                   help="refuse images above this many megapixels (read from the header, before decoding; 0: no limit)")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import runtime
    from ..result_files import check_output_folder, output_stems, prepare_output_folder, save_png
    from ..data.images import check_image_file, read_image
    from ..runtime.preprocess import colorize, overlay

    max_pixels = int(args.max_pixels * 1e6) if args.max_pixels > 0 else None
    for name in args.images:  # every input is checked before the model loads or anything is written
        check_image_file(name, max_pixels=None)
    check_output_folder(args.output)
    stems = output_stems(args.images)
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
            save_png(out / f"{stem}_mask.png", mask)
            save_png(out / f"{stem}_color.png", colorize(mask, session.num_classes))
            save_png(out / f"{stem}_overlay.png", overlay(image, mask, session.num_classes, args.alpha))
            counts = {session.class_names[c] if c < len(session.class_names) else str(c): int(n)
                      for c, n in zip(*__import__("numpy").unique(mask, return_counts=True))}
            print(json.dumps({"image": name, "mask": str(out / f"{stem}_mask.png"), "pixels": counts}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
