"""Pre- and post-processing shared by every backend (and by calibration): one code path.

numpy + Pillow only: this module is imported on robots that have no torch. Images are uint8
HWC RGB; network inputs are float32 NCHW normalised as ``(x / 255 - mean) / std``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..outputs import mask_dtype

# Cityscapes-style colours, then a deterministic spread for more classes
_BASE_PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (107, 142, 35),
        (70, 130, 180),
        (0, 0, 142),
        (220, 20, 60),
        (153, 153, 153),
        (190, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (152, 251, 152),
        (102, 102, 156),
        (255, 0, 0),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)


def palette(num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours (stable across runs)."""
    if num_classes <= len(_BASE_PALETTE):
        return _BASE_PALETTE[:num_classes].copy()
    rng = np.random.default_rng(12345)
    extra = rng.integers(0, 256, size=(num_classes - len(_BASE_PALETTE), 3), dtype=np.uint8)
    return np.concatenate([_BASE_PALETTE, extra])


def as_image_list(images: Any) -> list[np.ndarray]:
    """Accept one HWC image, a list of them, or an NHWC array; validate each (uint8, 3 channels)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            raise InputError(
                f"got a grayscale HxW image of shape {images.shape}; convert it to RGB (np.stack([img] * 3, -1)) first"
            )
        if images.ndim == 3:
            items = [images]
        elif images.ndim == 4:
            if not len(images):
                raise InputError("got an empty batch (0xHxWx3); pass at least one HxWx3 uint8 RGB image")
            items = list(images)
        else:
            raise InputError(f"expected an HxWx3 image or an NxHxWx3 batch, got an array of shape {images.shape}")
    elif isinstance(images, (list, tuple)):
        if not images:
            raise InputError("got an empty list of images; pass at least one HxWx3 uint8 RGB image")
        items = list(images)
    else:
        raise InputError(
            f"expected numpy uint8 HxWx3 RGB image(s), got {type(images).__name__}; "
            "convert with np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    for i, image in enumerate(items):
        check_image(image, index=i)
    return items


def check_image(image: Any, index: int = 0) -> None:
    where = f"image {index}"
    if not isinstance(image, np.ndarray):
        raise InputError(f"{where}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        raise InputError(f"{where}: grayscale HxW image; convert to RGB (np.stack([img] * 3, -1)) first")
    if image.ndim != 3:
        raise InputError(f"{where}: expected HxWx3 (channels last), got shape {image.shape}")
    if image.shape[2] != 3:
        if image.shape[0] == 3:
            raise InputError(
                f"{where}: shape {image.shape} looks channels-first; pass HxWx3 (np.transpose(img, (1, 2, 0)))"
            )
        if image.shape[2] == 4:
            raise InputError(f"{where}: RGBA image; drop the alpha channel (img[..., :3]) first")
        raise InputError(f"{where}: expected 3 colour channels, got {image.shape[2]}")
    if image.dtype != np.uint8:
        raise InputError(
            f"{where}: expected dtype uint8 (0..255 RGB), got {image.dtype}; use session.infer() for "
            "preprocessed float tensors, or convert with img.astype(np.uint8)"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{where}: empty image of shape {image.shape}")


def image_hw(image: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of an HWC or HW image: ``shape[:2]`` typed as the pair it is."""
    return int(image.shape[0]), int(image.shape[1])


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 HWC image to ``(height, width)``."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


@functools.lru_cache(maxsize=16)
def _level_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``[3, 256]`` float32: the normalised value of every uint8 level, per channel, computed with
    the same float32 operations as ``(x / 255 - mean) / std`` so the results are bit-identical."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    tables = (levels[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    tables.setflags(write=False)
    return tables


