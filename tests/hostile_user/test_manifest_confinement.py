"""Every file an artifact's manifest names stays inside the artifact folder: absolute paths,
``..``, symlinks, TensorRT bundles, torch checkpoints, OpenVINO weights and ONNX external data
that point outside are refused by name before anything is opened or hashed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hostile_user.hostile_support import (
    MODEL,
    copy_artifact,
    edit_manifest,
    quiet,
    run_cli,
    sha256_of,
    snapshot,
    write_image,
)

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import ArtifactError, ManifestError
from danet_deploy.export import ExportRequest, export


def test_absolute_primary_outside_the_folder_is_refused(artifact, tmp_path, capsys):
    evil = tmp_path / "elsewhere" / "evil.onnx"
    evil.parent.mkdir()
    shutil.copy(artifact / "model.onnx", evil)
    art = copy_artifact(artifact, tmp_path / "art")
    edit_manifest(art, primary=str(evil), files={str(evil): sha256_of(evil)})
    before = snapshot(tmp_path)
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art)
    with pytest.raises(ManifestError):
        runtime.load(art, verify=False)  # containment holds without hash verification too
    image = write_image(tmp_path / "elsewhere" / "img.png")
    before = snapshot(tmp_path)
    assert run_cli("run", ["--model", str(art), str(image), "-o", str(tmp_path / "out")]) == 2
    assert "outside the artifact folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_dotdot_file_is_never_opened_or_hashed(artifact, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    art = copy_artifact(artifact, tmp_path / "deep" / "art")
    files = json.loads((art / "manifest.json").read_text())["files"]
    files["../../secret.txt"] = sha256_of(secret)
    edit_manifest(art, files=files)
    hashed = []
    import danet_deploy.manifest as manifest_module

    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda p: hashed.append(Path(p).resolve()) or real(p))
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art)
    assert secret.resolve() not in hashed and all(p.is_relative_to(art.resolve()) for p in hashed)


def test_symlink_leaving_the_folder_is_refused(artifact, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(artifact / "model.onnx", outside)
    art = copy_artifact(artifact, tmp_path / "art")
    (art / "model.onnx").unlink()
    (art / "model.onnx").symlink_to(outside)  # same bytes, same hash: only the link gives it away
    with pytest.raises(ManifestError, match="symbolic link"):
        runtime.load(art)
    inside = copy_artifact(artifact, tmp_path / "inside")  # a link that stays inside is fine
    (inside / "real.onnx").write_bytes((inside / "model.onnx").read_bytes())
    (inside / "model.onnx").unlink()
    (inside / "model.onnx").symlink_to("real.onnx")
    runtime.load(inside).close()


def test_tensorrt_bundle_onnx_outside_is_refused_before_anything_else(artifact, tmp_path):
    from danet_deploy.export.tensorrt_build import build_engine_from_bundle

    shutil.copy(artifact / "model.onnx", tmp_path / "evil.onnx")
    bundle = copy_artifact(artifact, tmp_path / "bundle")
    info = {
        "stage": "prepared",
        "onnx": "../evil.onnx",
        "profiles": [{"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}],
        "attention": {"chunks": 1, "output_stride": 8, "feature_channels": 128},
    }
    edit_manifest(bundle, target="tensorrt", extra={"tensorrt": info})
    before = snapshot(tmp_path)
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        build_engine_from_bundle(bundle, tmp_path / "engine", log=quiet)
    assert snapshot(tmp_path) == before


def test_torch_backend_checkpoint_named_by_a_manifest_must_be_inside(artifact, tmp_path):
    pytest.importorskip("torch")
    from danet_deploy.model.registry import weights_dir

    art = copy_artifact(artifact, tmp_path / "art")
    edit_manifest(art, checkpoint={"path": str(weights_dir() / "danet_demo.safetensors")})
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art, backend="torch")


def test_openvino_weights_beside_the_ir_are_held_to_the_manifest_rules(tmp_path, capsys):
    """``read_model`` loads ``model.bin`` beside ``model.xml`` without the manifest naming it: that
    file must lie inside the folder and carry a hash like every listed file."""
    pytest.importorskip("openvino")
    ir, _ = export(ExportRequest(MODEL, target="openvino", input_size=(64, 64), output=tmp_path / "ir"), log=quiet)
    outside = tmp_path / "outside.bin"
    shutil.copy(ir / "model.bin", outside)
    evil = copy_artifact(ir, tmp_path / "evil")
    files = json.loads((evil / "manifest.json").read_text())["files"]
    edit_manifest(evil, files={k: v for k, v in files.items() if k != "model.bin"})
    (evil / "model.bin").unlink()
    (evil / "model.bin").symlink_to(outside)
    with pytest.raises(ManifestError, match="symbolic link leading outside"):
        runtime.load(evil)
    assert (
        run_cli("run", ["--model", str(evil), str(write_image(tmp_path / "img.png")), "-o", str(tmp_path / "out")]) == 2
    )
    unlisted = copy_artifact(ir, tmp_path / "unlisted")  # inside, but its bytes unchecked: refused too
    edit_manifest(unlisted, files={k: v for k, v in files.items() if k != "model.bin"})
    with pytest.raises(ManifestError, match="has no hash"):
        runtime.load(unlisted)
    runtime.load(ir).close()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, backend):
    """A model file can name other files too (ONNX external data): both engines refuse `../`."""
    onnx = pytest.importorskip("onnx")
    if backend == "openvino":
        pytest.importorskip("openvino")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    np.arange(4, dtype=np.float32).tofile(tmp_path / "secret.bin")
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "art").mkdir()
    onnx.save(model, tmp_path / "art" / "model.onnx")
    with pytest.raises(ArtifactError, match="outside|escapes"):
        runtime.load(tmp_path / "art" / "model.onnx", backend=backend)
