"""TensorRT backend: a serialised engine on an NVIDIA GPU or Jetson, through cuda-python.

Before TensorRT sees the file, the engine's manifest is checked against the running TensorRT
version and GPU (:func:`danet_deploy.tensorrt.compat.check_engine_compatibility`): an engine from
another version or architecture is a clear :class:`EngineCompatibilityError`, not a crash.
Tensors are bound by name (TensorRT 10+ I/O tensor API), shapes are set within the engine's
optimisation profile, copies go through pinned host buffers on one stream, and static shapes can
be replayed as a CUDA graph (``cuda_graph=True``; if the engine cannot be captured, the session
runs without graphs, as trtexec does, and ``describe()`` says why). :meth:`TensorRTBackend.infer_timed`
returns CUDA-event timings for the benchmark. No torch.

Thread safety: an execution context, its stream, buffers, events and CUDA graph form one lane
(:class:`_Lane`) that serves one call at a time. The backend keeps a pool of up to ``contexts``
lanes (default 1): concurrent calls take idle lanes, create new ones up to the limit, and
otherwise wait, so calls never share a context and ``contexts=N`` runs N batches side by side
(each context holds its own activation memory). ``Session.stream`` runs that many engine calls.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import ArtifactError, ConfigError, EngineCompatibilityError, InputError, SessionClosedError
from ...manifest import Manifest
from ...targets.options import option
from ...tensorrt.compat import check_engine_compatibility
from ...tensorrt.cuda import (
    CudaError,
    CudaGraph,
    DeviceBuffer,
    GraphCaptureError,
    PinnedBuffer,
    check,
    device_properties,
    load_cudart,
)
from ...tensorrt.logger import LEVELS, level_name, shared_logger
from .base import Backend, EngineOptions, InputSpec, as_output, require

# TensorRT DataType names -> numpy (bf16/fp8/int4 have no numpy type; the I/O of our engines is fp32)
_NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _NUMPY_DTYPES:
        raise ArtifactError(
            f"engine I/O tensor type {name} has no numpy equivalent; re-prepare the bundle with "
            "float32 I/O (the default, keep_io_types)"
        )
    return np.dtype(_NUMPY_DTYPES[name])


def _positive_contexts(value: int) -> None:
    if value < 1:
        raise ConfigError(f"contexts must be a positive integer (execution contexts run side by side), got {value!r}")


def _device_index(value: int) -> None:
    if value < 0:
        raise ConfigError(f"device must be a CUDA device index >= 0, got {value!r}")


@dataclass(frozen=True)
class TensorRTEngineOptions(EngineOptions):
    """``runtime.load(..., backend="tensorrt", **options)``. ``threads`` sizes CPU thread pools on the
    other engines; TensorRT computes on the GPU, so it is accepted (one option set fits every
    engine, as the benchmark passes it) and unused."""

    device: int = option(0, "CUDA device index", check=_device_index)
    cuda_graph: bool = option(False, "replay static shapes as a CUDA graph (off again if a capture fails)")
    check_compatibility: bool = option(True, "check the engine's TensorRT version and GPU first (off only to diagnose)")
    log_level: str | None = option(
        None,
        f"TensorRT log level ({', '.join(LEVELS)}): one logger per process, so "
        "it sets the level of every TensorRT session and build in it; left out, the "
        "level stays",
        check=level_name,
    )
    contexts: int = option(
        1,
        "execution contexts that may run concurrent calls (each holds its own activation memory)",
        check=_positive_contexts,
    )


class _Lane:
    """One execution context with its own stream, device and pinned buffers, CUDA events and CUDA
    graph: one call at a time runs on a lane; lanes run side by side on the GPU.

    Why a lane owns all of these: an execution context holds the bound shape and tensor addresses
    and TensorRT's activation memory, the pinned buffers hold the call's input and output, and a
    captured graph replays fixed pointers, so none of them may be shared by two concurrent calls.
    """

    def __init__(self, backend: TensorRTBackend) -> None:
        self.backend, cudart = backend, backend.cudart
        self.stream: Any = None  # a cudaStream_t once created
        self.buffers: list[Any] = []
        self.events: list[Any] = []
        self.graph = CudaGraph(cudart)  # holds nothing until a capture
        self.context = backend.engine.create_execution_context()
        if self.context is None:
            raise CudaError(
                "TensorRT could not create an execution context (out of GPU memory?); close other GPU "
                "work, use fewer contexts, or rebuild with a smaller --max-size/--max-batch"
            )
        try:
            self.stream = check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
            self.d_in, self.d_out = DeviceBuffer(cudart), DeviceBuffer(cudart)
            self.h_in, self.h_out = PinnedBuffer(cudart), PinnedBuffer(cudart)
            self.buffers = [self.d_in, self.d_out, self.h_in, self.h_out]
            for _ in range(4):
                self.events.append(check(cudart, cudart.cudaEventCreate(), "cudaEventCreate"))
        except BaseException:
            self.close()
            raise
        self.shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] = ()
        self.addresses: tuple[int, int, int, int] = (0, 0, 0, 0)

    def prepare(self, batch: np.ndarray) -> None:
        """Set the input shape (once per new shape) and size and bind the buffers."""
        backend = self.backend
        shape = tuple(int(d) for d in batch.shape)
        if shape != self.shape:
            if not self.context.set_input_shape(backend.input_name, shape):
                spec = backend.input_spec
                raise InputError(
                    f"input shape {shape} is outside the engine's optimisation profile (min "
                    f"{spec.min_shape}, max {spec.max_shape}); rebuild with a wider --min-size/--max-size"
                )
            out = tuple(int(d) for d in self.context.get_tensor_shape(backend.output_name))
            if any(d < 0 for d in out):
                raise ArtifactError(f"TensorRT could not infer the output shape for input {shape} (got {out})")
            self.shape, self.out_shape = shape, out
            self.graph.reset()
        out_bytes = int(np.prod(self.out_shape)) * backend.output_dtype.itemsize
        self.d_in.ensure(batch.nbytes)
        self.h_in.ensure(batch.nbytes)
        self.d_out.ensure(out_bytes)
        self.h_out.ensure(out_bytes)
        addresses = (self.d_in.ptr, self.d_out.ptr, self.h_in.ptr, self.h_out.ptr)
        if addresses != self.addresses:
            self.context.set_tensor_address(backend.input_name, self.d_in.ptr)
            self.context.set_tensor_address(backend.output_name, self.d_out.ptr)
            self.addresses = addresses
            self.graph.reset()  # a captured graph holds the old pointers
        self.h_in.view(shape, backend.input_dtype)[...] = batch

    def enqueue(self, events: bool = False) -> None:
        """Copy in, run, copy out: all asynchronous on this lane's stream."""
        cudart, stream = self.backend.cudart, self.stream
        assert self.shape is not None, "prepare() sets the input shape before enqueue()"
        nbytes_in = int(np.prod(self.shape)) * self.backend.input_dtype.itemsize
        nbytes_out = int(np.prod(self.out_shape)) * self.backend.output_dtype.itemsize
        if events:
            check(cudart, cudart.cudaEventRecord(self.events[0], stream), "cudaEventRecord")
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(
            cudart,
            cudart.cudaMemcpyAsync(self.d_in.ptr, self.h_in.ptr, nbytes_in, to_device, stream),
            "cudaMemcpyAsync(H2D)",
        )
        if events:
            check(cudart, cudart.cudaEventRecord(self.events[1], stream), "cudaEventRecord")
        if not self.context.execute_async_v3(int(stream)):
            raise CudaError("TensorRT execute_async_v3 failed (see the TensorRT log above); check GPU memory")
        if events:
            check(cudart, cudart.cudaEventRecord(self.events[2], stream), "cudaEventRecord")
        check(
            cudart,
            cudart.cudaMemcpyAsync(self.h_out.ptr, self.d_out.ptr, nbytes_out, to_host, stream),
            "cudaMemcpyAsync(D2H)",
        )
        if events:
            check(cudart, cudart.cudaEventRecord(self.events[3], stream), "cudaEventRecord")

    def run(self, events: bool = False) -> np.ndarray:
        backend, cudart = self.backend, self.backend.cudart
        if backend.cuda_graph and not events and self.graph.key != self.shape:
            # TensorRT must enqueue once after a shape change before its work can be captured
            self.enqueue()
            check(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
            try:
                self.graph.capture(self.stream, self.shape, self.enqueue)
            except GraphCaptureError as exc:
                backend._disable_graphs(str(exc))
        if backend.cuda_graph and not events:
            self.graph.launch(self.stream)
        else:
            self.enqueue(events)
        check(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return as_output(self.h_out.view(self.out_shape, backend.output_dtype).copy())  # logits float32, masks int

    def elapsed_ms(self) -> dict[str, float]:
        """CUDA-event times of the last ``run(events=True)``."""
        cudart, ev = self.backend.cudart, self.events

        def ms(a: int, b: int) -> float:
            return float(check(cudart, cudart.cudaEventElapsedTime(ev[a], ev[b]), "cudaEventElapsedTime"))

        return {"h2d": ms(0, 1), "compute": ms(1, 2), "d2h": ms(2, 3), "total": ms(0, 3)}

    def close(self) -> None:
        """Free graph, buffers, events and stream, then drop the context (before the engine goes)."""
        cudart = self.backend.cudart
        self.graph.reset()
        for buffer in self.buffers:
            buffer.free()
        self.buffers = []
        for event in self.events:
            check(cudart, cudart.cudaEventDestroy(event), "cudaEventDestroy")
        self.events = []
        if self.stream is not None:
            check(cudart, cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None
        self.context = None


class TensorRTBackend(Backend):
    """Runs a serialised engine on an NVIDIA GPU; options: :class:`TensorRTEngineOptions`."""

    name = "tensorrt"
    device_timers = True
    options_class: ClassVar[type[TensorRTEngineOptions]] = TensorRTEngineOptions

    def __init__(self, model_file: Path | None, manifest: Manifest | None, **values: Any) -> None:
        opts = self.options_class.parse(values, self.name)
        self.options = opts
        if model_file is None:
            raise ConfigError("the tensorrt backend needs an engine artifact folder (model.engine + manifest.json)")
        if manifest is None:
            raise ArtifactError(
                f"{model_file} is a bare engine: it carries no model, class or preprocessing facts; "
                "load the folder danet-export wrote (model.engine + manifest.json)"
            )
        info = manifest.extra.get("tensorrt", {})
        if info.get("stage") not in (None, "engine"):
            check_engine_compatibility(info, {})  # raises the "build it first" message for a bundle
        trt = require("tensorrt", "tensorrt", "tensorrt")
        cudart = load_cudart()
        self.trt, self.cudart, self.device = trt, cudart, opts.device
        self.max_contexts = opts.contexts
        self._lanes: list[_Lane] = []
        self._idle: list[_Lane] = []
        self._pool = threading.Condition()
        self._closed = False
        self.engine: Any = None  # a tensorrt.ICudaEngine once deserialized
        check(cudart, cudart.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")
        self.gpu = device_properties(cudart, self.device)
        self.logger = shared_logger(trt, opts.log_level)
        self.runtime = trt.Runtime(self.logger)
        running = {
            "tensorrt": str(trt.__version__),
            **self.gpu,
            "dla_cores": int(getattr(self.runtime, "num_DLA_cores", 0)),
        }
        self.notes = check_engine_compatibility(info, running) if opts.check_compatibility else []
        self.manifest = manifest
        try:
            blob = Path(model_file).read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read engine {model_file}: {exc}") from exc
        if info.get("dla_core") is not None and hasattr(self.runtime, "DLA_core"):
            self.runtime.DLA_core = int(info["dla_core"])
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EngineCompatibilityError(
                f"TensorRT {trt.__version__} could not deserialise {model_file} (built by another TensorRT version or "
                "for another GPU, or the file is corrupt); rebuild it here: danet-export --target tensorrt --from "
                "BUNDLE_DIR"
            )
        self._bind_io()
        self.cuda_graph = opts.cuda_graph
        self.cuda_graph_requested = opts.cuda_graph
        self.cuda_graph_disabled: str | None = None  # why graphs were turned off after a failed capture
        self._new_lane(idle=True)  # the first context now: an out-of-memory engine fails at load, not at run

    # -- setup ---------------------------------------------------------------------------------
    def _bind_io(self) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(
                f"expected one input and one output tensor, the engine has inputs {inputs} and "
                f"outputs {outputs}; build it from a danet-export bundle"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = numpy_dtype(engine.get_tensor_dtype(self.input_name))
        self.output_dtype = numpy_dtype(engine.get_tensor_dtype(self.output_name))
        if self.input_dtype not in (np.float32, np.uint8):  # uint8: an --accept rgb8|bgr8 image
            raise ArtifactError(
                f"the engine input is {self.input_dtype}, expected float32 (or uint8 with --accept); "
                "re-prepare the bundle"
            )
        shape = tuple(int(d) for d in engine.get_tensor_shape(self.input_name))
        dims = tuple(d if d > 0 else None for d in shape)
        bounds: dict[str, Any] = {}
        if any(d is None for d in dims):
            lo, opt, hi = engine.get_tensor_profile_shape(self.input_name, 0)
            bounds = {
                "min_shape": tuple(int(d) for d in lo),
                "opt_shape": tuple(int(d) for d in opt),
                "max_shape": tuple(int(d) for d in hi),
            }
        self.input_spec = InputSpec(
            name=self.input_name,
            shape=dims,
            dtype=str(self.input_dtype),
            layout="NHWC" if self.input_dtype == np.uint8 else "NCHW",
            **bounds,
        )

    # -- the pool of lanes -------------------------------------------------------------------
    def _new_lane(self, idle: bool = False) -> _Lane:
        lane = _Lane(self)
        self._lanes.append(lane)
        if idle:
            self._idle.append(lane)
        return lane

    def _acquire(self) -> _Lane:
        """An idle lane, a new one while fewer than ``contexts`` exist, else wait for one.

        The CUDA device is current per host thread, so every call makes the session's device
        current in its own thread first (a microsecond), as a thread pool's workers need."""
        cudart = self.cudart
        check(cudart, cudart.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")
        with self._pool:
            while not self._closed and not self._idle and len(self._lanes) >= self.max_contexts:
                self._pool.wait()
            if self._closed:
                raise SessionClosedError("this TensorRT session is closed; load the artifact again (runtime.load)")
            if self._idle:
                return self._idle.pop()
            return self._new_lane()

    def _release(self, lane: _Lane) -> None:
        with self._pool:
            self._idle.append(lane)
            self._pool.notify_all()  # a waiting call and a waiting close() may both need to know

    def parallel_requests(self) -> int:
        return self.max_contexts

    # -- inference -----------------------------------------------------------------------------
    def _disable_graphs(self, reason: str) -> None:
        """After a failed capture (the stream and error state are already clean): run without graphs."""
        self.cuda_graph = False
        self.cuda_graph_disabled = reason
        message = (
            f"CUDA graphs are off for this session: {reason}. The engine may contain operations that cannot "
            "be captured; inference continues without graphs (as trtexec --useCudaGraph does)"
        )
        self.notes.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        lane = self._acquire()
        try:
            lane.prepare(batch)
            return lane.run()
        finally:
            self._release(lane)

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Logits plus CUDA-event times in ms: ``h2d``, ``compute`` (the engine alone), ``d2h``, ``total``."""
        lane = self._acquire()
        try:
            lane.prepare(batch)
            logits = lane.run(events=True)
            return logits, lane.elapsed_ms()
        finally:
            self._release(lane)

    def describe(self) -> dict[str, Any]:
        info = self.manifest.extra.get("tensorrt", {})
        return {
            "backend": self.name,
            "tensorrt": str(self.trt.__version__),
            "gpu": self.gpu.get("gpu"),
            "compute_capability": self.gpu.get("compute_capability"),
            "device": self.device,
            "cuda_graph": self.cuda_graph,
            "cuda_graph_requested": self.cuda_graph_requested,
            "contexts": self.max_contexts,
            "cuda_graph_disabled": self.cuda_graph_disabled,
            "dla_core": info.get("dla_core"),
            "dla_layers": info.get("dla_layers"),
            "profile": info.get("profiles", [{}])[0] if info.get("profiles") else None,
            "notes": self.notes,
        }

    def close(self) -> None:
        """Wait for running calls, free every lane (buffers, graph, events, stream, context), then
        drop the engine."""
        pool = getattr(self, "_pool", None)
        if getattr(self, "cudart", None) is None or pool is None:
            return
        with pool:
            self._closed = True  # calls waiting for a lane, and later ones, get SessionClosedError
            pool.notify_all()
            while len(self._idle) < len(self._lanes):  # calls already running finish on their lane
                pool.wait()
            lanes, self._lanes, self._idle = self._lanes, [], []
            for lane in lanes:
                lane.close()
            self.engine = None
