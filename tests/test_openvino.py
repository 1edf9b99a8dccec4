import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_test_checkpoint

from danet_deploy import runtime
from danet_deploy.errors import ArtifactError, ConfigError, InputError
from danet_deploy.export import ExportRequest, export
from danet_deploy.runtime.preprocess import preprocess

pytest.importorskip("openvino")
SIZE = (64, 64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, torch, module_cache):
    """A test-initialised danet_demo checkpoint, its torch reference, and OpenVINO artifacts."""
    from danet_deploy.data.scenes import SceneDataset

    root = tmp_path_factory.mktemp("ov")
    model, ckpt = make_test_checkpoint(root)
    arts = {}
    for precision in ("fp32", "fp16", "int8"):
        request = ExportRequest(
            str(ckpt),
            arch="danet_demo",
            target="openvino",
            precision=precision,
            input_size=SIZE,
            dynamic=True,
            calib_count=4,
            output=root / f"ov-{precision}",
        )
        arts[precision] = export(request, log=lambda _m: None)
    static = ExportRequest(
        str(ckpt), arch="danet_demo", target="openvino", precision="fp32", input_size=SIZE, output=root / "ov-static"
    )
    arts["static"] = export(static, log=lambda _m: None)
    pre = model.config.preprocessing.to_dict()

    def reference(size, n=2):
        x = preprocess([img for img, _ in SceneDataset("val", size=size, count=n)], pre)
        with torch.no_grad():
            return x, model(torch.from_numpy(x)).numpy()

    yield {"root": root, "arts": arts, "reference": reference}


def _agreement(a, b):
    return float((a.argmax(1) == b.argmax(1)).mean())


@pytest.mark.parametrize("size", [SIZE, (96, 80), (40, 72)])
def test_fp32_matches_torch_at_dynamic_sizes(setup, size):
    folder, _manifest = setup["arts"]["fp32"]
    x, ref = setup["reference"](size)
    with runtime.load(folder, threads=2) as session:
        out = session.infer(x)
        assert "float32" in str(session.describe()["inference_precision"])  # not the plugin's bf16 default
    assert out.dtype == np.float32 and out.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert float(np.abs(out - ref).max()) <= 1e-4 * scale + 1e-4
    assert _agreement(out, ref) == 1.0


def test_manifest_and_weights(setup):
    folder32, m32 = setup["arts"]["fp32"]
    folder16, m16 = setup["arts"]["fp16"]
    assert (m32.backend, m32.primary, m32.precision) == ("openvino", "model.xml", "fp32")
    assert m32.extra["weights"] == "fp32" and m16.extra["weights"] == "fp16"
    assert "default_inference_precision" in m32.extra["cpu"]
    bin32, bin16 = (folder32 / "model.bin").stat().st_size, (folder16 / "model.bin").stat().st_size
    assert 0.45 < bin16 / bin32 < 0.55  # FP32 stayed FP32, FP16 halved the weights


def test_fp16_and_int8_loose(setup):
    x, ref = setup["reference"](SIZE)
    for precision, floor in (("fp16", 0.97), ("int8", 0.9)):
        with runtime.load(setup["arts"][precision][0], threads=2) as session:
            out = session.infer(x)
        assert out.dtype == np.float32
        assert _agreement(out, ref) >= floor, precision


def test_int8_keeps_attention_in_float(setup):
    import openvino as ov

    folder, manifest = setup["arts"]["int8"]
    quant = manifest.extra["quantization"]
    kept = set(quant["policy"]["float_nodes"])
    assert {"/head/sa/MatMul", "/head/sa/Softmax", "/head/sc/MatMul", "/head/sc/Sub"} <= kept
    assert manifest.calibration["count"] == 4 and len(manifest.calibration["hash"]) == 64
    assert quant["subset_size"] == 4
    model = ov.Core().read_model(str(folder / "model.xml"))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    fq = [op for op in ops.values() if op.get_type_name() == "FakeQuantize"]
    assert len(fq) > 10  # the convolutions are quantized
    for name in ("/head/sa/MatMul", "/head/sa/MatMul_1", "/head/sc/MatMul", "/head/sc/MatMul_1"):
        producers = {port.get_source_output().get_node().get_type_name() for port in ops[name].inputs()}
        assert "FakeQuantize" not in producers, name


