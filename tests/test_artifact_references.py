"""Files a model file makes its engine read are found by content, not by suffix, and held to the
manifest's rules: inside the folder, listed, hashed.

An OpenVINO IR is XML whatever it is called: a manifest naming it ``model.txt`` skipped the
``.bin`` check, so an unlisted ``model.bin`` symlinked outside the folder was loaded with
``verify=True``. An ONNX file's external data is read by ONNX Runtime and OpenVINO alike: a data
file inside the folder but not in the manifest was loaded unhashed.
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from danet_deploy import runtime  # noqa: E402 after importorskip
from danet_deploy.engine_reads import referenced_files  # noqa: E402 after importorskip
from danet_deploy.errors import ArtifactError, ManifestError  # noqa: E402 after importorskip
from danet_deploy.export import ExportRequest, export  # noqa: E402 after importorskip
from danet_deploy.util.files import sha256_file  # noqa: E402 after importorskip


def _quiet(_: str) -> None:
    pass


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, data: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def onnx_artifact(demo_artifact_64):
    """The suite's shared static 64x64 danet_demo ONNX artifact (tests copy it before changing it)."""
    return demo_artifact_64


@pytest.fixture(scope="module")
def ir_artifact(tmp_path_factory):
    pytest.importorskip("openvino")
    path, _ = export(
        ExportRequest("danet_demo", target="openvino", input_size=(64, 64), output=tmp_path_factory.mktemp("i") / "ir"),
        log=_quiet,
    )
    return path


def _renamed_ir(ir: Path, dest: Path, bin_listed: bool) -> Path:
    """The IR under ``model.txt`` (listed and hashed), its ``model.bin`` listed only if asked."""
    folder = shutil.copytree(ir, dest)
    (folder / "model.xml").rename(folder / "model.txt")
    data = _manifest(folder)
    files = {k: v for k, v in data["files"].items() if k not in ("model.xml", "model.bin")}
    files["model.txt"] = sha256_file(folder / "model.txt")
    if bin_listed:
        files["model.bin"] = data["files"]["model.bin"]
    _write_manifest(folder, {**data, "primary": "model.txt", "files": files})
    return folder


def test_an_ir_under_another_suffix_has_its_weights_checked(ir_artifact, tmp_path):
    outside = tmp_path / "outside.bin"
    shutil.copy(ir_artifact / "model.bin", outside)
    evil = _renamed_ir(ir_artifact, tmp_path / "evil", bin_listed=False)
    (evil / "model.bin").unlink()
    (evil / "model.bin").symlink_to(outside)
    for verify in (True, False):  # containment holds without hash checks too
        with pytest.raises(ManifestError, match="symbolic link leading outside"):
            runtime.load(evil, verify=verify)
    unlisted = _renamed_ir(ir_artifact, tmp_path / "unlisted", bin_listed=False)
    with pytest.raises(ManifestError, match="model.bin.*no hash"):
        runtime.load(unlisted)
    listed = _renamed_ir(ir_artifact, tmp_path / "listed", bin_listed=True)  # a correct one still loads
    with runtime.load(listed) as session:
        assert session.run(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64)


def test_an_ir_is_recognised_by_content(ir_artifact, tmp_path):
    shutil.copy(ir_artifact / "model.xml", tmp_path / "weights.onnx")  # XML whatever the suffix says
    assert referenced_files(tmp_path / "weights.onnx") == ["weights.bin"]
    assert referenced_files(ir_artifact / "model.bin") == []


def _external(onnx_artifact: Path, dest: Path, location: str = "weights.data") -> Path:
    """The ONNX artifact with its initializers moved to external data ``location`` (model.onnx re-hashed)."""
    folder = shutil.copytree(onnx_artifact, dest)
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,
    )
    data = _manifest(folder)
    data["files"]["model.onnx"] = sha256_file(folder / "model.onnx")
    _write_manifest(folder, data)
    return folder


def test_onnx_external_data_must_be_listed_and_hashed(onnx_artifact, tmp_path):
    unlisted = _external(onnx_artifact, tmp_path / "unlisted")
    assert referenced_files(unlisted / "model.onnx") == ["weights.data"]
    with pytest.raises(ManifestError, match="weights.data.*no hash"):
        runtime.load(unlisted)
    listed = _external(onnx_artifact, tmp_path / "listed")
    data = _manifest(listed)
    data["files"]["weights.data"] = sha256_file(listed / "weights.data")
    _write_manifest(listed, data)
    runtime.load(listed).close()
    (listed / "weights.data").write_bytes(b"\0" * (listed / "weights.data").stat().st_size)  # swapped weights
    with pytest.raises(ManifestError, match="weights.data does not match its sha256"):
        runtime.load(listed)


def test_onnx_external_data_linked_outside_is_refused_for_a_bare_file_too(onnx_artifact, tmp_path):
    folder = _external(onnx_artifact, tmp_path / "art")
    outside = tmp_path / "outside.data"
    (folder / "weights.data").rename(outside)
    (folder / "weights.data").symlink_to(outside)
    with pytest.raises(ArtifactError, match="outside"):
        runtime.load(folder / "model.onnx")


def test_without_the_onnx_package_external_data_is_refused_not_skipped(onnx_artifact, tmp_path, monkeypatch):
    folder = _external(onnx_artifact, tmp_path / "art")
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("no onnx here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ArtifactError, match="pip install onnx"):
        referenced_files(folder / "model.onnx")
    assert referenced_files(onnx_artifact / "model.onnx") == []  # no external data: nothing to check
