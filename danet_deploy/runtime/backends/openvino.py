"""OpenVINO backend: runs ``model.xml`` (IR) or ``.onnx`` on CPU (default), GPU or NPU.

Dynamic models are reshaped to each new input shape and compiled once per shape (cached, least
recently used first out), because a static compiled model is faster and GPU/NPU plugins need
static shapes; the first call at a new shape pays the compile, so warm up per shape.

Thread safety: an OpenVINO infer request holds its input and output tensors, so one request shared
by threads returns one thread's logits to another. Each compiled shape keeps a pool of requests;
a call takes a free one (or creates one) and gives it back, so concurrent ``infer`` calls on one
backend never share a request. Compiling and the shape cache are guarded by a lock.

Inference precision: left alone, the CPU plugin picks its own (bf16 on CPUs with AMX, f32 on
AVX2-only CPUs), so the same artifact would compute differently per machine. This backend asks for
``f32`` on CPU and GPU unless told otherwise: an FP32 artifact really runs FP32, an FP16 artifact
means FP16 *weights*, and the float parts of an INT8 artifact (the attention kept in float by the
precision policy) stay f32. Measured on danet_demo with test-initialised weights on an AMX CPU
(benchmarks/precision_policy.py, 512x512): FP16 weights with the plugin's bf16 gave 98.9% argmax
agreement at 2.7x the FP32 speed, with f32 99.9% at 1.2x; an ``f16`` hint gave 71% at 256x256,
where the channel-attention energy reached 5.7e5, beyond fp16's 65504. With the trained weights,
bf16 gave 99.93% at 3.2x and f32 100.00% at 1.5x. Pass ``inference_precision="bf16"`` (or
``None``: the plugin's default) to trade that accuracy for speed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...engine_reads import ir_weights
from ...errors import ArtifactError, ConfigError, summarize_exception
from ...inputs import bare_input_entry
from ...manifest import Manifest, manifest_from_metadata
from ...targets.options import option
from .base import Backend, EngineOptions, InputSpec, as_output, bare_output_entry, require

_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
_PRECISIONS = ("f32", "bf16", "f16")


def _at_least_one(value: int) -> None:
    if value < 1:
        raise ConfigError(f"max_shapes must be a whole number >= 1, got {value!r:.40}")


def _device_name(value: str) -> None:
    if not value:  # "" would pass the availability check (every name starts with it) and fail to compile
        raise ConfigError("device must name an OpenVINO device such as CPU, GPU, NPU or AUTO, got ''")


@dataclass(frozen=True)
class OpenVINOEngineOptions(EngineOptions):
    """``runtime.load(..., backend="openvino", **options)``; ``threads`` sets INFERENCE_NUM_THREADS."""

    device: str = option(
        "CPU", "OpenVINO device: CPU, GPU, NPU, AUTO, ... (GPU.1 for a second GPU)", check=_device_name
    )
    hint: str = option("latency", "PERFORMANCE_HINT", choices=tuple(_HINTS))
    inference_precision: str | None = option(
        "auto",
        "INFERENCE_PRECISION_HINT on CPU/GPU (see the module doc): auto (the artifact's recorded one, else "
        "f32), f32, bf16, f16, or none (the plugin's own)",
        choices=("auto", *_PRECISIONS),
    )
    max_shapes: int = option(8, "compiled input shapes kept (least recently used first out)", check=_at_least_one)
    config: dict[str, Any] | None = option(  # noqa: RUF009 - option() returns a dataclasses.field
        None, "further OpenVINO properties (a dict, or a JSON object)"
    )


class OpenVINOBackend(Backend):
    """Runs an IR (``model.xml``) or ``.onnx`` with OpenVINO; options: :class:`OpenVINOEngineOptions`."""

    name = "openvino"
    async_queue = True
    options_class: ClassVar[type[OpenVINOEngineOptions]] = OpenVINOEngineOptions

    def __init__(self, model_file: Path | None, manifest: Manifest | None, **values: Any) -> None:
        opts = self.options_class.parse(values, self.name)
        ov = require("openvino", "openvino", "openvino")
        if model_file is None:
            raise ConfigError("the openvino backend needs a model.xml/.onnx file or an artifact folder")
        model_file = Path(model_file)
        device, inference_precision = opts.device, opts.inference_precision
        self.core = ov.Core()
        # Read the weights into memory instead of mapping model.bin: with a mapping, a .bin replaced or
        # truncated after load (an update copied onto a robot) changed the masks silently or killed the
        # process with SIGBUS at the next inference.
        self.core.set_property({"ENABLE_MMAP": False})
        self.device = device.upper()
        base_device = self.device.split(":")[0].split(".")[0]
        if base_device not in ("AUTO", "MULTI", "HETERO", "BATCH") and not any(
            d.startswith(base_device) for d in self.core.available_devices
        ):
            raise ConfigError(
                f"OpenVINO device {device!r} is not available here (available: "
                f"{', '.join(self.core.available_devices)}); pass device='CPU' or install its driver"
            )
        self.model = self._read(model_file)
        self.manifest = manifest if manifest is not None else self._manifest_from_rt_info(model_file)
        recorded = _recorded_runtime(self.manifest)
        if inference_precision == "auto":  # the artifact's own (attention-bf16 records bf16), else f32
            inference_precision = recorded.get("inference_precision", "f32")
        self.properties: dict[str, Any] = {"PERFORMANCE_HINT": _HINTS[opts.hint]}
        if opts.threads:
            self.properties["INFERENCE_NUM_THREADS"] = opts.threads
        if inference_precision is not None and base_device in ("CPU", "GPU"):
            self.properties["INFERENCE_PRECISION_HINT"] = inference_precision
        self.properties.update(opts.config or {})
        self.options, self.threads, self.hint = opts, opts.threads, opts.hint
        self.inference_precision = inference_precision
        port = self.model.inputs[0]
        self.input_name = port.get_any_name()
        self.output_names = [o.get_any_name() for o in self.model.outputs]
        partial = port.get_partial_shape()
        shape = [d.get_length() if d.is_static else None for d in partial]
        self.input_spec = InputSpec.from_manifest(self.manifest.input, name=self.input_name, shape=shape)
        self.dynamic = partial.is_dynamic
        self.max_shapes = opts.max_shapes
        self._lock = threading.Lock()
        self._compiled: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        if not self.dynamic:
            self._get(
                tuple(d.get_length() for d in partial)
            )  # static: compile now, so load errors surface at load time

    # -- loading -------------------------------------------------------------------------------
    def _read(self, model_file: Path) -> Any:
        if not model_file.is_file():
            raise ArtifactError(f"{model_file} does not exist; re-export the artifact")
        weights = ir_weights(model_file)  # by content: an IR is XML whatever its name
        if weights is not None and not weights.is_file():
            raise ArtifactError(
                f"{weights} is missing (an OpenVINO IR needs its .xml and .bin side by side); copy "
                "both files or re-export"
            )
        try:  # the weights named explicitly: exactly the file the manifest rules checked
            return self.core.read_model(str(model_file), *([str(weights)] if weights is not None else []))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long C++ traces
            raise ArtifactError(
                f"OpenVINO could not read {model_file}: {summarize_exception(exc, lines=4)} "
                "(corrupt or truncated "
                ".xml/.bin? re-export the artifact)"
            ) from exc

    def _manifest_from_rt_info(self, model_file: Path) -> Manifest:
        """A manifest for a bare IR from the ``danet`` rt_info danet-export writes (or ONNX metadata)."""
        try:
            meta = {
                f"danet.{key}": self.model.get_rt_info(["danet", key]).astype(str)
                for key in ("model", "preprocessing", "precision")
            }
            if self.model.has_rt_info(["danet", "accept"]):
                meta["danet.accept"] = self.model.get_rt_info(["danet", "accept"]).astype(str)
        except Exception:
            meta = {}
        if not meta and model_file.suffix.lower() == ".onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(model_file), load_external_data=False).metadata_props}
        inp, outs = self.model.inputs[0], self.model.outputs

        def dims(port: Any) -> list[int | str]:
            return [d.get_length() if d.is_static else "dynamic" for d in port.get_partial_shape()]

        output = bare_output_entry(
            [o.get_any_name() for o in outs],
            [dims(o) for o in outs],
            [_OV_TYPES.get(o.get_element_type().get_type_name(), "float32") for o in outs],
        )
        return manifest_from_metadata(
            meta,
            model_file,
            target="openvino",
            backend="openvino",
            input=bare_input_entry(
                inp.get_any_name(), dims(inp), _OV_TYPES.get(inp.get_element_type().get_type_name(), "float32"), meta
            ),
            output=output,
        )

    def _get(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model and its request pool for ``shape``: reshaped and compiled on first use."""
        with self._lock:
            return self._get_locked(shape)

    def _get_locked(self, shape: tuple[int, ...]) -> _Compiled:
        if self.model is None:
            raise ConfigError("this OpenVINO backend is closed; load the artifact again")
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        model = self.model
        if self.dynamic:
            model = self.model.clone()
            model.reshape({self.input_name: list(shape)})
        try:
            compiled = self.core.compile_model(model, self.device, self.properties)
        except Exception as exc:
            raise ArtifactError(
                f"OpenVINO could not compile the model for {self.device} at shape {list(shape)}: "
                f"{summarize_exception(exc)}"
            ) from exc
        entry = _Compiled(compiled)
        self._compiled[shape] = entry
        while len(self._compiled) > self.max_shapes:
            self._compiled.popitem(last=False)
        return entry

    # -- inference -----------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, (0,))[0]

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._infer(batch, range(len(self.output_names)))))

    def _infer(self, batch: np.ndarray, indices: Any) -> list[np.ndarray]:
        """Run ``batch`` on a request of the pool (one per concurrent caller) and copy outputs ``indices``."""
        entry = self._get(tuple(batch.shape))
        request = entry.acquire()
        try:
            request.infer({0: batch})
            return [_output(request, i) for i in indices]
        finally:
            entry.release(request)

    def infer_many(self, batches: Sequence[np.ndarray], jobs: int | None = None) -> list[np.ndarray]:
        """Logits for many batches with overlapping infer requests (throughput mode).

        A pool of ``jobs`` requests (default: the device's optimal number) runs asynchronously;
        results are collected with ``wait()``. Deliberately no ``AsyncInferQueue`` Python callback:
        its callbacks take the GIL on OpenVINO's threads, and destroying the compiled model later
        (which joins those threads while holding the GIL) deadlocked. Order is preserved; batches
        may differ in shape (each shape uses its own compiled model).
        """
        from collections import deque

        results: list[np.ndarray | None] = [None] * len(batches)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, batch in enumerate(batches):
            by_shape.setdefault(tuple(batch.shape), []).append(i)
        for shape, indices in by_shape.items():
            compiled = self._get(shape).compiled
            count = jobs or _optimal_requests(compiled)
            free = [compiled.create_infer_request() for _ in range(max(1, min(count, len(indices))))]
            pending: deque[tuple[int, Any]] = deque()

            def collect() -> None:
                index, request = pending.popleft()  # noqa: B023 called within this shape's iteration only
                request.wait()
                results[index] = _output(request, 0)
                free.append(request)  # noqa: B023 called within this shape's iteration only

            for i in indices:
                if not free:
                    collect()
                request = free.pop()
                request.start_async({0: np.ascontiguousarray(batches[i])})  # float32 NCHW or --accept uint8
                pending.append((i, request))
            while pending:
                collect()
        return results  # type: ignore[return-value]

    def parallel_requests(self) -> int:
        """The compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` (1 for a dynamic model not yet run)."""
        with self._lock:
            entry = next(reversed(self._compiled.values()), None) if self._compiled else None
        return _optimal_requests(entry.compiled) if entry is not None else 1

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {
            "backend": self.name,
            "device": self.device,
            "threads": self.threads,
            "hint": self.hint,
            "openvino": ov.get_version(),
            "compiled_shapes": [list(s) for s in self._compiled],
        }
        if self._compiled:
            compiled = next(reversed(self._compiled.values())).compiled
            try:
                info["inference_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            except Exception:
                info["inference_precision"] = self.inference_precision
        return info

    def close(self) -> None:
        with self._lock:
            self._compiled.clear()
            self.model = None


def _recorded_runtime(manifest: Manifest | None) -> dict[str, Any]:
    """``extra.openvino_runtime`` of the manifest (``attention-bf16`` records ``inference_precision``),
    keeping only a known precision: a manifest cannot set arbitrary plugin properties."""
    entry = ((manifest.extra or {}) if manifest is not None else {}).get("openvino_runtime") or {}
    if not isinstance(entry, dict):
        return {}
    out: dict[str, Any] = {}
    if entry.get("inference_precision") in _PRECISIONS:
        out["inference_precision"] = entry["inference_precision"]
    return out


class _Compiled:
    """One compiled shape and its pool of idle infer requests (one request per concurrent call)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._free = [compiled.create_infer_request()]
        self._lock = threading.Lock()

    def acquire(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
            return self.compiled.create_infer_request()

    def release(self, request: Any) -> None:
        with self._lock:
            self._free.append(request)


_OV_TYPES = {"f32": "float32", "u8": "uint8", "i32": "int32", "i64": "int64", "f16": "float16"}


def _output(request: Any, index: int) -> np.ndarray:
    """A copy of output ``index`` (the request's buffer is reused by the next call)."""
    return as_output(np.array(request.get_output_tensor(index).data, copy=True))


def _optimal_requests(compiled: Any) -> int:
    """The device's optimal number of parallel infer requests (2 if it does not say)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:
        return 2
