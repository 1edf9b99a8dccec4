"""The few CUDA runtime calls TensorRT needs, through cuda-python, with every error code checked.

cuda-python returns ``(error, *results)`` from every call instead of raising; :func:`check`
turns a non-success code into a :class:`CudaError` that names the call, so a failed copy or
launch never passes silently. Device and pinned host buffers grow on demand and are reused.
No torch, no pycuda: the runtime on a robot needs only numpy, tensorrt and cuda-python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, DanetDeployError


class CudaError(DanetDeployError):
    """A CUDA runtime call failed (out of memory, launch failure, lost device, ...)."""


def load_cudart() -> Any:
    """The CUDA runtime bindings: ``cuda.bindings.runtime`` (cuda-python >= 12.6), else ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # noqa: PLC0415
        except ImportError as exc:
            raise BackendUnavailableError(
                "the tensorrt backend needs NVIDIA's CUDA Python bindings: pip install cuda-python "
                f"(matching your CUDA major version, e.g. cuda-python==12.*) ({exc})") from exc
    return cudart


def check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack ``(err, *values)`` from a cuda-python call; raise :class:`CudaError` unless success."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        try:
            name = cudart.cudaGetErrorName(err)[1].decode()
            text = cudart.cudaGetErrorString(err)[1].decode()
        except Exception:  # the error lookup itself failed; report the number
            name, text = str(err), ""
        no_gpu = {"cudaErrorNoDevice", "cudaErrorInsufficientDriver", "cudaErrorInvalidDevice"}
        cls = BackendUnavailableError if name in no_gpu else CudaError
        raise cls(f"CUDA call {what} failed: {name} {text}; "
                  + ("install an NVIDIA driver / pick an existing --device" if name in no_gpu
                     else "check free GPU memory (nvidia-smi / tegrastats) and the input size"))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_properties(cudart: Any, device: int = 0) -> dict[str, Any]:
    """GPU name, compute capability and memory of ``device``."""
    count = check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if int(count) <= device:
        raise BackendUnavailableError(f"CUDA device {device} does not exist ({count} found); pick --device "
                                      f"0..{max(int(count) - 1, 0)} or run on a machine with an NVIDIA GPU")
    props = check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_bytes": int(props.totalGlobalMem), "device": device}


class DeviceBuffer:
    """A ``cudaMalloc`` allocation that grows (never shrinks) to the largest request seen."""

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0

    def _allocate(self, nbytes: int) -> int:
        return int(check(self.cudart, self.cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))

    def _release(self) -> None:
        check(self.cudart, self.cudart.cudaFree(self.ptr), "cudaFree")

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr, self.nbytes = self._allocate(nbytes), nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self._release()
            self.ptr, self.nbytes = 0, 0


class PinnedBuffer(DeviceBuffer):
    """Page-locked host memory (``cudaMallocHost``): needed for truly asynchronous copies."""

    def _allocate(self, nbytes: int) -> int:
        return int(check(self.cudart, self.cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))

    def _release(self) -> None:
        check(self.cudart, self.cudart.cudaFreeHost(self.ptr), "cudaFreeHost")

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A numpy array over the pinned memory (no copy)."""
        count = int(np.prod(shape))
        nbytes = count * np.dtype(dtype).itemsize
        if nbytes > self.nbytes:
            raise CudaError(f"pinned buffer of {self.nbytes} bytes is too small for {shape} {dtype}")
        import ctypes  # noqa: PLC0415

        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class CudaGraph:
    """One captured stream sequence (copy in, enqueue, copy out) replayed for a fixed shape."""

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.graph, self.exec, self.key = cudart, None, None, None

    def capture(self, stream: Any, key: Any, work: Any) -> None:
        """Capture what ``work()`` enqueues on ``stream`` under ``key`` (e.g. the input shape)."""
        cudart = self.cudart
        self.reset()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart, cudart.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        try:
            work()
        finally:
            graph = check(cudart, cudart.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        self.graph = graph
        self.exec = check(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self.key = key

    def launch(self, stream: Any) -> None:
        check(self.cudart, self.cudart.cudaGraphLaunch(self.exec, stream), "cudaGraphLaunch")

    def reset(self) -> None:
        if self.exec is not None:
            check(self.cudart, self.cudart.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
        if self.graph is not None:
            check(self.cudart, self.cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
        self.graph, self.exec, self.key = None, None, None
