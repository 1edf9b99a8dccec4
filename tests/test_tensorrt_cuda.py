"""The CUDA side of the TensorRT path without a GPU: cuda-python pins and driver mismatch, graph
capture failure and fallback, device selection, legacy calibration batches, the shared logger.

cuda-python and TensorRT are replaced at the boundary (tests/fake_cuda.py); everything between
(``danet_deploy.tensorrt.cuda``, the runtime backend, the builder helpers) is the real code.
"""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fake_cuda import Err, FakeContext, FakeCudart, install_fake_cuda_python, install_fake_tensorrt, read_floats
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

from danet_deploy.errors import BackendUnavailableError, ConfigError, DanetDeployError
from danet_deploy.manifest import Manifest
from danet_deploy.tensorrt import cuda, logger

#: a valid preprocessing section (a Manifest checks its sections when it is built)
PREPROCESSING = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

ROOT = Path(__file__).resolve().parents[1]


# -- item 1: cuda-python pinned to the CUDA major; a too-new binding is named as such -----------
def test_tensorrt_extra_pins_cuda_python_below_the_next_major():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cu12 = Requirement(next(r for r in extras["tensorrt"] if r.startswith("cuda-python")))
    cu13 = Requirement(next(r for r in extras["tensorrt-cu13"] if r.startswith("cuda-python")))
    assert cu12.specifier.contains("12.9.0") and cu12.specifier.contains("12.4.0")
    assert not cu12.specifier.contains("13.0.0") and not cu12.specifier.contains("12.3.0")
    assert cu13.specifier.contains("13.0.1") and not cu13.specifier.contains("12.9.0")
    assert not cu13.specifier.contains("14.0.0")
    # the message that tells users what to install is the pin itself
    assert cu12 == Requirement(cuda.CUDA_PYTHON_PINS[12]) and cu13 == Requirement(cuda.CUDA_PYTHON_PINS[13])


def test_bindings_newer_than_the_driver_are_named_not_a_missing_driver():
    message = cuda.driver_mismatch(driver=12020, runtime=13000, bindings="13.0.1")
    assert "cuda-python 13.0.1 is built for CUDA 13.0" in message and "supports CUDA up to 12.2" in message
    assert "the driver is installed" in message and "cuda-python>=12.4,<13" in message and ">= 580" in message
    assert cuda.driver_mismatch(driver=13000, runtime=12090) is None  # older bindings on a newer driver: fine
    assert cuda.driver_mismatch(driver=12020, runtime=12090) is None  # CUDA minor-version compatibility
    assert "no NVIDIA driver" in cuda.driver_mismatch(driver=0, runtime=12090)


def test_load_cudart_checks_the_driver_before_any_other_call(monkeypatch):
    fake = FakeCudart(driver=12060, runtime=13000)  # JetPack 6 (CUDA 12.6 driver) with 13.x bindings
    install_fake_cuda_python(monkeypatch, fake)
    with pytest.raises(BackendUnavailableError, match=r"built for CUDA 13\.0.*up to 12\.6.*cuda-python>=12\.4,<13"):
        cuda.load_cudart()
    assert fake.calls == []  # failed on the version query, before cudaGetDeviceCount/cudaSetDevice
    fine = FakeCudart(driver=12060, runtime=12090)
    install_fake_cuda_python(monkeypatch, fine)
    assert cuda.load_cudart() is fine and cuda.check_driver(fine)["driver_cuda"] == "12.6"


def test_driver_version_query_that_itself_fails(monkeypatch):
    fake = FakeCudart(driver=12020, runtime=13000)
    fake.driver_query_error = Err.cudaErrorInsufficientDriver
    install_fake_cuda_python(monkeypatch, fake)  # no cuda.bindings.driver: the runtime's error stands
    with pytest.raises(BackendUnavailableError, match=r"driver is older than .*built for CUDA 13\.0.*<13"):
        cuda.check_driver(fake)
    driver_api = types.SimpleNamespace(cuDriverGetVersion=lambda: (0, 12020))  # cuDriverGetVersion works
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", driver_api)
    sys.modules["cuda.bindings"].driver = driver_api
    with pytest.raises(BackendUnavailableError, match=r"supports CUDA up to 12\.2"):
        cuda.check_driver(fake)
    fake.driver_query_error = Err.cudaErrorNoDevice  # not a version problem: left to the next call
    fake.runtime = 12090
    sys.modules["cuda.bindings"].driver = types.SimpleNamespace(cuDriverGetVersion=lambda: (100, 0))
    assert cuda.check_driver(fake)["driver_cuda"] is None


