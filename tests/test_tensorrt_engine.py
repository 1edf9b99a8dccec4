"""TensorRT step 2 and the runtime backend: build an engine from a prepared bundle and run it.

Needs TensorRT, cuda-python and an NVIDIA GPU; skipped (with the reason) anywhere else. Run all of
them with ``python -m pytest -q -rs -m tensorrt tests`` (or ``make test-tensorrt``) on the device.
None of these has run yet: no machine this project was developed on had TensorRT or a GPU.
"""

import importlib.util
import json

import numpy as np
import pytest

pytestmark = pytest.mark.tensorrt


def _gpu_reason():
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install tensorrt, or JetPack's python3-libnvinfer)"
    try:
        from danet_deploy.tensorrt.cuda import device_properties, load_cudart

        device_properties(load_cudart(), 0)
    except Exception as exc:  # no cuda-python, driver or GPU
        return f"no usable CUDA GPU: {exc}"
    return None


REASON = _gpu_reason()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

from danet_deploy import runtime  # noqa: E402 after the module-level GPU skip
from danet_deploy.errors import InputError  # noqa: E402 after the module-level GPU skip
from danet_deploy.export import ExportRequest, export  # noqa: E402 after the module-level GPU skip
from danet_deploy.export.tensorrt import build_engine_from_bundle  # noqa: E402 after the module-level GPU skip
from danet_deploy.tensorrt.logger import shared_logger  # noqa: E402 after the module-level GPU skip

MODEL = "danet_edge_r18_d8"


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module", params=["fp32", "fp16", "int8"])
def built(request, tmp_path_factory):
    if request.param != "fp32":
        pytest.importorskip("modelopt")
    root = tmp_path_factory.mktemp(f"trt-{request.param}")
    bundle, _ = export(
        ExportRequest(
            MODEL,
            target="tensorrt",
            precision=request.param,
            input_size=(64, 64),
            dynamic=True,
            min_size=(32, 32),
            max_size=(128, 128),
            max_batch=2,
            calib="generated",
            calib_count=4,
            output=root / "bundle",
            options={"build": False},
        ),
        log=_quiet,
    )
    engine = build_engine_from_bundle(
        bundle, root / "engine", workspace="1GB", timing_cache=root / "timing.cache", log=_quiet
    )
    return request.param, bundle, engine, root


def test_engine_folder_is_a_plain_plan_with_its_facts(built):
    precision, _, engine, root = built
    manifest = json.loads((engine / "manifest.json").read_text())
    info = manifest["extra"]["tensorrt"]
    assert manifest["backend"] == "tensorrt" and manifest["primary"] == "model.engine"
    assert info["stage"] == "engine" and info["precision"] == precision and info["gpu"] and info["compute_capability"]
    assert info["profiles"][0]["max"] == [2, 3, 128, 128]
    assert (root / "timing.cache").stat().st_size > 0
    import tensorrt as trt

    blob = (engine / "model.engine").read_bytes()
    assert trt.Runtime(shared_logger(trt)).deserialize_cuda_engine(blob) is not None


def test_engine_matches_the_prepared_onnx(built):
    precision, bundle, engine, _ = built
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    with runtime.load(bundle) as onnx_session, runtime.load(engine) as trt_session:
        ref, out = onnx_session.infer(x), trt_session.infer(x)
        assert trt_session.describe()["gpu"]
    assert out.shape == ref.shape == (2, 19, 64, 96)
    agreement = float((out.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= {"fp32": 0.999, "fp16": 0.99, "int8": 0.9}[precision], agreement


def test_profile_bounds_and_cuda_graph_and_timing(built):
    _, _, engine, _ = built
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with runtime.load(engine) as plain, runtime.load(engine, cuda_graph=True) as graphed:
        with pytest.raises(InputError):
            plain.infer(np.zeros((1, 3, 160, 64), np.float32))
        first = plain.infer(x)
        np.testing.assert_allclose(graphed.infer(x), first, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(graphed.infer(x), first, rtol=1e-5, atol=1e-5)  # replay
        described = graphed.describe()
        # capture either worked, or fell back with a reason (never an exception)
        assert described["cuda_graph"] or described["cuda_graph_disabled"]
        assert plain.backend.logger is graphed.backend.logger  # one TensorRT logger per process
        logits, times = plain.backend.infer_timed(x)
        np.testing.assert_allclose(logits, first, rtol=1e-5, atol=1e-5)
        assert times["compute"] > 0 and times["total"] >= times["compute"]


def test_driver_and_bindings_versions_agree():
    from danet_deploy.tensorrt.cuda import check_driver, load_cudart

    versions = check_driver(load_cudart())
    assert int(versions["driver_cuda"].split(".")[0]) >= int((versions["runtime_cuda"] or "0").split(".")[0])


def test_engine_built_for_the_requested_device(tmp_path):
    from danet_deploy.tensorrt.cuda import device_properties, load_cudart

    cudart = load_cudart()
    count = int(cudart.cudaGetDeviceCount()[1])
    device = count - 1  # the last GPU: on a multi-GPU machine not the default device 0
    bundle, _ = export(
        ExportRequest(
            MODEL,
            target="tensorrt",
            precision="fp32",
            input_size=(64, 64),
            output=tmp_path / "bundle",
            options={"build": False},
        ),
        log=_quiet,
    )
    engine = build_engine_from_bundle(bundle, tmp_path / "engine", device=device, log=_quiet)
    info = json.loads((engine / "manifest.json").read_text())["extra"]["tensorrt"]
    assert info["gpu"] == device_properties(cudart, device)["gpu"]
    with runtime.load(engine, device=device) as session:
        assert session.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 19, 64, 64)


def test_legacy_calibrator_with_batch_2(tmp_path):
    import tensorrt as trt

    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 removed the implicit INT8 calibrators")
    pytest.importorskip("modelopt")
    bundle, _ = export(
        ExportRequest(
            MODEL,
            target="tensorrt",
            precision="int8",
            input_size=(64, 64),
            batch=2,
            calib="generated",
            calib_count=5,
            output=tmp_path / "bundle",
            options={"build": False, "legacy_calibrator": True},
        ),
        log=_quiet,
    )
    engine = build_engine_from_bundle(bundle, tmp_path / "engine", legacy_calibrator=True, log=_quiet)
    assert (engine / "calibration.cache").stat().st_size > 0
    with runtime.load(engine) as session:
        assert session.infer(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 19, 64, 64)


def test_dla_engine_records_its_dla_layers(tmp_path):
    import tensorrt as trt

    if int(getattr(trt.Runtime(shared_logger(trt)), "num_DLA_cores", 0)) < 1:
        pytest.skip("no DLA on this device (Jetson AGX/NX Orin have DLA)")
    pytest.importorskip("modelopt")
    bundle, _ = export(
        ExportRequest(
            MODEL,
            target="tensorrt",
            precision="fp16",
            input_size=(64, 64),
            calib="generated",
            calib_count=4,
            output=tmp_path / "bundle",
            options={"build": False},
        ),
        log=_quiet,
    )
    lines = []
    engine = build_engine_from_bundle(bundle, tmp_path / "engine", dla_core=0, log=lines.append)
    info = json.loads((engine / "manifest.json").read_text())["extra"]["tensorrt"]
    assert info["dla_core"] == 0 and info["engine_layers"] >= 1 and info["dla_layers"] is not None
    print("\n".join(lines))  # the placement line, for the record (-s)
    with runtime.load(engine) as session:
        assert session.describe()["dla_layers"] == info["dla_layers"]
