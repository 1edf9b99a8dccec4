"""Generated street scenes written in a real dataset's layout (Cityscapes, ADE20K, VOC, folder).

Why: ``danet-eval`` and every ``--data`` reader must be tried on files laid out exactly as the
datasets' own tools write them, and nobody can ship Cityscapes. The scenes' labels (indices of
``DEMO_CLASSES``) are converted to each dataset's own encoding by class name: Cityscapes label ids
from the official table (``*_gtFine_labelIds.png``, or train ids with ``train_ids=True``), ADE20K
indices + 1 (0 = "other", dropped by reduce-zero-label), VOC palette PNGs. A demo class the
dataset does not have becomes that dataset's "unlabelled" value.

``python -m danet_deploy.data.scene_layouts cityscapes ROOT --count 16 --size 256x512`` writes a set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..model.registry import DEMO_CLASSES
from ..model.releases import ADE20K_CLASSES, VOC_CLASSES
from .datasets import IGNORE, cityscapes_label_ids
from .scenes import SceneDataset


def _lut(values: dict[str, int], missing: int) -> np.ndarray:
    lut = np.full(256, missing, np.uint8)
    for i, name in enumerate(DEMO_CLASSES):
        lut[i] = values.get(name, missing)
    return lut


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved), as a flat 768-value PIL palette."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def write_scene_dataset(
    layout: str,
    root: str | Path,
    split: str = "val",
    count: int = 4,
    size: tuple[int, int] = (64, 128),
    train_ids: bool = False,
    scene_split: str | None = None,
) -> list[Path]:
    """Write ``count`` scenes as ``layout``'s ``split`` under ``root``; returns the image paths.

    ``scene_split``: the generator's split (default: ``val`` for a validation split, ``calib`` for
    a train split, so calibrating on the train split never sees the validation images)."""
    from PIL import Image

    root = Path(root)
    scene_split = scene_split or ("calib" if split in ("train", "training") else "val")
    scenes = SceneDataset(scene_split, size=size, count=count)
    written = []
    for i in range(count):
        image, label = scenes[i]
        name = f"scene{scenes.seed(i):05d}"
        if layout == "cityscapes":
            city = "generated"
            img_path = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
            if train_ids:
                from ..model.releases import CITYSCAPES_CLASSES

                lut = _lut({c: k for k, c in enumerate(CITYSCAPES_CLASSES)}, IGNORE)
                lab_path = root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
            else:
                lut = _lut(cityscapes_label_ids(), 0)  # id 0: "unlabeled"
                lab_path = root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png"
            lab = Image.fromarray(lut[label])
        elif layout == "ade20k":
            base = root / "ADEChallengeData2016"
            folder = {"val": "validation", "train": "training"}.get(split, split)
            img_path = base / "images" / folder / f"ADE_{folder[:3]}_{name}.jpg"
            lab_path = base / "annotations" / folder / f"ADE_{folder[:3]}_{name}.png"
            lab = Image.fromarray(_lut({c: k + 1 for k, c in enumerate(ADE20K_CLASSES)}, 0)[label])
        elif layout == "voc":
            base = root / "VOCdevkit" / "VOC2012"
            img_path = base / "JPEGImages" / f"{name}.jpg"
            lab_path = base / "SegmentationClass" / f"{name}.png"
            lab = Image.fromarray(_lut({c: k for k, c in enumerate(VOC_CLASSES)}, 0)[label], mode="P")
            lab.putpalette(voc_palette())
            listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
            listing.parent.mkdir(parents=True, exist_ok=True)
            with open(listing, "a") as fh:
                fh.write(name + "\n")
        elif layout == "folder":
            img_path, lab_path = root / "images" / f"{name}.png", root / "labels" / f"{name}.png"
            lab = Image.fromarray(label)
        else:
            raise ConfigError(f"unknown layout {layout!r}: cityscapes, ade20k, voc or folder")
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(img_path, quality=95) if img_path.suffix == ".jpg" else Image.fromarray(image).save(
            img_path
        )
        lab.save(lab_path)
        written.append(img_path)
    return written


def main(argv: list[str] | None = None) -> int:
    from ..cli.common import parse_size

    p = argparse.ArgumentParser(description="write generated val scenes in a dataset layout (for danet-eval)")
    p.add_argument("layout", choices=("cityscapes", "ade20k", "voc", "folder"))
    p.add_argument("root")
    p.add_argument("--split", default="val")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--size", type=parse_size, default=(256, 512))
    p.add_argument("--train-ids", action="store_true", help="Cityscapes: *_labelTrainIds.png instead of *_labelIds")
    args = p.parse_args(argv)
    paths = write_scene_dataset(args.layout, args.root, args.split, args.count, args.size, args.train_ids)
    print(f"wrote {len(paths)} scenes as {args.layout} under {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
