"""TensorRT step 2 and the runtime backend: build an engine from a prepared bundle and run it.

Needs TensorRT, cuda-python and an NVIDIA GPU; skipped (with the reason) anywhere else.
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

from danet_deploy import runtime  # noqa: E402
from danet_deploy.errors import InputError  # noqa: E402
from danet_deploy.export import ExportRequest, export  # noqa: E402
from danet_deploy.export.tensorrt import build_engine_from_bundle  # noqa: E402

MODEL = "danet_edge_r18_d8"


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module", params=["fp32", "fp16", "int8"])
def built(request, tmp_path_factory):
    if request.param != "fp32":
        pytest.importorskip("modelopt")
    root = tmp_path_factory.mktemp(f"trt-{request.param}")
    bundle, _ = export(ExportRequest(MODEL, target="tensorrt", precision=request.param, input_size=(64, 64),
                                     dynamic=True, min_size=(32, 32), max_size=(128, 128), max_batch=2,
                                     calib="generated", calib_count=4, output=root / "bundle",
                                     options={"build": False}), log=_quiet)
    engine = build_engine_from_bundle(bundle, root / "engine", workspace="1GB", timing_cache=root / "timing.cache",
                                      log=_quiet)
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
    assert trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(blob) is not None


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
        logits, times = plain.backend.infer_timed(x)
        np.testing.assert_allclose(logits, first, rtol=1e-5, atol=1e-5)
        assert times["compute"] > 0 and times["total"] >= times["compute"]
