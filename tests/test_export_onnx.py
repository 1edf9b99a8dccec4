"""ONNX export + ONNX Runtime backend + parity against the reference: the spine every target hangs from."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from danet_deploy import runtime  # noqa: E402 after importorskip
from danet_deploy.errors import (  # noqa: E402 after importorskip
    ArtifactError,
    CheckpointError,
    ConfigError,
    InputError,
    ManifestError,
    UnknownModelError,
)
from danet_deploy.export import ExportRequest, export  # noqa: E402 after importorskip
from danet_deploy.verify.parity import compare_logits, run_parity  # noqa: E402 after importorskip

MODEL = "danet_edge_r18_d8"


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def static_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "static"
    path, _ = export(ExportRequest(MODEL, input_size=(64, 96), output=out), log=_quiet)
    return path


@pytest.fixture(scope="module")
def dynamic_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "dynamic"
    path, _ = export(
        ExportRequest(MODEL, input_size=(64, 64), dynamic=True, output=out, attention_chunks=3), log=_quiet
    )
    return path


@pytest.fixture(scope="module")
def reference():
    return runtime.load(MODEL, threads=2)


def _tensor(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_manifest_records_everything(static_artifact):
    manifest = json.loads((static_artifact / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["target"] == "onnx" and manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["input"]["shape"] == [1, 3, 64, 96] and manifest["input"]["dtype"] == "float32"
    assert manifest["output"]["shape"] == [1, 19, 64, 96]
    assert manifest["model"]["name"] == MODEL and len(manifest["model"]["class_names"]) == 19
    assert manifest["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert set(manifest["files"]) == {"model.onnx"} and len(manifest["files"]["model.onnx"]) == 64
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["tools"])
    assert manifest["export"]["opset"] == 17 and manifest["export"]["simplifier"] == "onnxslim"
    assert manifest["export"]["attention_plan"]["chunks"] == 1
    assert not list(static_artifact.parent.glob(".static.tmp-*"))  # nothing half-written left behind


def test_onnx_graph_is_checked_typed_and_self_describing(static_artifact):
    model = onnx.load(static_artifact / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model_name"] == MODEL and json.loads(meta["class_names"])[0] == "road"
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 19, 64, 96]
    assert len(model.graph.output) == 1  # only the fused output


def test_static_onnx_matches_reference(static_artifact, reference):
    with runtime.load(static_artifact, threads=2) as session:
        x = _tensor((1, 3, 64, 96))
        report = compare_logits(reference.infer(x), session.infer(x), precision="fp32")
        assert report.passed, report.table()
        with pytest.raises(InputError, match="static shape"):
            session.infer(_tensor((1, 3, 64, 64)))


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 77, 93), (1, 3, 120, 40), (3, 3, 33, 35)])
def test_dynamic_onnx_at_unseen_shapes(dynamic_artifact, reference, shape):
    with runtime.load(dynamic_artifact, threads=2) as session:
        assert session.input_spec.is_dynamic
        x = _tensor(shape, seed=sum(shape))
        report = compare_logits(reference.infer(x), session.infer(x), precision="fp32")
        assert report.passed, report.table()


def test_run_images_any_size_and_batch(dynamic_artifact, static_artifact, reference):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 70), (64, 64), (50, 70))]
    for artifact in (dynamic_artifact, static_artifact):
        with runtime.load(artifact) as session:
            masks, logits = session.run(images, return_logits=True)
            assert [m.shape for m in masks] == [(50, 70), (64, 64), (50, 70)]
            assert masks[0].dtype == np.uint8 and logits[0].shape == (19, 50, 70)
            single = session.run(images[1])
            assert single.shape == (64, 64)
    with runtime.load(dynamic_artifact) as session:
        ref_masks = reference.run(images)
        for a, b in zip(session.run(images), ref_masks):
            assert (a == b).mean() > 0.999


def test_sliding_window_equals_whole_image_when_crop_is_image(dynamic_artifact):
    image = np.random.default_rng(2).integers(0, 256, (72, 88, 3), dtype=np.uint8)
    with runtime.load(dynamic_artifact) as session:
        _whole_mask, whole = session.run(image, return_logits=True)
        _tiled_mask, tiled = session.run(image, tile=(72, 88), return_logits=True)
        np.testing.assert_array_equal(whole, tiled)
        mask = session.run(image, tile=(48, 48), stride=(32, 32))
        assert mask.shape == (72, 88)
        with pytest.raises(ConfigError, match="stride"):
            session.run(image, tile=(48, 48), stride=(64, 64))


def test_input_errors(static_artifact):
    with runtime.load(static_artifact) as session:
        with pytest.raises(InputError, match="float32"):
            session.infer(np.zeros((1, 3, 64, 96), np.float64))
        with pytest.raises(InputError, match="3 channels"):
            session.infer(np.zeros((1, 64, 96, 3), np.float32))
        with pytest.raises(InputError, match="4-D"):
            session.infer(np.zeros((3, 64, 96), np.float32))
        bad = np.zeros((1, 3, 64, 96), np.float32)
        bad[0, 0, 0, 0] = np.nan
        with pytest.raises(InputError, match="NaN"):
            session.infer(bad)
        with pytest.raises(InputError, match="uint8"):
            session.run(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(InputError, match="channels-first"):
            session.run(np.zeros((3, 10, 10), np.uint8))
        with pytest.raises(InputError, match="RGBA"):
            session.run(np.zeros((10, 10, 4), np.uint8))
        with pytest.raises(InputError, match="grayscale"):
            session.run(np.zeros((10, 10), np.uint8))


def test_artifact_errors(static_artifact, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist|neither"):
        runtime.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        runtime.load(tmp_path / "empty")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(static_artifact, broken)
    data = (broken / "model.onnx").read_bytes()
    (broken / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match="sha256"):
        runtime.load(broken)
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        runtime.load(broken, verify=False)
    manifest = json.loads((static_artifact / "manifest.json").read_text())
    manifest["format_version"] = 99
    shutil.copytree(static_artifact, tmp_path / "future")
    (tmp_path / "future" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="format version"):
        runtime.load(tmp_path / "future")


def test_bare_onnx_file_loads_from_its_metadata(static_artifact):
    with runtime.load(static_artifact / "model.onnx") as session:
        assert session.class_names[0] == "road" and session.manifest.model["name"] == MODEL
        assert session.run(np.zeros((64, 96, 3), np.uint8)).shape == (64, 96)


def test_export_request_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown target"):
        ExportRequest(MODEL, target="coreml")
    with pytest.raises(ConfigError, match="positive"):
        ExportRequest(MODEL, input_size=(0, 64))
    with pytest.raises(UnknownModelError):
        export(ExportRequest("danet_nope", output=tmp_path / "x"), log=_quiet)
    (tmp_path / "ckpt.pth").write_bytes(b"")  # without --arch the file is read to infer it: empty
    with pytest.raises(CheckpointError, match="is empty"):
        export(ExportRequest(str(tmp_path / "ckpt.pth"), output=tmp_path / "x"), log=_quiet)
    (tmp_path / "ckpt.pth").write_bytes(b"not a checkpoint")  # unreadable
    with pytest.raises(CheckpointError, match="weights-only"):
        export(ExportRequest(str(tmp_path / "ckpt.pth"), output=tmp_path / "x"), log=_quiet)
    with pytest.raises(ConfigError, match="unknown model option"):
        ExportRequest(MODEL, model_options={"colour": "red"})
    assert not (tmp_path / "x").exists()


def test_checkpoint_export_records_hash(tmp_path, torch):
    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model(MODEL, weights=False, num_classes=3), seed=9)
    ckpt = tmp_path / "mine.pth"
    torch.save(model.state_dict(), ckpt)
    path, manifest = export(
        ExportRequest(str(ckpt), arch=MODEL, num_classes=3, input_size=(48, 48), output=tmp_path / "ck"), log=_quiet
    )
    assert manifest.checkpoint["sha256"] and manifest.num_classes == 3
    report = run_parity(path, generated=1)
    assert report.passed, report.table()
    assert report.miou_vs_labels is None  # 3 classes: generated labels do not apply


def test_parity_detects_a_wrong_model(static_artifact, tmp_path):
    report = run_parity(static_artifact, reference="danet_demo" if False else MODEL, generated=1, write_manifest=False)
    assert report.passed
    ref = _tensor((1, 5, 8, 8))
    bad = ref.copy()
    bad[0, :, :4] = bad[0, ::-1, :4]  # swap classes on half the image
    report = compare_logits(ref, bad, precision="fp32")
    assert not report.passed and {c.name for c in report.failures} >= {"argmax_agreement", "cosine"}
    nan = ref.copy()
    nan[0, 0, 0, 0] = np.nan
    assert not compare_logits(ref, nan, precision="int8").passed


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_cli_export_verify_and_exit_codes(tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "danet_deploy.cli.export",
        "--model",
        MODEL,
        "--input-size",
        "48x64",
        "--output",
        str(out),
        "--verify",
        "--verify-images",
        "1",
        "--json",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["parity"]["passed"] and Path(summary["artifact"]) == out
    assert json.loads((out / "manifest.json").read_text())["parity"]["argmax_agreement"] == 1.0
    bad = subprocess.run(
        [sys.executable, "-m", "danet_deploy.cli.export", "--model", "danet_nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown model" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "danet_deploy.cli.export", "--input-size", "0x5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "positive" in bad.stderr
    parity = subprocess.run(
        [sys.executable, "-m", "danet_deploy.cli.parity", str(out), "--generated", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert parity.returncode == 0 and "PASS" in parity.stdout, parity.stderr


def test_cli_run_writes_masks_and_overlays(static_artifact, tmp_path):
    from PIL import Image

    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(img)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.run",
            "--model",
            str(static_artifact),
            str(img),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    mask = np.asarray(Image.open(tmp_path / "out" / "scene_mask.png"))
    assert mask.shape == (40, 50)
    assert np.asarray(Image.open(tmp_path / "out" / "scene_overlay.png")).shape == (40, 50, 3)


NO_TORCH = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from danet_deploy import runtime
with runtime.load(sys.argv[1]) as s:
    m = s.run(np.zeros((30, 40, 3), np.uint8))
assert m.shape == (30, 40)
assert "torch" not in sys.modules
print("ok")
"""


def test_runtime_works_without_torch(static_artifact):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(static_artifact)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_trained_demo_model_onnx_parity_with_labels(tmp_path):
    path, _ = export(ExportRequest("danet_demo", input_size=(128, 192), output=tmp_path / "demo"), log=_quiet)
    report = run_parity(path, generated=2)
    assert report.passed, report.table()
    assert report.miou_vs_labels is not None and report.miou_vs_labels == pytest.approx(report.reference_miou_vs_labels)
    assert report.reference_miou_vs_labels > 0.5  # the shipped weights, on generated val scenes
    assert json.loads((path / "manifest.json").read_text())["parity"]["passed"] is True