def test_backend_shape_cache_and_async_queue(setup):
    folder, _ = setup["arts"]["fp32"]
    x1, _ = setup["reference"]((48, 48), n=1)
    x2, _ = setup["reference"]((64, 96), n=2)
    with runtime.load(folder, threads=2) as session:
        backend = session.backend
        a = session.infer(x1)
        b = session.infer(x2)
        session.infer(x1)
        assert backend.describe()["compiled_shapes"] == [[2, 3, 64, 96], [1, 3, 48, 48]]
        many = backend.infer_many([x1, x2, x1])
    np.testing.assert_allclose(many[0], a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(many[1], b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(many[2], a, rtol=0, atol=1e-5)


def test_static_artifact_and_run(setup):
    folder, _manifest = setup["arts"]["static"]
    _x, _ref = setup["reference"](SIZE, n=1)
    with runtime.load(folder) as session:
        assert session.input_spec.static_hw == SIZE
        with pytest.raises(InputError, match="static shape"):
            session.infer(np.zeros((1, 3, 32, 32), np.float32))
        image = np.zeros((50, 70, 3), np.uint8)
        assert session.run(image).shape == (50, 70)


def test_bare_xml_describes_itself(setup):
    folder, _ = setup["arts"]["fp32"]
    with runtime.load(folder / "model.xml") as session:
        assert session.manifest.num_classes == 8 and session.manifest.precision == "fp32"


def test_corrupt_and_missing_files_are_artifact_errors(setup, tmp_path):
    folder, _ = setup["arts"]["fp32"]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    xml = (broken / "model.xml").read_text()
    (broken / "model.xml").write_text(xml[: len(xml) // 2])
    with pytest.raises(ArtifactError, match="could not read .*corrupt or truncated"):
        runtime.load(broken, verify=False)
    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    data = (truncated / "model.bin").read_bytes()
    (truncated / "model.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError):
        runtime.load(truncated, verify=False)
    with pytest.raises(ArtifactError, match="sha256"):  # the manifest check catches it first by default
        runtime.load(truncated)
    (truncated / "model.bin").unlink()
    with pytest.raises(ArtifactError, match="model.bin is missing"):
        runtime.load(truncated / "model.xml")
    with pytest.raises(ConfigError, match="not available here"):
        runtime.load(folder, device="NOSUCHDEVICE")
    with pytest.raises(ConfigError, match="hint"):
        runtime.load(folder, hint="fastest")


def test_runtime_works_without_torch(setup):
    folder, _ = setup["arts"]["int8"]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from danet_deploy import runtime\n"
        f"s = runtime.load({str(folder)!r}, threads=1)\n"
        "m = s.run(np.zeros((40, 56, 3), np.uint8))\n"
        "assert m.shape == (40, 56)\n"
        "assert not any(k.startswith(('danet_deploy.export', 'danet_deploy.model.danet')) for k in sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_openvino_runs_a_bare_onnx_file(setup):
    """The backend also takes .onnx (OpenVINO reads it directly); metadata comes from the ONNX."""
    _folder, _ = setup["arts"]["fp32"]
    root = setup["root"]
    onnx_folder, _ = export(
        ExportRequest(
            str(root / "demo.safetensors"),
            arch="danet_demo",
            target="onnx",
            precision="fp32",
            input_size=SIZE,
            output=root / "onnx-fp32",
        ),
        log=lambda _m: None,
    )
    x, ref = setup["reference"](SIZE, n=1)
    with runtime.load(onnx_folder / "model.onnx", backend="openvino", threads=2) as session:
        assert session.backend.name == "openvino" and session.manifest.num_classes == 8
        out = session.infer(x)
    assert float(np.abs(out - ref).max()) <= 1e-4 * float(np.abs(ref).max()) + 1e-4


TEARDOWN = r"""
import gc, sys
import numpy as np
from danet_deploy import runtime
session = runtime.load(sys.argv[1], threads=2)
x = np.zeros((1, 3, 64, 64), np.float32)
for _ in range(3):
    session.backend.infer_many([x] * 6)
del session
gc.collect()
print("closed")
"""


def test_engine_teardown_after_throughput_mode_does_not_hang(setup):
    """Destroying the compiled model after infer_many once deadlocked (GIL held while OpenVINO joined threads)."""
    folder, _ = setup["arts"]["static"]
    result = subprocess.run([sys.executable, "-c", TEARDOWN, str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "closed" in result.stdout, result.stderr
