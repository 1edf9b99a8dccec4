"""Reading images from disk as uint8 RGB (Pillow), with clear errors for bad files and folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CalibrationError, InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str | Path) -> np.ndarray:
    """uint8 HxWx3 RGB; grayscale/RGBA/palette images are converted; unreadable files raise InputError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path} ({exc}); is it a valid jpg/png/bmp?") from exc


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in a stable (sorted) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder {str(folder)!r} does not exist or is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(folder: str | Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted); an empty folder or a bad file is an error."""
    files = list_images(folder)
    if not files:
        raise CalibrationError(f"no images (jpg/jpeg/png/bmp) in {folder}; point to a folder of RGB images")
    return [read_image(p) for p in files[:count]]
