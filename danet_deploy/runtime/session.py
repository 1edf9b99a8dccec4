"""``Session``: the one API an application uses, over any backend.

Input checks live here once (as Polygraphy's runners check feed dicts in their base class), so
every backend gets a validated float32 NCHW array that fits its input spec and a wrong shape,
dtype or NaN is a clear :class:`~danet_deploy.errors.InputError`, never a backend crash.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..manifest import Manifest
from ..outputs import LOGITS, LOGITS_LOWRES, MASK, emitted
from .backends.base import Backend, InputSpec
from .preprocess import as_image_list, logits_to_mask, preprocess, resize_logits, resize_mask


class Session:
    """Run DANet on images (``run``) or on preprocessed tensors (``infer``).

    Use as a context manager, or call :meth:`close`, to free engine memory.
    """

    def __init__(self, backend: Backend, manifest: Manifest) -> None:
        self.backend = backend
        self.manifest = manifest

    # -- facts -------------------------------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        return self.backend.input_spec

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.manifest.preprocessing

    def describe(self) -> dict[str, Any]:
        return {"target": self.manifest.target, "precision": self.manifest.precision, **self.backend.describe()}

    # -- inference ---------------------------------------------------------------------------
    def check_tensor(self, tensor: Any) -> np.ndarray:
        """Validate a preprocessed NCHW input against the input spec; return it contiguous."""
        spec = self.input_spec
        if not isinstance(tensor, np.ndarray):
            raise InputError(f"infer() expects a numpy float32 NCHW array, got {type(tensor).__name__}")
        if tensor.dtype != np.float32:
            raise InputError(f"infer() expects float32, got {tensor.dtype}; use tensor.astype(np.float32), or "
                             "run() for uint8 images")
        if tensor.ndim != 4:
            raise InputError(f"infer() expects a 4-D NCHW tensor, got shape {tensor.shape}; add a batch axis "
                             "with tensor[None]")
        if tensor.shape[1] != 3:
            raise InputError(f"infer() expects 3 channels in axis 1 (NCHW), got shape {tensor.shape}"
                             + ("; it looks NHWC: use tensor.transpose(0, 3, 1, 2)" if tensor.shape[-1] == 3 else ""))
        if min(tensor.shape) < 1:
            raise InputError(f"infer() got an empty tensor of shape {tensor.shape}")
        for axis, (got, want) in enumerate(zip(tensor.shape, spec.shape)):
            if want is not None and got != want:
                raise InputError(f"input shape {tensor.shape} does not match the engine's static shape "
                                 f"{_fmt(spec.shape)} (axis {axis}); use run() to resize images, or re-export "
                                 "with --dynamic")
        for bound, word, cmp in ((spec.min_shape, "below the minimum", np.less), (spec.max_shape, "above the maximum", np.greater)):
            if bound is not None and np.any(cmp(np.asarray(tensor.shape), np.asarray(bound))):
                raise InputError(f"input shape {tensor.shape} is {word} {tuple(bound)} of the engine's optimisation "
                                 "profile; re-export with a wider --min-size/--max-size")
        if not np.isfinite(tensor).all():
            raise InputError("input contains NaN or Inf values; check the preprocessing of the source images")
        return np.ascontiguousarray(tensor)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's output tensors (``logits``, ``mask``, ``logits_lowres``; see :mod:`danet_deploy.outputs`)."""
        return emitted(self.manifest.output)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw logits ``[N, classes, H, W]`` for a preprocessed float32 NCHW tensor."""
        if LOGITS not in self.outputs:
            raise ConfigError(f"this artifact emits {', '.join(self.outputs)} (exported with --emit "
                              f"{self.manifest.output.get('emit')}), not full-resolution logits; use run() for masks, "
                              "infer_outputs() for every output, or re-export with --emit logits|both")
        checked = self.check_tensor(tensor)
        if self.outputs == (LOGITS,):
            return self.backend.infer(checked)
        return self.backend.infer_outputs(checked)[LOGITS]

    def infer_outputs(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name for a preprocessed float32 NCHW tensor."""
        return self.backend.infer_outputs(self.check_tensor(tensor))

    def _infer_images(self, images: Sequence[np.ndarray], names: tuple[str, ...] = (LOGITS,)) -> list[dict[str, np.ndarray]]:
        """Per image, the outputs ``names`` at its own size (resized to and from a static engine shape):
        logits bilinearly (low-resolution logits too), masks by nearest neighbour."""
        spec = self.input_spec
        size = spec.static_hw
        batch_size = spec.static_batch
        results: list[dict[str, np.ndarray]] = [{} for _ in images]
        # group images that share an input size, so a dynamic engine runs them as one batch
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(size or img.shape[:2], []).append(i)
        for hw, indices in groups.items():
            step = batch_size or len(indices)
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                tensor = preprocess([images[i] for i in chunk], self.preprocessing, hw)
                if batch_size and len(chunk) < batch_size:  # pad a static batch with copies
                    pad = np.repeat(tensor[-1:], batch_size - len(chunk), axis=0)
                    tensor = np.concatenate([tensor, pad])
                outs = {LOGITS: self.infer(tensor)} if names == (LOGITS,) else self.infer_outputs(tensor)
                for name in names:
                    for j, i in enumerate(chunk):
                        value, size = outs[name][j], images[i].shape[:2]
                        results[i][name] = resize_mask(value, size) if name == MASK else resize_logits(value, size)
        return results

    def run(self, images: Any, return_logits: bool = False, tile: tuple[int, int] | None = None,
            stride: tuple[int, int] | None = None) -> Any:
        """Masks for uint8 HxWx3 RGB image(s), at each image's original size.

        Args:
            images: one image, a list, or an NxHxWx3 array (any sizes).
            return_logits: also return float32 ``[classes, H, W]`` logits per image.
            tile, stride: sliding-window inference with ``tile=(h, w)`` crops every ``stride``
                pixels (default: 2/3 of the tile), logits averaged where crops overlap.
        Returns:
            one ``HxW`` uint8 mask for one image, else a list; ``(masks, logits)`` when
            ``return_logits``.
        """
        single = isinstance(images, np.ndarray) and images.ndim == 3
        items = as_image_list(images)
        available = self.outputs
        probabilities = LOGITS if LOGITS in available else (LOGITS_LOWRES if LOGITS_LOWRES in available else None)
        if tile is not None and LOGITS not in available:
            raise ConfigError(f"sliding windows average full-resolution logits, and this artifact emits "
                              f"{', '.join(available)}; re-export with --emit logits or both")
        if return_logits and probabilities is None:
            raise ConfigError("this artifact emits a mask only (--emit mask): there are no logits to return; "
                              "re-export with --emit both or mask-lowres")
        if tile is not None:
            from .sliding import sliding_window_logits

            logits = [sliding_window_logits(self, img, tile, stride) for img in items]
            masks = [logits_to_mask(lg) for lg in logits]
        elif MASK in available:  # the engine arg-maxed: no host argmax, no logits leave it unless asked
            wanted = (MASK, probabilities) if return_logits else (MASK,)
            outs = self._infer_images(items, wanted)  # type: ignore[arg-type]
            masks = [o[MASK] for o in outs]
            logits = [o[probabilities] for o in outs] if return_logits else []
        else:
            logits = [o[LOGITS] for o in self._infer_images(items)]
            masks = [logits_to_mask(lg) for lg in logits]
        if single:
            return (masks[0], logits[0]) if return_logits else masks[0]
        return (masks, logits) if return_logits else masks

    def stream(self, frames: Any, depth: int = 2, policy: str = "all") -> Any:
        """Pipelined masks for a stream of frames: ``(frame_index, mask, timings)`` per frame.

        Preprocessing of frame i+1 and post-processing of frame i-1 overlap the engine running
        frame i; ``policy="latest"`` drops stale frames of a live camera. See
        :func:`danet_deploy.runtime.stream.stream`.
        """
        from .stream import stream

        return stream(self, frames, depth=depth, policy=policy)

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Session(target={self.manifest.target!r}, precision={self.manifest.precision!r}, "
                f"backend={self.backend.name!r}, input={_fmt(self.input_spec.shape)})")


def _fmt(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
