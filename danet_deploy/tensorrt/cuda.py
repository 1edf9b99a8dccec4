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


# The cuda-python requirement per CUDA major version: the bindings must not be newer than the
# CUDA version the driver supports (CUDA 13 bindings need driver >= 580; JetPack 6 is CUDA 12).
CUDA_PYTHON_PINS = {12: "cuda-python>=12.4,<13", 13: "cuda-python>=13,<14"}


def load_cudart(check_versions: bool = True) -> Any:
    """The CUDA runtime bindings: ``cuda.bindings.runtime`` (cuda-python >= 12.6), else ``cuda.cudart``.

    With ``check_versions`` the driver's CUDA version is compared with the bindings' first
    (:func:`check_driver`), so bindings too new for the driver fail with that diagnosis instead
    of an ``cudaErrorInsufficientDriver`` from whichever call happens to come first.
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError as exc:
            raise BackendUnavailableError(
                "the tensorrt backend needs NVIDIA's CUDA Python bindings of your CUDA major version: "
                f"pip install '{CUDA_PYTHON_PINS[12]}' (CUDA 12, JetPack 6) or '{CUDA_PYTHON_PINS[13]}' "
                f"(CUDA 13, driver >= 580) ({exc})"
            ) from exc
    if check_versions:
        check_driver(cudart)
    return cudart


def cuda_version(code: int) -> str:
    """``12020`` -> ``"12.2"`` (CUDA's ``1000 * major + 10 * minor`` encoding)."""
    return f"{int(code) // 1000}.{int(code) % 1000 // 10}"


def bindings_version() -> str | None:
    """The installed cuda-python (or cuda-bindings) distribution version, if known."""
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def driver_mismatch(driver: int, runtime: int, bindings: str | None = None) -> str | None:
    """Why the bindings cannot run on this driver (a message with the fix), or ``None`` if they can.

    ``driver`` is ``cudaDriverGetVersion`` (the newest CUDA the driver supports, 0 without a
    driver), ``runtime`` is ``cudaRuntimeGetVersion`` (the CUDA the bindings were built for).
    Within one major version CUDA's minor-version compatibility applies, so only the major is
    compared; a newer-minor runtime is not refused here.
    """
    if int(driver) <= 0:
        return (
            "no NVIDIA driver was found (cudaDriverGetVersion returned 0): install the NVIDIA driver (on a "
            "Jetson it comes with JetPack) or run on a machine with an NVIDIA GPU"
        )
    have, need = int(driver) // 1000, int(runtime) // 1000
    if need <= have:
        return None
    what = f"cuda-python {bindings}" if bindings else "the installed cuda-python"
    pin = CUDA_PYTHON_PINS.get(have, f"cuda-python>={have},<{have + 1}")
    return (
        f"{what} is built for CUDA {cuda_version(runtime)}, but this NVIDIA driver supports CUDA up to "
        f"{cuda_version(driver)}: the driver is installed, the bindings are too new for it. Install the bindings "
        f"of the driver's CUDA major version: pip install '{pin}' (JetPack 6 and CUDA 12 hosts), or upgrade the "
        f"driver to one that supports CUDA {need} (CUDA 13 needs driver >= 580)"
    )


def driver_cuda_version(cudart: Any) -> tuple[int | None, str | None]:
    """``(version, None)``, or ``(None, error name)`` when neither runtime nor driver API can read it.

    ``cudaDriverGetVersion`` may itself fail with ``cudaErrorInsufficientDriver`` when it has to
    initialise runtime state; the driver API's ``cuDriverGetVersion`` needs none, so it is the
    second try.
    """
    err, version = cudart.cudaDriverGetVersion()
    if _is_success(cudart, err):
        return int(version), None
    name = _error_name(cudart, err)[0]
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # type: ignore[no-redef]
        except ImportError:
            return None, name
    try:
        result, version = driver.cuDriverGetVersion()
        if int(result) == 0:
            return int(version), None
    except Exception:  # an older or partial binding: keep the runtime's error
        pass
    return None, name


def check_driver(cudart: Any) -> dict[str, Any]:
    """Raise :class:`BackendUnavailableError` when the driver is missing or older than the bindings.

    Returns ``{"driver_cuda": "12.2", "runtime_cuda": "12.9", "cuda_python": "12.9.0"}``. Runs
    before the first call that could fail with ``cudaErrorInsufficientDriver``, so that failure
    is named for what it is: bindings of a newer CUDA major than the driver supports.
    """
    err, runtime = cudart.cudaRuntimeGetVersion()
    runtime = int(runtime) if _is_success(cudart, err) else 0
    bindings = bindings_version()
    driver, error = driver_cuda_version(cudart)
    if driver is None:
        if error == "cudaErrorInsufficientDriver":
            raise BackendUnavailableError(_insufficient(runtime, bindings))
        return {
            "driver_cuda": None,
            "runtime_cuda": cuda_version(runtime) if runtime else None,
            "cuda_python": bindings,
        }  # e.g. no device: the next call reports it
    problem = driver_mismatch(driver, runtime, bindings)
    if problem:
        raise BackendUnavailableError(problem)
    return {
        "driver_cuda": cuda_version(driver),
        "runtime_cuda": cuda_version(runtime) if runtime else None,
        "cuda_python": bindings,
    }


def _insufficient(runtime: int, bindings: str | None) -> str:
    """The advice when the driver is too old but its version could not be read."""
    what = f"cuda-python {bindings}" if bindings else "the installed cuda-python"
    target = f" (built for CUDA {cuda_version(runtime)})" if runtime else ""
    return (
        f"the NVIDIA driver is older than {what}{target} needs (cudaErrorInsufficientDriver): install the "
        f"bindings of the driver's CUDA major version, e.g. pip install '{CUDA_PYTHON_PINS[12]}' on JetPack 6 / "
        "CUDA 12, or upgrade the driver (CUDA 13 needs driver >= 580)"
    )


def _error_name(cudart: Any, err: Any) -> tuple[str, str]:
    try:
        return cudart.cudaGetErrorName(err)[1].decode(), cudart.cudaGetErrorString(err)[1].decode()
    except Exception:  # the error lookup itself failed; report the number
        return str(err), ""


def _is_success(cudart: Any, err: Any) -> bool:
    return int(err) == int(cudart.cudaError_t.cudaSuccess)


def check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack ``(err, *values)`` from a cuda-python call; raise :class:`CudaError` unless success."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if not _is_success(cudart, err):
        name, text = _error_name(cudart, err)
        if name == "cudaErrorInsufficientDriver":  # say which side is too old, not "install a driver"
            detail = None
            try:
                runtime_err, runtime = cudart.cudaRuntimeGetVersion()
                runtime = int(runtime) if _is_success(cudart, runtime_err) else 0
                driver, _ = driver_cuda_version(cudart)
                if driver is not None:
                    detail = driver_mismatch(driver, runtime, bindings_version())
                detail = detail or _insufficient(runtime, bindings_version())
            except Exception:  # the version queries failed too
                detail = _insufficient(0, None)
            raise BackendUnavailableError(f"CUDA call {what} failed: {name} {text}; {detail}")
        no_gpu = {"cudaErrorNoDevice", "cudaErrorInvalidDevice"}
        cls = BackendUnavailableError if name in no_gpu else CudaError
        raise cls(
            f"CUDA call {what} failed: {name} {text}; "
            + (
                "install an NVIDIA driver / pick an existing --device"
                if name in no_gpu
                else "check free GPU memory (nvidia-smi / tegrastats) and the input size"
            )
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_properties(cudart: Any, device: int = 0) -> dict[str, Any]:
    """GPU name, compute capability and memory of ``device``."""
    count = check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if int(count) <= device:
        raise BackendUnavailableError(
            f"CUDA device {device} does not exist ({count} found); pick --device "
            f"0..{max(int(count) - 1, 0)} or run on a machine with an NVIDIA GPU"
        )
    props = check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {
        "gpu": name.rstrip("\x00").strip(),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_bytes": int(props.totalGlobalMem),
        "device": device,
    }


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
        import ctypes

        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        # numpy's stub omits ctypes arrays, which export the buffer protocol frombuffer reads
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)  # type: ignore[call-overload]


class GraphCaptureError(CudaError):
    """Capturing a CUDA graph failed; the stream is out of capture mode and the error state cleared."""


def _is_null(handle: Any) -> bool:
    if handle is None:
        return True
    try:
        return int(handle) == 0
    except (TypeError, ValueError):
        return False


class CudaGraph:
    """One captured stream sequence (copy in, enqueue, copy out) replayed for a fixed shape.

    A failed capture never leaves the stream capturing or the error sticky: as trtexec does
    (``TrtCudaGraph::endCaptureOnError``), capture is ended, a half-built graph destroyed,
    ``cudaGetLastError`` clears the error, and :class:`GraphCaptureError` carries the *first*
    failure, so the caller can run the same work without a graph.
    """

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
        except Exception as exc:
            self._end_capture_on_error(stream)
            raise GraphCaptureError(f"CUDA graph capture failed while enqueueing: {exc}") from exc
        err, graph = cudart.cudaStreamEndCapture(stream)
        if not _is_success(cudart, err):  # e.g. cudaErrorStreamCaptureInvalidated: an op not allowed in capture
            if not _is_null(graph):
                cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()
            name, text = _error_name(cudart, err)
            raise GraphCaptureError(f"CUDA graph capture failed: cudaStreamEndCapture returned {name} {text}")
        result = cudart.cudaGraphInstantiate(graph, 0)
        if not _is_success(cudart, result[0]):
            cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()
            name, text = _error_name(cudart, result[0])
            raise GraphCaptureError(f"CUDA graph instantiation failed: {name} {text}")
        self.graph, self.exec, self.key = graph, result[1], key

    def _end_capture_on_error(self, stream: Any) -> None:
        """End a capture whose work failed: destroy what it built and clear the error (never raises)."""
        cudart = self.cudart
        try:
            err, graph = cudart.cudaStreamEndCapture(stream)
            if _is_success(cudart, err) and not _is_null(graph):
                cudart.cudaGraphDestroy(graph)
        finally:
            cudart.cudaGetLastError()

    def launch(self, stream: Any) -> None:
        check(self.cudart, self.cudart.cudaGraphLaunch(self.exec, stream), "cudaGraphLaunch")

    def reset(self) -> None:
        if self.exec is not None:
            check(self.cudart, self.cudart.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
        if self.graph is not None:
            check(self.cudart, self.cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
        self.graph, self.exec, self.key = None, None, None
