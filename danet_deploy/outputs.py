"""What an artifact's graph emits: full-resolution logits, an arg-maxed class mask, or both.

A robot needs the mask, not 19 x 1024 x 2048 float logits (152 MiB a frame) to arg-max on its
CPU, so ``danet-export --emit`` can append the arg-max (and keep the final resize) inside the
graph, as Isaac ROS and DeepStream decode segmentation on the device. The output tensors have
fixed names, so the runtime knows what it got from the manifest or, for a bare model file, from
the graph's output names alone:

* ``logits``        float32 ``[N, C, H, W]`` at the input size (the default, as before);
* ``mask``          ``uint8`` ``[N, H, W]`` class indices (``int32`` where an engine lacks
                    uint8 I/O or there are more than 255 classes); an image whose logits were
                    not finite (NaN/Inf: a broken FP16 engine, NaN weights) gets a mask filled
                    with :func:`invalid_mask_value` (255, or -1 for int32), which no class
                    index can equal, and the runtime raises on it as it does on NaN logits;
* ``logits_lowres`` float32 ``[N, C, H/s, W/s]`` before the final upsample (``s`` = the model's
                    ``logits_stride``: its output stride, or 4 with a decoder), for users who
                    need probabilities at a fraction of the bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError

LOGITS, MASK, LOGITS_LOWRES = "logits", "mask", "logits_lowres"
#: ``--emit`` value -> output tensors, in graph order.
EMITS: dict[str, tuple[str, ...]] = {
    "logits": (LOGITS,),
    "mask": (MASK,),
    "both": (MASK, LOGITS),
    "mask-lowres": (MASK, LOGITS_LOWRES),
}


def check_emit(emit: str) -> str:
    if emit not in EMITS:
        raise ConfigError(f"--emit must be one of {', '.join(EMITS)}, got {emit!r}")
    return emit


def mask_dtype(num_classes: int, engine_dtype: str = "uint8") -> str:
    """``uint8`` when the classes fit beside the invalid value and the engine has uint8 I/O, else ``int32``."""
    return "uint8" if engine_dtype == "uint8" and num_classes <= 255 else "int32"


def invalid_mask_value(dtype: Any) -> int:
    """The value a graph's mask holds for an image whose logits were not finite: 255 in uint8, -1
    in int32 (never a class index: uint8 masks are used for at most 255 classes)."""
    return 255 if np.dtype(dtype) == np.uint8 else -1


def output_spec(
    emit: str, input_shape: list[Any], num_classes: int, output_stride: int, mask_type: str = "uint8"
) -> dict[str, Any]:
    """The manifest's ``output`` entry: the first tensor's name/shape/dtype, ``emit`` and every tensor."""
    n, _, h, w = input_shape

    def lowres(dim: Any) -> Any:
        return f"ceil({dim}/{output_stride})" if isinstance(dim, str) else -(-int(dim) // output_stride)

    shapes = {
        LOGITS: ([n, num_classes, h, w], "float32"),
        MASK: ([n, h, w], mask_type),
        LOGITS_LOWRES: ([n, num_classes, lowres(h), lowres(w)], "float32"),
    }
    tensors = [{"name": name, "shape": shapes[name][0], "dtype": shapes[name][1]} for name in EMITS[check_emit(emit)]]
    return {**tensors[0], "emit": emit, "tensors": tensors}


def emit_from_names(names: list[str]) -> str:
    """The ``--emit`` value whose tensors are ``names`` (a bare model file's outputs)."""
    for emit, tensors in EMITS.items():
        if tuple(names) == tensors:
            return emit
    return "logits"
