"""Files a manifest names for the torch reference: shipped-weights names and checkpoints.

An artifact's ``model.weights`` may only name a file of the package's weights folder, and its
``checkpoint`` entry only the copy of the checkpoint danet-export puts into the artifact folder,
verified by its sha256. A hand-edited manifest pointing anywhere else is a typed error (exit 2
from the CLIs) before the file is opened; the normal paths keep working.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from danet_deploy import runtime
from danet_deploy.errors import CheckpointError, ConfigError, ManifestError
from danet_deploy.export import ExportRequest, export
from danet_deploy.manifest import read_manifest
from danet_deploy.model.registry import weights_dir
from danet_deploy.verify.parity import run_parity

MODEL = "danet_demo"
SHIPPED = weights_dir() / "danet_demo.safetensors"


def _quiet(_: str) -> None:
    pass


def _cli(name: str, argv: list[str]) -> int:
    module = __import__(f"danet_deploy.cli.{name}", fromlist=["main"])
    return module.main(argv)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _copy(artifact: Path, dest: Path) -> Path:
    shutil.copytree(artifact, dest)
    return dest


def _edit(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _other_weights(path: Path) -> Path:
    """danet_demo's architecture with other (seeded) tensors: loadable, but not the exported model."""
    from safetensors.torch import save_file

    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model(MODEL, weights=False), seed=5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def preset_artifact(tmp_path_factory):
    path, _ = export(ExportRequest(MODEL, input_size=(64, 64), output=tmp_path_factory.mktemp("p") / "art"), log=_quiet)
    return path


@pytest.fixture(scope="module")
def checkpoint_artifact(tmp_path_factory):
    """An artifact exported from a user's checkpoint (a copy of the shipped weights, a name with a space)."""
    root = tmp_path_factory.mktemp("c")
    ckpt = root / "my weights.safetensors"
    shutil.copy(SHIPPED, ckpt)
    path, _ = export(ExportRequest(str(ckpt), input_size=(64, 64), output=root / "ck"), log=_quiet)
    return path


# -- model.weights: a shipped-weights name, nothing else --------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "/tmp/x/evil.safetensors",
        "../../../../tmp/x/evil.safetensors",
        "sub/danet_demo.safetensors",
        "..",
        "a\\b.safetensors",
        "c:evil.safetensors",
        "",
    ],
)
def test_manifest_weights_must_be_a_plain_shipped_file_name(preset_artifact, tmp_path, name):
    art = _copy(preset_artifact, tmp_path / "art")
    _edit(art, lambda d: d["model"].update(weights=name))
    with pytest.raises(ManifestError, match="model.weights"):
        read_manifest(art, verify=False)
    with pytest.raises(ManifestError, match="model.weights"):
        runtime.load(art, backend="torch")
    out = tmp_path / "out"
    assert (
        _cli("run", ["--model", str(art), str(_image(tmp_path / "img.png")), "-o", str(out), "--backend", "torch"]) == 2
    )
    assert _cli("parity", [str(art), "--generated", "1", "--no-manifest"]) == 2


@pytest.mark.parametrize("backend", ["torch", "torch-compile"])
def test_a_manifest_naming_a_pytorch_backend_does_not_swap_in_the_reference(preset_artifact, tmp_path, backend):
    """An edited manifest saying ``"backend": "torch"`` would run the PyTorch preset and ignore
    model.onnx: refused with the backend that runs the file; asked for explicitly, torch still runs
    the artifact's source model."""
    art = _copy(preset_artifact, tmp_path / "art")
    _edit(art, lambda d: d.update(backend=backend))
    with pytest.raises(ConfigError, match=f"names backend '{backend}'.*backend='onnxruntime'"):
        runtime.load(art)
    assert _cli("run", ["--model", str(art), str(_image(tmp_path / "img.png")), "-o", str(tmp_path / "out")]) == 2
    pytest.importorskip("torch")
    with runtime.load(art, backend="torch") as reference, runtime.load(art, backend="onnxruntime") as session:
        image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        assert (reference.run(image) == session.run(image)).mean() > 0.99