def test_insufficient_driver_from_any_call_says_which_side_is_old():
    fake = FakeCudart(driver=12020, runtime=13000)
    with pytest.raises(BackendUnavailableError) as info:
        cuda.check(fake, fake.cudaGetDeviceCount(), "cudaGetDeviceCount")
    text = str(info.value)
    assert "cudaErrorInsufficientDriver" in text and "bindings are too new" in text
    assert "install an NVIDIA driver" not in text
    with pytest.raises(BackendUnavailableError, match="install an NVIDIA driver"):  # a real missing GPU still says so
        cuda.check(fake, (Err.cudaErrorNoDevice,), "cudaGetDeviceCount")


def test_backend_reports_the_mismatch_at_load(monkeypatch, tmp_path):
    install_fake_tensorrt(monkeypatch, FakeContext(FakeCudart()))
    install_fake_cuda_python(monkeypatch, FakeCudart(driver=12020, runtime=13000))
    from danet_deploy.runtime.backends.tensorrt import TensorRTBackend

    with pytest.raises(BackendUnavailableError, match="too new"):
        TensorRTBackend(*_engine(tmp_path))


# -- item 2: a failed graph capture falls back to plain execution ---------------------------------
def _engine(tmp_path, info=None):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    facts = {"stage": "engine", "version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", **(info or {})}
    manifest = Manifest(
        target="tensorrt",
        backend="tensorrt",
        precision="fp16",
        primary="model.engine",
        model={"name": "fake"},
        preprocessing=PREPROCESSING,
        input={"name": "input", "shape": [1, 3, 4, 6]},
        output={"name": "logits", "shape": [1, 2, 4, 6]},
        extra={"tensorrt": facts},
    )
    return engine, manifest


def _backend(monkeypatch, tmp_path, fail_in_capture, **options):
    fake = FakeCudart()
    context = FakeContext(fake, fail_in_capture=fail_in_capture)
    install_fake_tensorrt(monkeypatch, context)
    install_fake_cuda_python(monkeypatch, fake)
    logger._reset_for_tests()
    from danet_deploy.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(*_engine(tmp_path), **options), fake, context


def _expected(x):
    return np.stack([x.sum(1), -x.sum(1)], axis=1)


def test_enqueue_failing_inside_capture_falls_back_without_graphs(monkeypatch, tmp_path):
    backend, fake, _context = _backend(monkeypatch, tmp_path, fail_in_capture=True, cuda_graph=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 6)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="CUDA graphs are off"):
        out = backend.infer(x)
    np.testing.assert_allclose(out, _expected(x), rtol=1e-6)
    # capture ended, the sticky error cleared, no half-built graph left behind
    assert not fake.capturing and fake.sticky == Err.cudaSuccess and fake.graphs == {}
    names = fake.names()
    end = names.index("cudaStreamEndCapture")
    assert names[names.index("cudaStreamBeginCapture") :].count("cudaStreamEndCapture") == 1
    assert "cudaGetLastError" in names[end:]
    described = backend.describe()
    assert described["cuda_graph"] is False and described["cuda_graph_requested"] is True
    assert "execute_async_v3" in described["cuda_graph_disabled"]
    assert any("CUDA graphs are off" in n for n in described["notes"])
    # later calls run plainly, never try to capture again
    captures = names.count("cudaStreamBeginCapture")
    np.testing.assert_allclose(backend.infer(2 * x), _expected(2 * x), rtol=1e-6)
    assert fake.names().count("cudaStreamBeginCapture") == captures
    backend.close()
    assert fake.memory == {}


