"""Reading images from disk as uint8 RGB (Pillow), with clear errors for bad files and folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CalibrationError, InputError, summarize_exception

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def verify_image(path: Path) -> str | None:
    """``None`` if Pillow can fully decode ``path``, else the reason it cannot."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except UnidentifiedImageError:
        return "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated: {summarize_exception(exc)}"
    return None


def decode_rgb(path: Path) -> tuple[np.ndarray, bool]:
    """Decode to uint8 HxWx3 RGB; returns ``(image, converted)`` where ``converted`` flags a non-RGB file."""
    from PIL import Image

    with Image.open(path) as img:
        mode = img.mode
        if mode == "RGB":
            return np.asarray(img, dtype=np.uint8).copy(), False
        if mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale: rescale to 8 bits
            arr = np.asarray(img, dtype=np.float64)
            if mode == "F":
                peak = max(float(arr.max()), 1e-12)
                arr = arr / peak * 255.0 if peak > 255.0 or peak <= 1.0 else arr
            elif arr.max() > 255:
                arr = arr / 257.0  # 0..65535 -> 0..255
            gray = np.clip(arr, 0, 255).round().astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2), True
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), True


def read_image(path: str | Path) -> np.ndarray:
    """uint8 HxWx3 RGB; grayscale/16-bit/RGBA/palette images are converted; unreadable files raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {str(path)!r} does not exist")
    reason = verify_image(path)
    if reason is not None:
        raise InputError(f"cannot read image {path} ({reason}); is it a valid jpg/png/bmp?")
    return decode_rgb(path)[0]


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in a stable (sorted) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder {str(folder)!r} does not exist or is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted((p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.relative_to(folder).as_posix())


def read_image_folder(folder: str | Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted); an empty folder or a bad file is an error."""
    files = list_images(folder)
    if not files:
        raise CalibrationError(f"no images (jpg/jpeg/png/bmp) in {folder}; point to a folder of RGB images")
    return [read_image(p) for p in files[:count]]
