"""ROS image messages <-> numpy arrays, without ROS: the fields of ``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage`` in, uint8 HxWx3 RGB out (and masks back into ``Image`` fields).

Why here and not in the ROS package: the node (``ros2/danet_deploy_ros``) and bag replay
(``danet-run --bag``, which reads recordings with no ROS installed) read the same messages, so the
conversion lives once, in the runtime, where it needs numpy and Pillow only (``cv_bridge`` has no
pip wheel). Every refusal is a :class:`~danet_deploy.errors.FrameError` whose ``cause`` a node
counts in its diagnostics.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..errors import FrameError

#: encoding -> (channels, bytes per channel, order of the colour channels: rgb, bgr or mono)
ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgb"),
    "bgra8": (4, 1, "bgr"),
    "mono8": (1, 1, "mono"),
    "8UC1": (1, 1, "mono"),
    "8UC3": (3, 1, "bgr"),
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgb"),
    "bgra16": (4, 2, "bgr"),
    "mono16": (1, 2, "mono"),
    "16UC1": (1, 2, "mono"),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
MAX_CLASSES_MONO8 = 256


def image_to_rgb(
    height: int, width: int, encoding: str, step: int, data: Any, is_bigendian: int = 0, max_pixels: int | None = None
) -> np.ndarray:
    """A ``sensor_msgs/Image``'s fields -> uint8 HxWx3 RGB.

    Row padding (``step`` beyond ``width x pixel size``) is dropped, BGR orders are swapped, alpha
    is dropped, mono is repeated into three channels, and 16-bit data (byte order from
    ``is_bigendian``) is scaled to 8 bits by its full 16-bit range (``value >> 8``).
    """
    if encoding not in ENCODINGS:
        raise FrameError(
            f"unsupported image encoding {encoding!r}; publish one of {', '.join(ENCODINGS)} "
            "(or a sensor_msgs/CompressedImage in jpeg/png)",
            cause="encoding",
        )
    channels, depth, order = ENCODINGS[encoding]
    height, width, step = int(height), int(width), int(step)
    if height < 1 or width < 1:
        raise FrameError(f"empty image: {width}x{height}", cause="size")
    if max_pixels is not None and height * width > max_pixels:
        raise FrameError(f"image of {width}x{height} pixels is above the {max_pixels} pixel limit", cause="pixels")
    row = width * channels * depth
    buffer = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if step < row or len(buffer) < step * height:
        raise FrameError(
            f"image data of {len(buffer)} bytes does not hold {height} rows of step {step} "
            f"({width}x{channels} {encoding} needs a step >= {row} and >= {step * height} bytes)",
            cause="size",
        )
    rows = np.frombuffer(buffer, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row]
    if depth == 2:
        wide = np.ascontiguousarray(rows).view(">u2" if is_bigendian else "<u2")
        pixels = (wide >> 8).astype(np.uint8).reshape(height, width, channels)
    else:
        pixels = rows.reshape(height, width, channels)
    if order == "mono":
        return np.repeat(pixels, 3, axis=2)
    if order == "bgr":
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


def compressed_to_rgb(format: str, data: Any, max_pixels: int | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png; ``format`` as image_transport writes it, e.g.
    ``"jpeg"`` or ``"bgr8; jpeg compressed bgr8"``) -> uint8 HxWx3 RGB. The pixel count is checked
    from the header before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    kind = str(format).lower()
    if kind and not any(name in kind for name in COMPRESSED_FORMATS):
        raise FrameError(f"unsupported compressed format {format!r}; publish jpeg or png", cause="encoding")
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise FrameError(
                    f"compressed image of {img.width}x{img.height} pixels is above the {max_pixels} pixel limit",
                    cause="pixels",
                )
            return np.asarray(img.convert("RGB"))
    except FrameError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameError(f"undecodable {format or 'compressed'} image: {exc}", cause="decode") from None


def message_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Either message type (anything with its fields: a ROS message, a decoded MCAP record) -> RGB."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(
            msg.height,
            msg.width,
            msg.encoding,
            msg.step,
            msg.data,
            getattr(msg, "is_bigendian", 0),
            max_pixels=max_pixels,
        )
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg.format, msg.data, max_pixels=max_pixels)
    raise FrameError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a CompressedImage", cause="encoding")


def mask_encoding(num_classes: int) -> str:
    """``mono8`` while class indices fit a byte, else ``mono16`` (one encoding per model, so a
    subscriber never sees it change from frame to frame)."""
    return "mono8" if num_classes <= MAX_CLASSES_MONO8 else "mono16"


def array_to_image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """uint8 HxW (``mono8``), uint16 HxW (``mono16``) or uint8 HxWx3 (``rgb8``) -> the fields of a
    ``sensor_msgs/Image`` (little-endian, unpadded rows)."""
    wants: dict[str, tuple[int, type[np.unsignedinteger[Any]]]] = {
        "mono8": (2, np.uint8),
        "mono16": (2, np.uint16),
        "rgb8": (3, np.uint8),
    }
    if encoding not in wants:
        raise FrameError(f"cannot write {encoding!r}; one of {', '.join(wants)}", cause="encoding")
    ndim, dtype = wants[encoding]
    if array.ndim != ndim or (ndim == 3 and array.shape[2] != 3):
        raise FrameError(
            f"{encoding} needs a {'HxWx3' if ndim == 3 else 'HxW'} array, got shape {array.shape}", cause="size"
        )
    if np.issubdtype(array.dtype, np.integer) and array.size and int(array.max()) > np.iinfo(dtype).max:
        raise FrameError(f"values up to {int(array.max())} do not fit {encoding}", cause="size")
    out = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    height, width = out.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * out.itemsize * (3 if ndim == 3 else 1),
        "data": out.tobytes(),
    }


def mask_to_image_fields(mask: np.ndarray, num_classes: int) -> dict[str, Any]:
    """A class mask -> ``Image`` fields in :func:`mask_encoding`'s encoding."""
    return array_to_image_fields(mask, mask_encoding(num_classes))
