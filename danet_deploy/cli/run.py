"""``danet-run``: masks and overlay PNGs for images, with any artifact (or a reference preset)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from PIL import Image

    from .. import runtime
    from ..data.images import read_image
    from ..runtime.preprocess import colorize, overlay

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with runtime.load(args.model, backend=args.backend, threads=args.threads) as session:
        for name in args.images:
            image = read_image(name)
            mask = session.run(image, tile=args.tile, stride=args.stride)
            stem = Path(name).stem
            Image.fromarray(mask).save(out / f"{stem}_mask.png")
            Image.fromarray(colorize(mask, session.num_classes)).save(out / f"{stem}_color.png")
            Image.fromarray(overlay(image, mask, session.num_classes, args.alpha)).save(out / f"{stem}_overlay.png")
            counts = {session.class_names[c] if c < len(session.class_names) else str(c): int(n)
                      for c, n in zip(*__import__("numpy").unique(mask, return_counts=True))}
            print(json.dumps({"image": name, "mask": str(out / f"{stem}_mask.png"), "pixels": counts}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
