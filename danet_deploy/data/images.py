"""Reading images from disk as uint8 RGB (Pillow), with clear errors for bad files and folders.

Memory bound: an image is decoded only if its header says at most ``max_pixels`` pixels (default
:data:`MAX_PIXELS`, 50 MP: 150 MB as RGB, about twice that at the peak of decoding); larger files
are refused from their header, before any pixel is decoded, unless a JPEG can be decoded
downscaled (``reduce_to``: libjpeg's DCT scaling by 1/2, 1/4 or 1/8, via ``Image.draft``) to
within the limit, which a static-shape engine uses since it resizes every image anyway.
Pillow's own decompression-bomb check is replaced by this one, which gives a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CalibrationError, InputError, summarize_exception
from ..util.files import not_a_file_reason

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_PIXELS = 50_000_000


def _open(path: Path):
    """``Image.open`` with Pillow's decompression-bomb error as an :class:`InputError` (ours, on the
    header right after, is stricter by default: 50 MP against Pillow's 179 MP error threshold)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {path} is too large to decode safely ({exc}); downscale it first") from None


def _check_pixels(img, path: Path, max_pixels: int | None, reduce_to: tuple[int, int] | None) -> None:
    """Refuse an image above ``max_pixels``; a JPEG is first asked to decode downscaled."""
    if max_pixels is None:
        return
    width, height = img.size
    if width * height > max_pixels and reduce_to is not None and img.format == "JPEG":
        img.draft("RGB", (reduce_to[1], reduce_to[0]))  # scale >= the requested size
        width, height = img.size
    if width * height > max_pixels:
        raise InputError(
            f"image {path} is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the "
            f"{max_pixels / 1e6:.0f} MP limit (decoding it would take {width * height * 3 / 2**30:.1f} "
            "GiB or more); downscale it first, or raise the limit (read_image(max_pixels=...), "
            "danet-run --max-pixels)"
        )


def verify_image(path: Path) -> str | None:
    """``None`` if Pillow can fully decode ``path``, else the reason it cannot."""
    from PIL import UnidentifiedImageError

    try:
        with _open(path) as img:
            _check_pixels(img, path, MAX_PIXELS, None)
            img.load()
    except InputError as exc:
        return str(exc)
    except UnidentifiedImageError:
        return "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated: {summarize_exception(exc)}"
    return None


def decode_rgb(
    path: Path, max_pixels: int | None = MAX_PIXELS, reduce_to: tuple[int, int] | None = None
) -> tuple[np.ndarray, bool]:
    """Decode to uint8 HxWx3 RGB; returns ``(image, converted)`` where ``converted`` flags a non-RGB file."""
    with _open(path) as img:
        _check_pixels(img, path, max_pixels, reduce_to)
        mode = img.mode
        if mode == "RGB":
            return np.asarray(img, dtype=np.uint8).copy(), False
        if mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale: rescale to 8 bits
            arr = np.asarray(img, dtype=np.float64)
            if mode == "F":
                peak = max(float(arr.max()), 1e-12)
                arr = arr / peak * 255.0 if peak > 255.0 or peak <= 1.0 else arr
            else:  # by the container's range, never by content: one bright pixel must not rescale a frame
                arr = arr / 257.0  # 0..65535 -> 0..255 (12-bit data in 16-bit files reads dark: scale it first)
            gray = np.clip(arr, 0, 255).round().astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2), True
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), True


def read_image(
    path: str | Path, max_pixels: int | None = MAX_PIXELS, reduce_to: tuple[int, int] | None = None
) -> np.ndarray:
    """uint8 HxWx3 RGB; grayscale/16-bit/RGBA/palette images are converted; unreadable files raise InputError.

    Args:
        max_pixels: refuse larger images from their header (see the module doc); ``None``: no limit.
        reduce_to: ``(H, W)`` the caller will resize to anyway: a JPEG above the limit is decoded
            at the smallest DCT scale not below it.
    """
    path = _image_path(path)
    from PIL import UnidentifiedImageError

    try:
        return decode_rgb(path, max_pixels, reduce_to)[0]
    except InputError:
        raise
    except UnidentifiedImageError:
        reason = "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError) as exc:
        reason = f"corrupt or truncated: {summarize_exception(exc)}"
    raise InputError(f"cannot read image {path} ({reason}); is it a valid jpg/png/bmp?")


def _image_path(path: str | Path) -> Path:
    """``path`` as a Path, refused unless it is an existing file (a folder gets its own message)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass image files (e.g. {path}/*.png)")
    if not path.is_file():
        raise InputError(f"image {str(path)!r} {not_a_file_reason(path)}")
    return path


def check_image_file(
    path: str | Path, max_pixels: int | None = MAX_PIXELS, reduce_to: tuple[int, int] | None = None
) -> None:
    """The cheap checks of :func:`read_image` (exists, identifiable, within the pixel limit), from the
    header alone: lets a command refuse a bad input before it writes anything."""
    from PIL import UnidentifiedImageError

    path = _image_path(path)
    try:
        with _open(path) as img:
            _check_pixels(img, path, max_pixels, reduce_to)
    except UnidentifiedImageError:
        raise InputError(
            f"cannot read image {path} (not an image Pillow can identify); is it a valid jpg/png/bmp?"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read image {path} ({exc})") from exc


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in a stable (sorted) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder {str(folder)!r} does not exist or is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(
        (p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def read_image_folder(folder: str | Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted); an empty folder or a bad file is an error."""
    files = list_images(folder)
    if not files:
        raise CalibrationError(f"no images (jpg/jpeg/png/bmp) in {folder}; point to a folder of RGB images")
    return [read_image(p) for p in files[:count]]
