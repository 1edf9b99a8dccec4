"""``Session``: the one API an application uses, over any backend.

Input checks live here once (as Polygraphy's runners check feed dicts in their base class), so
every backend gets a validated float32 NCHW array (an ``--accept rgb8|bgr8`` artifact: a uint8
NHWC image batch, see :mod:`danet_deploy.inputs`) that fits its input spec and a wrong shape,
dtype or NaN is a clear :class:`~danet_deploy.errors.InputError`, never a backend crash.

Outputs are checked too: NaN/Inf logits (a broken FP16 engine, NaN weights, inputs far outside
the normalised range) raise :class:`~danet_deploy.errors.NonFiniteOutputError` instead of
becoming a plausible all-one-class mask. The check is ``np.isfinite(logits).all()``: 0.56-0.61 ms
for the 1x8x512x512 logits of danet_demo, 0.1% of a 430-680 ms ONNX Runtime call on 2 CPU threads
(benchmarks/output_check_cost.py); set ``session.check_outputs = False`` to skip it.

Thread safety: a Session holds no per-call state; every backend is safe under concurrent
``run``/``infer`` calls (ONNX Runtime natively, OpenVINO through a pool of infer requests,
TensorRT through a pool of execution contexts), tested with distinct inputs per thread in
tests/hostile_user/test_session_concurrency.py.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError, ManifestError, NonFiniteOutputError, SessionClosedError
from ..inputs import FLOAT, check_image_batch, from_rgb, image_batch, image_order
from ..manifest import Manifest, PreprocessingInfo
from ..outputs import LOGITS, LOGITS_LOWRES, MASK, invalid_mask_value, mask_dtype
from ..planner import feature_size, minimum_input_size
from ..util.counts import is_count
from .backends.base import Backend, InputSpec
from .preprocess import (
    as_image_list,
    image_hw,
    logits_to_mask,
    mask_at_size,
    preprocess,
    resize_logits,
    resize_mask,
)

MAX_ATTENTION_BYTES = 8 * 2**30  # one fp32 position-attention block; 1024x2048 unchunked is 4 GiB


class Session:
    """Run DANet on images (``run``) or on preprocessed tensors (``infer``).

    Use as a context manager, or call :meth:`close`, to free engine memory.
    """

    def __init__(self, backend: Backend, manifest: Manifest) -> None:
        self.backend = backend
        self.manifest = manifest
        self.check_outputs = True
        self.check_inputs = True  # infer(): refuse values the manifest's preprocessing cannot produce
        self.max_attention_bytes = MAX_ATTENTION_BYTES
        self._closed = False
        self._state = threading.Condition()  # guards _closed and _in_flight
        self._in_flight = 0  # engine calls under way: close() waits for them

    @property
    def min_size(self) -> int:
        """Smallest height/width the network resolves (a few feature-map cells; smaller inputs give
        one-class masks): ``run`` upsamples smaller images to it, ``infer`` refuses them."""
        return minimum_input_size(self.manifest.model.output_stride)

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
    def preprocessing(self) -> PreprocessingInfo:
        """The manifest's preprocessing (``mean``, ``std``, ``color_order``; also readable as its JSON mapping)."""
        return self.manifest.preprocessing

    @property
    def accepts(self) -> str:
        """What the engine takes: ``float`` (float32 NCHW, preprocessed here) or ``rgb8``/``bgr8``
        (uint8 NxHxWx3 images, preprocessed in the graph: ``danet-export --accept``)."""
        return self.manifest.input.accept

    @property
    def image_order(self) -> str:
        """Colour order of the uint8 images :meth:`run` and :meth:`stream` take: ``RGB``, or ``BGR``
        for an ``--accept bgr8`` artifact (which is handed the camera's bytes as they are)."""
        return image_order(self.accepts)

    def from_rgb(self, images: Any) -> Any:
        """RGB image(s) in the colour order :meth:`run`, :meth:`stream` and :meth:`prepare` take
        (:attr:`image_order`): as they are, or with R and B swapped for an ``--accept bgr8`` artifact.
        One HxWx3 image or an NxHxWx3 array gives an array back; a list or tuple gives a list. Why:
        whatever holds RGB pixels (decoded files and videos, danet-serve's RGB contract, ROS 2 messages
        converted to RGB) hands them to a session through this one call."""
        if isinstance(images, (list, tuple)):
            return [from_rgb(image, self.accepts) for image in images]
        return from_rgb(images, self.accepts)

    def prepare(self, images: Sequence[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
        """What the engine takes for same-size uint8 HxWx3 ``images`` (resized to ``size`` if given):
        the normalised float32 NCHW tensor, or for an ``--accept`` artifact the uint8 NHWC batch as it
        is (resized in uint8 on the host only when the engine's size is static and differs)."""
        if self.accepts == FLOAT:
            return preprocess(images, self.preprocessing, size)
        return image_batch(images, size)

    def describe(self) -> dict[str, Any]:
        return {"target": self.manifest.target, "precision": self.manifest.precision, **self.backend.describe()}

    # -- inference ---------------------------------------------------------------------------
    def check_tensor(self, tensor: Any) -> np.ndarray:
        """Validate a preprocessed NCHW input (an ``--accept`` artifact: a uint8 NHWC image batch)
        against the input spec; return it contiguous."""
        if self.accepts != FLOAT:
            batch = check_image_batch(tensor, self.accepts)
            self._check_shape(batch.shape, (1, 2))
            return batch
        if not isinstance(tensor, np.ndarray):
            raise InputError(f"infer() expects a numpy float32 NCHW array, got {type(tensor).__name__}")
        if tensor.dtype != np.float32:
            raise InputError(
                f"infer() expects float32, got {tensor.dtype}; use tensor.astype(np.float32), or run() for uint8 images"
            )
        if tensor.ndim != 4:
            raise InputError(
                f"infer() expects a 4-D NCHW tensor, got shape {tensor.shape}; add a batch axis with tensor[None]"
            )
        if tensor.shape[1] != 3:
            raise InputError(
                f"infer() expects 3 channels in axis 1 (NCHW), got shape {tensor.shape}"
                + ("; it looks NHWC: use tensor.transpose(0, 3, 1, 2)" if tensor.shape[-1] == 3 else "")
            )
        if min(tensor.shape) < 1:
            raise InputError(f"infer() got an empty tensor of shape {tensor.shape}")
        self._check_shape(tensor.shape, (2, 3))
        low, high = float(tensor.min()), float(tensor.max())  # one pass each; NaN and Inf propagate
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError("input contains NaN or Inf values; check the preprocessing of the source images")
        self._check_value_range(low, high)
        return np.ascontiguousarray(tensor)

    def _check_shape(self, shape: tuple[int, ...], hw_axes: tuple[int, int]) -> None:
        """The engine's static dims, profile bounds, the network minimum and the attention memory."""
        spec = self.input_spec
        for axis, (got, want) in enumerate(zip(shape, spec.shape)):
            if want is not None and got != want:
                raise InputError(
                    f"input shape {shape} does not match the engine's static shape "
                    f"{_fmt(spec.shape)} (axis {axis}); use run() to resize images, or re-export "
                    "with --dynamic"
                )
        bounds = ((spec.min_shape, "below the minimum", np.less), (spec.max_shape, "above the maximum", np.greater))
        for bound, word, cmp in bounds:
            if bound is not None and np.any(cmp(np.asarray(shape), np.asarray(bound))):
                raise InputError(
                    f"input shape {shape} is {word} {tuple(bound)} of the engine's optimisation "
                    "profile; re-export with a wider --min-size/--max-size"
                )
        small = [axis for axis in hw_axes if spec.shape[axis] is None and shape[axis] < self.min_size]
        if small:
            raise InputError(
                f"input shape {shape} is below the network's minimum of {self.min_size} pixels "
                f"per side (output stride x 4); resize to at least {self.min_size}x{self.min_size}, or "
                "use run(), which upsamples small images"
            )
        if spec.static_hw is None:
            self._check_attention_memory((shape[0], 3, shape[hw_axes[0]], shape[hw_axes[1]]))

    def normalized_range(self) -> tuple[float, float]:
        """Smallest and largest value the manifest's preprocessing, ``(x / 255 - mean) / std`` over
        its ``input_range``, can give any channel."""
        pre = self.manifest.preprocessing
        ends = [(float(v) / 255.0 - float(m)) / float(s) for v in pre.input_range for m, s in zip(pre.mean, pre.std)]
        return min(ends), max(ends)

    def _check_value_range(self, low: float, high: float) -> None:
        """Refuse a tensor far outside what the preprocessing produces (4x its largest magnitude).

        Why: the commonest mistake with ``infer()`` is raw pixels (0-255 floats) or a missing
        mean/std step, and the network answers it with a confident, wrong mask. The margin leaves
        room for other resampling, augmentation and noise, and ``check_inputs = False`` for
        deliberate out-of-range probes.
        """
        if not self.check_inputs:
            return
        try:
            lo, hi = self.normalized_range()
        except (KeyError, TypeError, ValueError, ZeroDivisionError):  # an unusual manifest: nothing to compare with
            return
        limit = 4.0 * max(abs(lo), abs(hi))
        if max(-low, high) > limit:
            raise InputError(
                f"input values span {low:.4g}..{high:.4g}, far outside the {lo:.2f}..{hi:.2f} that this "
                "artifact's preprocessing ((x / 255 - mean) / std) produces: raw 0-255 pixels or a missing "
                "normalisation? Use run() for uint8 images, normalise with session.preprocessing's mean and "
                "std, or set session.check_inputs = False to pass such values on purpose"
            )

    def _check_attention_memory(self, shape: tuple[int, ...]) -> None:
        """A dynamic engine runs position attention at the input's own size: refuse sizes whose
        energy block (with the artifact's chunking) would exceed ``max_attention_bytes``, rather than
        letting the allocator fail or the machine swap."""
        n, _, h, w = shape
        stride = self.manifest.model.output_stride
        chunks = max(1, self.manifest.model.attention_chunks or 1)
        positions = feature_size(h, stride) * feature_size(w, stride)
        block = n * -(-positions // min(chunks, positions)) * positions * 4
        if block > self.max_attention_bytes:
            raise InputError(
                f"input {h}x{w} (batch {n}) needs {block / 2**30:.1f} GiB for one position-attention block with this "
                f"artifact's {chunks} chunk(s), above the {self.max_attention_bytes / 2**30:.0f} GiB limit; run it in "
                "tiles (run(image, tile=(512, 512)), danet-run --tile 512x512), downscale it, or re-export with "
                f"--dynamic --max-size {h}x{w} (more chunks). session.max_attention_bytes raises the limit"
            )

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's output tensors (``logits``, ``mask``, ``logits_lowres``; see :mod:`danet_deploy.outputs`)."""
        return self.manifest.output.names

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw logits ``[N, classes, H, W]`` for a preprocessed float32 NCHW tensor (an ``--accept``
        artifact: for a uint8 NxHxWx3 image batch, see :meth:`prepare`)."""
        if LOGITS not in self.outputs:
            raise ConfigError(
                f"this artifact emits {', '.join(self.outputs)} (exported with --emit "
                f"{self.manifest.output.emit}), not full-resolution logits; use run() for masks, "
                "infer_outputs() for every output, or re-export with --emit logits|both"
            )
        if self.outputs == (LOGITS,):
            self._check_open()
            tensor = self.check_tensor(tensor)
            with self._engine_call():
                return self._checked_output(self.backend.infer(tensor))
        return self.infer_outputs(tensor)[LOGITS]

    def infer_outputs(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name for a preprocessed float32 NCHW tensor."""
        self._check_open()
        tensor = self.check_tensor(tensor)
        with self._engine_call():
            outputs = self.backend.infer_outputs(tensor)
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise ManifestError(
                f"the manifest says the graph emits {', '.join(missing)}, but the engine returned "
                f"{', '.join(outputs) or 'nothing'}: the manifest was edited or belongs to another "
                "model; re-export the artifact"
            )
        for name, value in outputs.items():
            self._checked_output(value, name)
        return outputs

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("this Session is closed; load the artifact again (runtime.load) to run it")

    @contextlib.contextmanager
    def _engine_call(self) -> Iterator[None]:
        """Hold the engine open for one call. Why: ``close()`` from another thread would otherwise
        free the engine between the open check and the call (a bare error from inside the engine);
        now a call that started finishes, and ``close()`` waits for it."""
        with self._state:
            self._check_open()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._state:
                self._in_flight -= 1
                if not self._in_flight:
                    self._state.notify_all()

    def _checked_output(self, value: np.ndarray, name: str = LOGITS) -> np.ndarray:
        """Float outputs must be finite, and an in-graph mask must not carry the invalid value the
        graph writes for non-finite logits (a broken FP16 engine must not emit plausible masks).
        The graph fills such an image's whole mask, so one pixel per image tells."""
        if (
            self.check_outputs
            and name == MASK
            and value.ndim >= 2
            and value.size
            and (value.reshape(len(value), -1)[:, 0] == invalid_mask_value(value.dtype)).any()
            and (value.dtype != np.uint8 or mask_dtype(self.num_classes) == "uint8")
        ):
            raise NonFiniteOutputError(
                f"the {self.manifest.target} {self.manifest.precision} engine computed NaN/Inf logits (its in-graph "
                "mask is marked invalid): broken engine or weights (check the export with danet-parity), or input "
                "values far outside the normalised range (check the preprocessing)"
            )
        if name in (LOGITS, LOGITS_LOWRES) and value.ndim == 4 and value.shape[1] != self.num_classes:
            raise ManifestError(
                f"the engine's {name} have {value.shape[1]} classes but the manifest says "
                f"model.num_classes {self.num_classes}: the manifest was edited or belongs to another "
                "model; re-export the artifact"
            )
        if self.check_outputs and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise NonFiniteOutputError(
                f"the {self.manifest.target} {self.manifest.precision} engine returned NaN/Inf logits: broken engine "
                "or weights (check the export with danet-parity), or input values far outside the normalised range "
                "(check the preprocessing). Set session.check_outputs = False to get the raw logits anyway"
            )
        return value

    def _infer_images(
        self, images: Sequence[np.ndarray], names: tuple[str, ...] = (LOGITS,), logits_as_mask: bool = False
    ) -> list[dict[str, np.ndarray]]:
        """Per image, the outputs ``names`` at its own size (resized to and from a static engine shape):
        logits bilinearly (low-resolution logits too), masks by nearest neighbour. With
        ``logits_as_mask`` the logits become the image's mask (under ``MASK``) a band of rows at a
        time, so a large photo never holds its full-size logits."""
        spec = self.input_spec
        size = spec.static_hw
        batch_size = spec.static_batch
        results: list[dict[str, np.ndarray]] = [{} for _ in images]
        # group images that share an input size, so a dynamic engine runs them as one batch
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(size or self._runnable_hw(image_hw(img)), []).append(i)
        for hw, indices in groups.items():
            step = batch_size or len(indices)
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                tensor = self.prepare([images[i] for i in chunk], hw)
                if batch_size and len(chunk) < batch_size:  # pad a static batch with copies
                    pad = np.repeat(tensor[-1:], batch_size - len(chunk), axis=0)
                    tensor = np.concatenate([tensor, pad])
                outs = {LOGITS: self.infer(tensor)} if names == (LOGITS,) else self.infer_outputs(tensor)
                for name in names:
                    for j, i in enumerate(chunk):
                        value, image_size = outs[name][j], image_hw(images[i])
                        if name == MASK:
                            results[i][name] = resize_mask(value, image_size)
                        elif logits_as_mask:
                            results[i][MASK] = mask_at_size(value, image_size)
                        else:
                            results[i][name] = resize_logits(value, image_size)
        return results

    def _runnable_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """A dynamic engine's size for an image: its own, or upsampled to the network minimum."""
        low = self.min_size
        return (max(hw[0], low), max(hw[1], low))

    def run(
        self,
        images: Any,
        return_logits: bool = False,
        tile: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> Any:
        """Masks for uint8 HxWx3 RGB image(s), at each image's original size.

        An ``--accept bgr8`` artifact takes BGR images (:attr:`image_order`); an ``--accept`` artifact
        gets them as they are (its graph normalises), resized on the host in uint8 only when its
        input size is static and the image's differs.

        Args:
            images: one image, a list, or an NxHxWx3 array (any sizes).
            return_logits: also return float32 ``[classes, H, W]`` logits per image.
            tile: sliding-window inference with ``tile=(h, w)`` crops, logits averaged where
                crops overlap.
            stride: the step between sliding-window crops (default: 2/3 of the tile).

        Returns:
            one ``HxW`` uint8 mask for one image, else a list; ``(masks, logits)`` when
            ``return_logits``.
        """
        self._check_open()
        tile, stride = window_pair(tile, "tile"), window_pair(stride, "stride")
        single = isinstance(images, np.ndarray) and images.ndim == 3
        items = as_image_list(images)
        available = self.outputs
        probabilities = LOGITS if LOGITS in available else (LOGITS_LOWRES if LOGITS_LOWRES in available else None)
        if tile is not None and LOGITS not in available:
            raise ConfigError(
                f"sliding windows average full-resolution logits, and this artifact emits "
                f"{', '.join(available)}; re-export with --emit logits or both"
            )
        if return_logits and probabilities is None:
            raise ConfigError(
                "this artifact emits a mask only (--emit mask): there are no logits to return; "
                "re-export with --emit both or mask-lowres"
            )
        if tile is not None:
            from .sliding import sliding_window_logits

            logits = [sliding_window_logits(self, img, tile, stride) for img in items]
            masks = [logits_to_mask(lg) for lg in logits]
        elif MASK in available:  # the engine arg-maxed: no host argmax, no logits leave it unless asked
            if return_logits:
                assert probabilities is not None, "checked above: return_logits needs a logits output"
                outs = self._infer_images(items, (MASK, probabilities))
                logits = [o[probabilities] for o in outs]
            else:
                outs = self._infer_images(items, (MASK,))
                logits = []
            masks = [o[MASK] for o in outs]
        elif return_logits:
            logits = [o[LOGITS] for o in self._infer_images(items)]
            masks = [logits_to_mask(lg) for lg in logits]
        else:
            masks, logits = [o[MASK] for o in self._infer_images(items, logits_as_mask=True)], []
        if single:
            return (masks[0], logits[0]) if return_logits else masks[0]
        return (masks, logits) if return_logits else masks

    def stream(
        self, frames: Any, depth: int = 2, policy: str = "all", jobs: int | None = None, convert: Any = None
    ) -> Any:
        """Pipelined masks for a stream of frames: ``(frame_index, mask, timings)`` per frame.

        Preprocessing of frame i+1 and post-processing of frame i-1 overlap the engine running
        frame i; ``policy="latest"`` drops stale frames of a live camera. See
        :func:`danet_deploy.runtime.stream.stream`; ``jobs`` engine calls run at once (default: as
        many as the engine serves in parallel, e.g. OpenVINO's optimal number of infer requests).
        ``convert`` turns each item of ``frames`` the engine takes (e.g. a camera message) into its
        HxWx3 frame, or ``None`` to skip it; items ``"latest"`` drops are never converted.
        """
        from .stream import stream

        return stream(self, frames, depth=depth, policy=policy, jobs=jobs, convert=convert)

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the engine; later calls raise :class:`SessionClosedError`, calls already inside the
        engine finish first. Closing twice is harmless."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            while self._in_flight:
                self._state.wait()
        self.backend.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Session(target={self.manifest.target!r}, precision={self.manifest.precision!r}, "
            f"backend={self.backend.name!r}, input={_fmt(self.input_spec.shape)})"
        )


def _fmt(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def window_pair(value: Any, name: str) -> tuple[int, int] | None:
    """``tile`` / ``stride`` as ``(h, w)`` positive whole numbers (``None`` passes), else a
    :class:`ConfigError` naming the argument: a bare int or float would fail deep in slicing or be
    truncated silently."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(is_count(v) for v in value):
        raise ConfigError(f"{name} must be two whole numbers (h, w) >= 1, e.g. {name}=(512, 512); got {value!r:.60}")
    return int(value[0]), int(value[1])
