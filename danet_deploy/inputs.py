"""What an artifact's graph takes: host-preprocessed float32 NCHW tensors, or raw camera bytes.

The default (``danet-export --accept float``, as before) is a float32 ``[N, 3, H, W]`` tensor
that the host normalised as ``(x / 255 - mean) / std`` in the model's colour order. With
``--accept rgb8`` or ``--accept bgr8`` the graph starts one step earlier, symmetric with
``--emit mask`` at its end: its input is the ``uint8 [N, H, W, 3]`` image a camera driver
delivers (``sensor_msgs/Image`` rgb8/bgr8, an OpenCV frame), and the graph itself casts,
reorders the colours, normalises and transposes to NCHW. The input tensor is named ``image``,
the name danet-serve and a Triton repository written from such an artifact use.

The manifest's ``input`` entry records it (``accept``, ``layout: NHWC``, ``dtype: uint8``);
an entry without ``accept`` is a float artifact (every manifest written before this existed).
This module is numpy-only: the runtime reads it on robots without torch or onnx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from .manifest_sections import InputInfo

FLOAT = "float"
IMAGE_NAME = "image"
#: ``--accept`` value -> the colour order of the image the graph takes (``None``: float NCHW tensors).
ACCEPTS: dict[str, str | None] = {FLOAT: None, "rgb8": "RGB", "bgr8": "BGR"}
NCHW_TO_NHWC = (0, 2, 3, 1)


def check_accept(accept: str) -> str:
    if accept not in ACCEPTS:
        raise ConfigError(f"--accept must be one of {', '.join(ACCEPTS)}, got {accept!r:.40}")
    return accept


def image_order(accept: str) -> str:
    """Colour order of the uint8 images ``Session.run`` takes: the accepted one, else RGB (the host
    converts to the model's own order while preprocessing)."""
    return ACCEPTS[check_accept(accept)] or "RGB"


def reverses_channels(accept: str, model_order: str) -> bool:
    """Whether the graph must swap R and B: the image's order differs from the model's."""
    return image_order(accept) != str(model_order or "RGB").upper()


def to_nhwc(shape: Sequence[Any]) -> list[Any]:
    """An NCHW shape (ints or dim names) reordered as NHWC, with the channel count 3."""
    return [shape[i] for i in NCHW_TO_NHWC]


def to_nchw(shape: Sequence[Any], layout: str) -> list[Any]:
    """A 4-D shape in ``layout`` reordered as NCHW (planning and memory checks think in NCHW)."""
    if layout == "NHWC":
        return [shape[0], shape[3], shape[1], shape[2]]
    return list(shape)


def accept_input_spec(spec: dict[str, Any], accept: str) -> dict[str, Any]:
    """The manifest ``input`` entry of an ``--accept`` graph, from the float NCHW entry it wraps."""
    if check_accept(accept) == FLOAT:
        return spec
    out = {
        **spec,
        "name": IMAGE_NAME,
        "shape": to_nhwc(spec["shape"]),
        "dtype": "uint8",
        "layout": "NHWC",
        "accept": accept,
        "dynamic_axes": {str(NCHW_TO_NHWC.index(int(k))): v for k, v in (spec.get("dynamic_axes") or {}).items()},
    }
    for key in ("min_shape", "opt_shape", "max_shape"):
        if spec.get(key):
            out[key] = to_nhwc(spec[key])
    return out


def bare_input_entry(name: str, shape: list[Any], dtype: str, meta: dict[str, str]) -> dict[str, Any]:
    """The manifest ``input`` entry of a bare model file (no manifest): a uint8 4-D input with 3
    channels last is an ``--accept`` graph (colour order from its ``danet.accept`` metadata)."""
    if dtype == "uint8" and len(shape) == 4:
        accept = meta.get("danet.accept", "rgb8")
        return {
            "name": name,
            "shape": shape,
            "dtype": "uint8",
            "layout": "NHWC",
            "accept": accept if accept in ACCEPTS and accept != FLOAT else "rgb8",
        }
    return {"name": name, "shape": shape, "dtype": "float32"}


def check_image_batch(batch: Any, accept: str) -> np.ndarray:
    """Validate what an ``--accept`` artifact's engine takes: a contiguous uint8 ``[N, H, W, 3]``.

    Why typed errors here: the graph would cast a float image to garbage bytes or fail deep in
    the engine on a channel mismatch; a user who hands it a preprocessed float tensor gets told
    this artifact does its own preprocessing.
    """
    order = image_order(accept)
    if not isinstance(batch, np.ndarray):
        raise InputError(
            f"this artifact takes uint8 NxHxWx3 {order} images (exported with --accept {accept}), "
            f"got {type(batch).__name__}"
        )
    if batch.dtype != np.uint8:
        hint = (
            " (a preprocessed float tensor? this artifact normalises in its graph: pass the raw uint8 image)"
            if np.issubdtype(batch.dtype, np.floating)
            else ""
        )
        raise InputError(
            f"this artifact takes uint8 {order} images (exported with --accept {accept}), got dtype "
            f"{batch.dtype}{hint}; convert with img.astype(np.uint8) only if the values are 0..255"
        )
    if batch.ndim != 4:
        raise InputError(
            f"this artifact takes a 4-D NxHxWx3 uint8 batch, got shape {batch.shape}; add a batch axis with image[None]"
        )
    if batch.shape[3] != 3:
        hint = "; it looks NCHW: pass the HxWx3 image itself" if batch.shape[1] == 3 else ""
        raise InputError(
            f"this artifact takes 3 colour channels last (NxHxWx3 {order}), got shape {batch.shape}"
            f"{hint}{'; drop the alpha channel (img[..., :3])' if batch.shape[3] == 4 else ''}"
        )
    if min(batch.shape) < 1:
        raise InputError(f"got an empty image batch of shape {batch.shape}")
    return np.ascontiguousarray(batch)


def image_batch(images: Sequence[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 NHWC batch of ``images`` as they are, resized on the host (uint8 bilinear, the same
    resize the float path applies before normalising) only when ``size`` differs from theirs."""
    from .runtime.preprocess import resize_image

    if size is not None:
        images = [resize_image(img, size) for img in images]
    return np.ascontiguousarray(np.stack(images))


def from_rgb(image: np.ndarray, accept: str) -> np.ndarray:
    """An RGB image in the colour order an ``accept`` artifact takes (parity and danet-serve hold RGB).

    A non-array is refused here for every ``accept``: the channel swap of a BGR artifact would
    otherwise fail on it as a bare TypeError while a float artifact passed it on."""
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"expected a numpy uint8 HxWx3 RGB image, got {type(image).__name__}; "
            "convert with np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    return np.ascontiguousarray(image[..., ::-1]) if image_order(accept) == "BGR" else image


def contract_note(input_entry: InputInfo) -> str:
    """One line saying what a served model's input is, and how it relates to danet-serve's ``image``."""
    accept = input_entry.accept
    if accept == FLOAT:
        return (
            "input 'input' is float32 NCHW, normalised on the client ((x/255 - mean)/std, the manifest's "
            "preprocessing): not danet-serve's uint8 'image'; export with --accept rgb8 for that contract"
        )
    shape = input_entry.shape
    static = len(shape) == 4 and all(isinstance(d, int) for d in shape[1:3])
    size = f"exactly {shape[1]}x{shape[2]} (the artifact is static; resize on the client)" if static else "any size"
    return (
        f"input '{IMAGE_NAME}' is uint8 HxWx3 {image_order(accept)}, {size}: danet-serve's contract, normalised "
        "inside the graph"
    )