def test_successful_capture_replays_the_graph(monkeypatch, tmp_path):
    backend, fake, _context = _backend(monkeypatch, tmp_path, fail_in_capture=False, cuda_graph=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(backend.infer(x), _expected(x), rtol=1e-6)
    np.testing.assert_allclose(backend.infer(3 * x), _expected(3 * x), rtol=1e-6)  # replay reads the new input
    assert fake.names().count("cudaStreamBeginCapture") == 1 and fake.names().count("cudaGraphLaunch") == 2
    assert backend.describe()["cuda_graph"] is True and backend.describe()["cuda_graph_disabled"] is None
    backend.close()


def test_capture_keeps_the_first_error_when_work_raises():
    fake = FakeCudart()
    graph = cuda.CudaGraph(fake)

    def work():
        fake.cudaStreamSynchronize(1)  # not allowed while capturing: invalidates the capture
        raise cuda.CudaError("enqueue failed first")

    with pytest.raises(cuda.GraphCaptureError, match="enqueue failed first") as info:
        graph.capture(1, (1, 3), work)
    assert isinstance(info.value.__cause__, cuda.CudaError)
    assert not fake.capturing and fake.sticky == Err.cudaSuccess and graph.key is None


def test_capture_invalidated_without_an_exception_is_reported():
    fake = FakeCudart()
    graph = cuda.CudaGraph(fake)
    with pytest.raises(cuda.GraphCaptureError, match="cudaErrorStreamCaptureInvalidated"):
        graph.capture(1, (1, 3), lambda: fake.cudaStreamSynchronize(1))
    assert fake.sticky == Err.cudaSuccess and graph.exec is None


# -- item 4: the builder selects the requested GPU ----------------------------------------------
def test_require_tensorrt_makes_the_device_current(monkeypatch):
    fake = FakeCudart(devices=2)
    install_fake_cuda_python(monkeypatch, fake)
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    from danet_deploy.export.tensorrt_build import require_tensorrt

    _, cudart, gpu = require_tensorrt(1)
    assert cudart is fake and gpu["device"] == 1 and fake.current_device == 1
    assert ("cudaSetDevice", 1) in fake.calls
    with pytest.raises(BackendUnavailableError, match="device 2 does not exist"):
        require_tensorrt(2)


# -- item 5: legacy calibration feeds whole batches of the profile's shape -----------------------
@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 9), batch=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5))
def test_calibration_batches_are_whole_and_in_order(count, batch, h, w):
    from danet_deploy.export.tensorrt_build import calibration_batches

    tensors = np.arange(count * 3 * h * w, dtype=np.float64).reshape(count, 3, h, w)
    if count < batch:
        with pytest.raises(ConfigError, match="cannot fill one batch"):
            calibration_batches(tensors, [batch, 3, h, w])
        return
    batches = calibration_batches(tensors, [batch, 3, h, w])
    assert len(batches) == count // batch
    for i, b in enumerate(batches):
        assert b.shape == (batch, 3, h, w) and b.dtype == np.float32 and b.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(b, tensors[i * batch : (i + 1) * batch])


def test_calibration_batches_refuse_another_size():
    from danet_deploy.export.tensorrt_build import calibration_batches

    with pytest.raises(ConfigError, match=r"\(4, 3, 64, 64\).*2x3x64x96"):
        calibration_batches(np.zeros((4, 3, 64, 64), np.float32), [2, 3, 64, 96])


def test_entropy_calibrator_copies_full_batches_and_frees(tmp_path):
    from danet_deploy.export.tensorrt_build import _entropy_calibrator

    fake = FakeCudart()
    trt = types.SimpleNamespace(IInt8EntropyCalibrator2=type("Base", (), {"__init__": lambda self: None}))
    tensors = np.random.default_rng(0).standard_normal((5, 3, 4, 6)).astype(np.float32)
    calibrator = _entropy_calibrator(trt, fake, tensors, tmp_path / "calib.cache", [2, 3, 4, 6])
    assert calibrator.get_batch_size() == 2
    seen = []
    while (pointers := calibrator.get_batch(["input"])) is not None:
        copy = [c for c in fake.calls if c[0] == "cudaMemcpy"][-1]
        assert copy[3] == 2 * 3 * 4 * 6 * 4  # a whole batch, never one sample into a batch-2 binding
        seen.append(read_floats(pointers[0], (2, 3, 4, 6)))
    assert len(seen) == 2  # the fifth sample cannot make a whole batch
    np.testing.assert_array_equal(np.concatenate(seen), tensors[:4])
    assert fake.memory  # the device buffer lives for the build...
    calibrator._free()
    assert fake.memory == {}  # ...and is freed after it
    calibrator.write_calibration_cache(b"cache")
    assert calibrator.read_calibration_cache() == b"cache"


# -- item 6: one TensorRT logger per process -----------------------------------------------------
def test_one_logger_per_process_and_levels_apply_to_it(monkeypatch, tmp_path):
    backend, _, _ = _backend(monkeypatch, tmp_path, fail_in_capture=False, log_level="verbose")
    trt = sys.modules["tensorrt"]
    from danet_deploy.runtime.backends.tensorrt import TensorRTBackend

    second = TensorRTBackend(*_engine(tmp_path), log_level="error")
    third = TensorRTBackend(*_engine(tmp_path))  # no level: leaves the shared one alone
    assert backend.logger is second.logger is third.logger and trt.Logger.created == 1
    assert backend.logger.min_severity == trt.Logger.ERROR
    assert logger.shared_logger(trt) is backend.logger
    with pytest.raises(ConfigError, match="unknown TensorRT log level 'loud'"):
        TensorRTBackend(*_engine(tmp_path), log_level="loud")
    for b in (backend, second, third):
        b.close()


def test_cuda_error_classes_stay_distinct():
    assert issubclass(cuda.GraphCaptureError, cuda.CudaError) and issubclass(cuda.CudaError, DanetDeployError)