def test_config_weights_are_contained_in_the_weights_folder(tmp_path, monkeypatch):
    from danet_deploy.model import create_model_from_config, get_config, registry

    config = get_config(MODEL).to_dict()
    with pytest.raises(ConfigError, match="model.weights .* not a plain file name"):
        create_model_from_config(dict(config, weights="../../../tmp/evil.safetensors"))
    folder = tmp_path / "weights"  # a symbolic link in the weights folder that leads outside it
    folder.mkdir()
    (folder / "link.safetensors").symlink_to(shutil.copy(SHIPPED, tmp_path / "outside.safetensors"))
    monkeypatch.setattr(registry, "weights_dir", lambda: folder.resolve())
    with pytest.raises(ConfigError, match="leads outside the shipped weights folder"):
        create_model_from_config(dict(config, weights="link.safetensors"))


# -- checkpoint: the copy inside the artifact, verified ---------------------------------------------
@pytest.mark.parametrize("where", ["/etc/passwd", "absolute", "../outside.safetensors", None])
def test_manifest_checkpoint_outside_the_folder_is_never_opened(checkpoint_artifact, tmp_path, where):
    outside = shutil.copy(SHIPPED, tmp_path / "outside.safetensors")  # loadable: the old code would PASS with it
    name = str(outside) if where == "absolute" else where
    art = _copy(checkpoint_artifact, tmp_path / "art")
    _edit(art, lambda d: d["checkpoint"].update(path=name, sha256=_sha(Path(outside))))
    with pytest.raises(ManifestError, match="checkpoint") as info:
        run_parity(art, generated=1, write_manifest=False)
    assert "--reference" in str(info.value)
    with pytest.raises(ManifestError, match="checkpoint"):
        runtime.load(art, backend="torch")
    assert _cli("parity", [str(art), "--generated", "1", "--no-manifest"]) == 2
    assert (
        _cli(
            "run",
            ["--model", str(art), str(_image(tmp_path / "img.png")), "-o", str(tmp_path / "out"), "--backend", "torch"],
        )
        == 2
    )


def test_swapped_checkpoint_is_named_not_blamed_on_the_artifact(checkpoint_artifact, tmp_path):
    art = _copy(checkpoint_artifact, tmp_path / "art")
    carried = art / "checkpoint.safetensors"
    _other_weights(carried)
    # the files hash alone catches it
    with pytest.raises(ManifestError, match="checkpoint.safetensors does not match its sha256"):
        run_parity(art, generated=1, write_manifest=False)
    assert _cli("parity", [str(art), "--generated", "1", "--no-manifest"]) == 2
    # files hash re-recorded by hand: checkpoint.sha256 still disagrees, even with verify=False
    _edit(art, lambda d: d["files"].update({"checkpoint.safetensors": _sha(carried)}))
    with pytest.raises(ManifestError, match="checkpoint"):
        run_parity(art, generated=1, write_manifest=False)
    with pytest.raises(ManifestError, match="checkpoint"):
        runtime.load(art, backend="torch", verify=False)
    assert _cli("parity", [str(art), "--generated", "1", "--no-manifest"]) == 2
    # a checkpoint without a hash in files is never loaded unchecked
    unlisted = _copy(checkpoint_artifact, tmp_path / "unlisted")
    _edit(unlisted, lambda d: d["files"].pop("checkpoint.safetensors"))
    with pytest.raises(ManifestError, match="not listed"):
        runtime.load(unlisted, backend="torch")