def normalize(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 NHWC (same size) -> float32 NCHW, ``(x / 255 - mean) / std``.

    Why a lookup table: a uint8 pixel has 256 possible values, so looking each level up per
    channel writes the float tensor once, in planar order, straight from the interleaved image:
    no float arithmetic passes and no transpose. ``mode="clip"`` matters: every uint8 index is in
    range, and numpy's default ``mode="raise"`` with ``out=`` goes through a temporary buffer that
    made the lookup 5-7x slower (8.5 ms vs 1.2-1.7 ms at 512x512 on a 2-core Xeon; this is most of
    what ``Session.run`` adds to the engine's own time).
    """
    batch = np.stack(images)
    if batch.dtype != np.uint8:  # float input (tests, callers with their own decoding): arithmetic path
        batch = batch.astype(np.float32) / 255.0
        batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    tables = _level_tables(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    n, h, w, channels = batch.shape
    out = np.empty((n, channels, h, w), np.float32)
    for channel in range(channels):
        np.take(tables[channel], batch[..., channel], out=out[:, channel], mode="clip")
    return out


def preprocess(
    images: Sequence[np.ndarray], preprocessing: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The one preprocessing path (runtime, parity and calibration): resize if ``size``, normalise."""
    if preprocessing.get("color_order", "RGB").upper() == "BGR":
        images = [img[..., ::-1] for img in images]
    if size is not None:
        images = [resize_image(img, size) for img in images]
    return normalize(images, preprocessing["mean"], preprocessing["std"])


def _bilinear_axis(
    n_in: int, n_out: int, part: slice = slice(None), align_corners: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a bilinear resize along one axis, for the output positions
    ``part`` selects (computed for those alone, with the same float operations). Half-pixel centres
    by default; ``align_corners`` maps the first and last pixels onto each other, as the models
    built with ``align_corners=True`` (official DANet, mmseg 769x769) and their test protocols do."""
    start, stop, step = part.indices(n_out)
    index = np.arange(start, stop, step, dtype=np.float64)
    if align_corners:
        pos = index * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(index)
    else:
        pos = (index + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resize_logits(
    logits: np.ndarray,
    size: tuple[int, int],
    rows: slice = slice(None),
    cols: slice = slice(None),
    align_corners: bool = False,
) -> np.ndarray:
    """Bilinear resize of ``[C, h, w]`` float logits to ``[C, H, W]`` in numpy (half-pixel, or
    ``align_corners``); ``rows``/``cols`` select output rows and columns (each value is computed
    exactly as in the whole resize, reading only the source rows and columns it needs)."""
    _, h, w = logits.shape
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        return logits[:, rows, cols]
    y0, y1, wy = _bilinear_axis(h, out_h, rows, align_corners)
    x0, x1, wx = _bilinear_axis(w, out_w, cols, align_corners)
    first = int(x0[0]) if len(x0) else 0
    source = logits[:, :, first : int(x1.max(initial=first)) + 1]  # a view: the columns this block reads
    x0, x1 = x0 - first, x1 - first
    band = source[:, y0, :] * (1 - wy)[None, :, None] + source[:, y1, :] * wy[None, :, None]
    return band[:, :, x0] * (1 - wx)[None, None, :] + band[:, :, x1] * wx[None, None, :]


#: float32 bytes of resized logits that :func:`mask_at_size` holds at once
MASK_BAND_BYTES = 64 << 20


def mask_tiles(classes: int, logits_w: int, size: tuple[int, int], band_bytes: int) -> tuple[int, int]:
    """``(rows, cols)`` of the output tiles :func:`mask_at_size` resizes at once.

    A tile of ``r x q`` output pixels holds ``r x q`` resized values per class and first ``r`` rows of
    the source columns it reads (about ``q * w / W + 2`` of the logits' ``w``): both count, since
    a wide logits map resized to a narrow image (a 1000000x1 photo through a 128x128 engine) reads
    far more source columns than it writes. Columns are split too, so one very wide row cannot
    exceed the budget either.
    """
    out_h, out_w = size
    per_pixel = 4 * max(1, classes)
    budget = max(1, band_bytes // per_pixel)  # float32 values per class plane a tile may hold
    ratio = logits_w / out_w
    cols = max(1, min(out_w, int((budget - 2) / (1 + ratio))))
    reads = cols + int(np.ceil(cols * ratio)) + 2
    rows = max(1, min(out_h, budget // reads))
    return rows, cols


def mask_at_size(
    logits: np.ndarray, size: tuple[int, int], band_bytes: int = MASK_BAND_BYTES, align_corners: bool = False
) -> np.ndarray:
    """``logits_to_mask(resize_logits(logits, size, align_corners=...))``, bit for bit, one tile of
    pixels at a time.

    Why: the full-size logits of a large photo are ``4 * C`` bytes a pixel (1.5 GB for a
    49-megapixel image with 8 classes, several times that at the arg-max's peak), while the mask
    is one byte a pixel; resizing in tiles (:func:`mask_tiles`) bounds the extra memory to a small
    multiple of ``band_bytes`` whatever the image size and aspect ratio. Each output pixel depends
    only on its own two source rows and columns, so tiles are exact.
    """
    c, h, w = logits.shape
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        return logits_to_mask(logits)
    rows, cols = mask_tiles(c, w, size, band_bytes)
    if (rows, cols) == (out_h, out_w):
        return logits_to_mask(resize_logits(logits, size, align_corners=align_corners))
    mask = np.empty((out_h, out_w), mask_dtype(c))
    for top in range(0, out_h, rows):
        for left in range(0, out_w, cols):
            part = (slice(top, top + rows), slice(left, left + cols))
            mask[part] = logits_to_mask(resize_logits(logits, size, *part, align_corners=align_corners))
    return mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``[h, w]`` class mask to ``[H, W]`` (pixel centres, as PIL's NEAREST)."""
    h, w = mask.shape
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        return mask
    rows = np.minimum(((np.arange(out_h) + 0.5) * (h / out_h)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * (w / out_w)).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def logits_to_mask(logits: np.ndarray) -> np.ndarray:
    """``[..., C, H, W]`` logits -> ``[..., H, W]`` uint8 (or int32 for > 255 classes) class indices.

    Exactly ``np.argmax`` over the class axis (first maximum wins), computed as a running maximum
    over the C class planes: each pass reads one contiguous plane, where ``np.argmax(axis=-3)``
    strides across planes; 2x faster for 8x512x512 logits on a 2-core Xeon, and this is the host
    arg-max every logits artifact's ``Session.run`` pays. NaN logits take ``np.argmax``'s own path.
    """
    dtype = np.dtype(mask_dtype(logits.shape[-3]))  # the rule in-graph masks and danet-serve use too
    planes = np.moveaxis(logits, -3, 0)
    best = planes[0].copy()
    mask = np.zeros(best.shape, dtype)
    for index in range(1, planes.shape[0]):
        better = np.greater(planes[index], best)
        np.maximum(best, planes[index], out=best)
        np.putmask(mask, better, index)
    if np.issubdtype(best.dtype, np.floating) and np.isnan(best).any():  # maximum() propagated a NaN
        return np.argmax(logits, axis=-3).astype(dtype)
    return mask


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Class-index mask -> uint8 HxWx3 colour image."""
    return palette(max(num_classes, int(mask.max()) + 1))[mask]


def overlay(
    image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5, band_bytes: int = MASK_BAND_BYTES
) -> np.ndarray:
    """Blend the colourised mask over the image (both HxW at the image's size), a band of rows at a time.

    Why bands: the blend is computed in float32, 12 bytes a pixel per copy; over a whole
    49-megapixel photo its temporaries peaked at ~2 GB. Each row is blended with the same float32
    operations as the whole picture would be, so the pixels are identical; the memory beyond the
    uint8 picture stays a small multiple of ``band_bytes``.
    """
    colors = palette(max(num_classes, int(mask.max()) + 1))
    out = np.empty(image.shape, np.uint8)
    rows = max(1, band_bytes // max(1, 12 * image.shape[1]))
    for top in range(0, image.shape[0], rows):
        part = slice(top, top + rows)
        blend = image[part].astype(np.float32) * (1 - alpha) + colors[mask[part]].astype(np.float32) * alpha
        out[part] = blend.round()
    return out


def legend(class_names: Sequence[str], width: int, classes: Sequence[int] | None = None) -> np.ndarray:
    """A uint8 ``[h, width, 3]`` strip of colour swatches and class names, to stack under an overlay.

    ``classes`` limits it to the classes present (default: all); names wrap onto as many rows as
    the width needs, so any picture can say what its colours mean.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    colors = palette(len(class_names))
    shown = list(range(len(class_names))) if classes is None else sorted({int(c) for c in classes})
    swatch, pad, row_h = 10, 6, 16
    entries = [(c, class_names[c] if c < len(class_names) else str(c)) for c in shown]
    widths = [swatch + 4 + int(font.getlength(name)) + pad for _, name in entries]
    rows, x = 1, pad
    for w in widths:
        if x + w > width and x > pad:
            rows, x = rows + 1, pad
        x += w
    strip = Image.new("RGB", (width, rows * row_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x, y = pad, 2
    for (cls, name), w in zip(entries, widths):
        if x + w > width and x > pad:
            x, y = pad, y + row_h
        color = tuple(int(v) for v in (colors[cls] if cls < len(colors) else palette(cls + 1)[cls]))
        draw.rectangle([x, y + 3, x + swatch, y + 3 + swatch], fill=color, outline=(0, 0, 0))
        draw.text((x + swatch + 4, y + 2), name, fill=(0, 0, 0), font=font)
        x += w
    return np.asarray(strip)


def with_legend(picture: np.ndarray, class_names: Sequence[str], classes: Sequence[int] | None = None) -> np.ndarray:
    """``picture`` with :func:`legend` stacked underneath."""
    return np.concatenate([picture, legend(class_names, picture.shape[1], classes)], axis=0)
