"""Stand-ins for cuda-python's runtime module and TensorRT's Python objects, at the boundary only.

``FakeCudart`` answers the cudart calls danet-deploy makes with cuda-python's conventions
(``(error, *values)`` tuples, an error enum, handles), backs "device" memory with host memory so
copies really move bytes, and models stream capture: work enqueued while capturing is recorded
into the graph instead of run, an operation that is not allowed invalidates the capture, and the
error stays sticky until ``cudaGetLastError``. ``install_fake_tensorrt`` puts a minimal
``tensorrt`` module (logger, runtime, engine, execution context) into ``sys.modules``.
Nothing here is a GPU: it checks the host-side logic around CUDA and TensorRT, nothing more.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np


class Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class FakeCudart:
    """cuda-python's ``cuda.bindings.runtime`` as far as danet-deploy uses it."""

    cudaError_t = Err
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(
        self,
        driver: int = 12020,
        runtime: int = 12090,
        devices: int = 1,
        capability: tuple[int, int] = (8, 7),
        name: bytes = b"Orin",
    ) -> None:
        self.driver, self.runtime, self.devices = driver, runtime, devices
        self.driver_query_error: Err | None = None  # make cudaDriverGetVersion itself fail
        self.capability, self.name = capability, name
        self.calls: list[tuple[Any, ...]] = []
        self.memory: dict[int, Any] = {}
        self.current_device = 0
        self.capturing = False
        self.invalidated = False
        self.recorded: list[Callable[[], None]] = []
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.sticky = Err.cudaSuccess
        self._handles = 1000

    # -- bookkeeping -------------------------------------------------------------------------
    def _handle(self) -> int:
        self._handles += 1
        return self._handles

    def _log(self, *call: Any) -> None:
        self.calls.append(call)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def _forbidden_in_capture(self, what: str) -> Err | None:
        if self.capturing:  # a synchronous call while capturing invalidates the capture
            self.invalidated = True
            self.sticky = Err.cudaErrorStreamCaptureInvalidated
            self._log("forbidden", what)
            return Err.cudaErrorStreamCaptureInvalidated
        return None

    def enqueue(self, op: Callable[[], None]) -> None:
        """Run ``op`` now, or record it into the graph being captured."""
        if self.capturing:
            self.recorded.append(op)
        else:
            op()

    # -- errors and versions -----------------------------------------------------------------
    def cudaGetErrorName(self, err: Any) -> tuple[Err, bytes]:
        return Err.cudaSuccess, Err(int(err)).name.encode()

    def cudaGetErrorString(self, err: Any) -> tuple[Err, bytes]:
        return Err.cudaSuccess, f"error {int(err)}".encode()

    def cudaGetLastError(self) -> tuple[Err]:
        err, self.sticky = self.sticky, Err.cudaSuccess
        self._log("cudaGetLastError", err)
        return (err,)

    def cudaDriverGetVersion(self) -> tuple[Err, int]:
        if self.driver_query_error is not None:
            return self.driver_query_error, 0
        return Err.cudaSuccess, self.driver

    def cudaRuntimeGetVersion(self) -> tuple[Err, int]:
        return Err.cudaSuccess, self.runtime

    def _driver_ok(self) -> bool:
        return self.driver // 1000 >= self.runtime // 1000

    # -- devices -----------------------------------------------------------------------------
    def cudaGetDeviceCount(self) -> tuple[Err, int]:
        self._log("cudaGetDeviceCount")
        if not self._driver_ok():
            return Err.cudaErrorInsufficientDriver, 0
        return Err.cudaSuccess, self.devices

    def cudaGetDeviceProperties(self, device: int) -> tuple[Err, Any]:
        self._log("cudaGetDeviceProperties", device)
        return Err.cudaSuccess, SimpleNamespace(
            name=self.name + b"\x00" * 4, major=self.capability[0], minor=self.capability[1], totalGlobalMem=8 << 30
        )

    def cudaSetDevice(self, device: int) -> tuple[Err]:
        self._log("cudaSetDevice", device)
        if not self._driver_ok():
            return (Err.cudaErrorInsufficientDriver,)
        if device >= self.devices:
            return (Err.cudaErrorInvalidDevice,)
        self.current_device = device
        return (Err.cudaSuccess,)

    # -- memory (host memory standing in for device memory) ----------------------------------
    def _alloc(self, nbytes: int) -> tuple[Err, int]:
        buf = ctypes.create_string_buffer(int(nbytes))
        self.memory[ctypes.addressof(buf)] = buf
        return Err.cudaSuccess, ctypes.addressof(buf)

    def cudaMalloc(self, nbytes: int) -> tuple[Err, int]:
        self._log("cudaMalloc", nbytes)
        return self._alloc(nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple[Err, int]:
        self._log("cudaMallocHost", nbytes)
        return self._alloc(nbytes)

    def cudaFree(self, ptr: int) -> tuple[Err]:
        self._log("cudaFree", ptr)
        self.memory.pop(int(ptr))
        return (Err.cudaSuccess,)

    cudaFreeHost = cudaFree

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind: int) -> tuple[Err]:
        self._log("cudaMemcpy", dst, src, nbytes, kind)
        bad = self._forbidden_in_capture("cudaMemcpy")
        if bad:
            return (bad,)
        ctypes.memmove(dst, src, nbytes)
        return (Err.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> tuple[Err]:
        self._log("cudaMemcpyAsync", nbytes, kind)
        self.enqueue(lambda: ctypes.memmove(dst, src, nbytes))
        return (self.sticky,) if self.capturing and self.invalidated else (Err.cudaSuccess,)

    # -- streams, events, graphs -------------------------------------------------------------
    def cudaStreamCreate(self) -> tuple[Err, int]:
        return Err.cudaSuccess, self._handle()

    def cudaStreamDestroy(self, stream: Any) -> tuple[Err]:
        return (Err.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[Err]:
        self._log("cudaStreamSynchronize")
        bad = self._forbidden_in_capture("cudaStreamSynchronize")
        return (bad or self.sticky,)

    def cudaEventCreate(self) -> tuple[Err, int]:
        return Err.cudaSuccess, self._handle()

    def cudaEventDestroy(self, event: Any) -> tuple[Err]:
        return (Err.cudaSuccess,)

    def cudaEventRecord(self, event: Any, stream: Any) -> tuple[Err]:
        return (Err.cudaSuccess,)

    def cudaEventElapsedTime(self, a: Any, b: Any) -> tuple[Err, float]:
        return Err.cudaSuccess, 1.0

    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple[Err]:
        self._log("cudaStreamBeginCapture")
        if self.capturing:
            return (Err.cudaErrorStreamCaptureUnsupported,)
        self.capturing, self.invalidated, self.recorded = True, False, []
        return (Err.cudaSuccess,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[Err, Any]:
        self._log("cudaStreamEndCapture")
        if not self.capturing:
            return Err.cudaErrorInvalidValue, None
        self.capturing = False
        if self.invalidated:
            return Err.cudaErrorStreamCaptureInvalidated, None  # CUDA returns a NULL graph
        handle = self._handle()
        self.graphs[handle] = list(self.recorded)
        return Err.cudaSuccess, handle

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[Err, Any]:
        self._log("cudaGraphInstantiate")
        return Err.cudaSuccess, ("exec", graph)

    def cudaGraphLaunch(self, exec_: Any, stream: Any) -> tuple[Err]:
        self._log("cudaGraphLaunch")
        for op in self.graphs[exec_[1]]:
            op()
        return (Err.cudaSuccess,)

    def cudaGraphDestroy(self, graph: Any) -> tuple[Err]:
        self._log("cudaGraphDestroy")
        self.graphs.pop(graph, None)
        return (Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, exec_: Any) -> tuple[Err]:
        return (Err.cudaSuccess,)


def install_fake_cuda_python(monkeypatch: Any, cudart: FakeCudart) -> None:
    """Make ``from cuda.bindings import runtime`` return ``cudart``."""
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


def read_floats(address: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    raw = (ctypes.c_byte * (count * 4)).from_address(address)
    return np.frombuffer(raw, dtype=np.float32, count=count).reshape(shape).copy()


class FakeContext:
    """An execution context whose "engine" maps x (B,3,H,W) to (B,2,H,W) = [sum_c x, -sum_c x].

    ``fail_in_capture``: ``execute_async_v3`` returns False while the stream is capturing and
    invalidates the capture, as an engine with operations that cannot be captured does.
    """

    def __init__(self, cudart: FakeCudart, fail_in_capture: bool = False) -> None:
        self.cudart, self.fail_in_capture = cudart, fail_in_capture
        self.shape: tuple[int, ...] = ()
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        b, _, h, w = self.shape
        return (b, 2, h, w)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        if self.fail_in_capture and self.cudart.capturing:
            self.cudart.invalidated = True
            self.cudart.sticky = Err.cudaErrorStreamCaptureInvalidated
            return False
        shape, addresses = self.shape, dict(self.addresses)

        def run() -> None:
            self.executions += 1
            x = read_floats(addresses["input"], shape)
            out = np.stack([x.sum(1), -x.sum(1)], axis=1).astype(np.float32)
            ctypes.memmove(addresses["logits"], out.ctypes.data, out.nbytes)

        self.cudart.enqueue(run)
        return True


def install_fake_tensorrt(
    monkeypatch: Any, context: Any, version: str = "10.3.0", input_shape: tuple[int, ...] = (1, 3, 4, 6)
) -> types.ModuleType:
    """A ``tensorrt`` module whose runtime deserialises any bytes into a one-input engine."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]

    class Logger:
        ERROR, WARNING, INFO, VERBOSE = 1, 2, 3, 4
        created = 0

        def __init__(self, min_severity: int = 2) -> None:
            Logger.created += 1
            self.min_severity = min_severity

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ["input", "logits"][i]

        def get_tensor_mode(self, name: str) -> str:
            return "in" if name == "input" else "out"

        def get_tensor_dtype(self, name: str) -> Any:
            return SimpleNamespace(name="FLOAT")

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return input_shape

        def create_execution_context(self) -> FakeContext:
            return context() if callable(context) else context  # one shared context, or a factory

    class Runtime:
        num_DLA_cores = 0

        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes) -> Engine:
            return Engine()

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.TensorIOMode = SimpleNamespace(INPUT="in", OUTPUT="out")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