def test_checkpoint_artifact_carries_its_checkpoint_and_moves_with_it(checkpoint_artifact, tmp_path):
    manifest = json.loads((checkpoint_artifact / "manifest.json").read_text())
    entry = manifest["checkpoint"]
    assert entry["path"] == "checkpoint.safetensors" and entry["file_name"] == "my weights.safetensors"
    assert entry["sha256"] == _sha(SHIPPED) == manifest["files"]["checkpoint.safetensors"]
    assert not any(str(tmp_path.parent) in str(v) for v in entry.values())  # no machine path recorded
    moved = _copy(checkpoint_artifact, tmp_path / "elsewhere" / "ck")  # the original checkpoint is not needed
    out = tmp_path / "out"
    assert (
        _cli("run", ["--model", str(moved), str(_image(tmp_path / "img.png")), "-o", str(out), "--backend", "torch"])
        == 0
    )
    assert (out / "img_mask.png").is_file()
    assert _cli("parity", [str(moved), "--generated", "1", "--no-manifest"]) == 0
    report = run_parity(moved, generated=1, write_manifest=False)
    assert report.passed and report.reference == str(moved / "checkpoint.safetensors")


def test_parity_refuses_a_reference_of_other_classes_naming_the_fix(preset_artifact, tmp_path, capsys):
    with pytest.raises(ConfigError, match="predicts 19 classes, the artifact 8.*leave out --reference"):
        run_parity(preset_artifact, reference="danet_edge_r18_d8", generated=1, write_manifest=False)
    assert (
        _cli("parity", [str(preset_artifact), "--reference", "danet_edge_r18_d8", "--generated", "1", "--no-manifest"])
        == 2
    )
    err = capsys.readouterr().err
    assert "predicts 19 classes" in err and "Traceback" not in err


def test_parity_names_a_reference_that_is_not_the_exported_checkpoint(checkpoint_artifact, tmp_path, capsys):
    other = _other_weights(tmp_path / "other.safetensors")
    report = run_parity(checkpoint_artifact, reference=str(other), generated=1, write_manifest=False)
    assert not report.passed
    assert "not the checkpoint this artifact was exported from" in capsys.readouterr().err
    report = run_parity(checkpoint_artifact, reference=str(SHIPPED), generated=1, write_manifest=False)
    assert report.passed and "not the checkpoint" not in capsys.readouterr().err


def test_shipped_preset_artifact_still_runs_on_torch(preset_artifact, tmp_path):
    out = tmp_path / "out"
    assert (
        _cli(
            "run",
            ["--model", str(preset_artifact), str(_image(tmp_path / "img.png")), "-o", str(out), "--backend", "torch"],
        )
        == 0
    )
    assert _cli("parity", [str(preset_artifact), "--generated", "1", "--no-manifest"]) == 0


def test_export_refuses_a_checkpoint_that_changed_while_it_was_read(tmp_path):
    from danet_deploy.manifest import carry_checkpoint

    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(CheckpointError, match="changed while it was exported"):
        carry_checkpoint(SHIPPED, {"path": "checkpoint.safetensors", "sha256": "0" * 64}, work)


def test_per_layer_reference_is_rebuilt_from_the_carried_checkpoint(checkpoint_artifact, tmp_path):
    pytest.importorskip("onnx")
    from danet_deploy.verify.perlayer_run import run_per_layer

    moved = _copy(checkpoint_artifact, tmp_path / "moved")
    report = run_per_layer(moved, generated=1)
    assert report.layers
    bad = _copy(checkpoint_artifact, tmp_path / "bad")
    _edit(bad, lambda d: d["checkpoint"].update(path=str(SHIPPED)))
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        run_per_layer(bad, generated=1)


def test_per_layer_bundle_onnx_outside_the_folder_is_refused(preset_artifact, tmp_path):
    pytest.importorskip("onnx")
    from danet_deploy.verify.perlayer_run import run_per_layer

    shutil.copy(preset_artifact / "model.onnx", tmp_path / "outside.onnx")
    art = _copy(preset_artifact, tmp_path / "art")
    (art / "model.onnx").rename(art / "model.plan")

    def edit(data):
        data["files"] = {"model.plan": data["files"].pop("model.onnx")}
        data.update(primary="model.plan", extra={"bundle": {"onnx": "../outside.onnx"}})

    _edit(art, edit)
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        run_per_layer(art, generated=1)
