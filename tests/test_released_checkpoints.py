"""``danet-export --model FILE`` (no --arch) for checkpoints laid out as the released DANet files.

Each released configuration is built with random weights, saved in its release's key layout and
container, exported to ONNX and run with ONNX Runtime; parity is checked against the reference
rebuilt from the manifest and, for mmsegmentation's layout, against an independent model written
from mmsegmentation's code (tests/released_layouts.py). R-101 and the 150/21-class variants are
``slow``; the R-50 Cityscapes file (the most downloaded) runs by default.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from released_layouts import (
    MMSegDANet,
    mmengine_training_checkpoint,
    mmseg_config_text,
    mmseg_container,
    official_container,
    official_state,
    randomize,
    save_legacy_with_numpy1_names,
)

from danet_deploy import runtime
from danet_deploy.cli.export import main as export_main
from danet_deploy.model import get_config

SIZE = (64, 96)


def _export(path, out, *extra):
    """Run danet-export in-process; returns (exit code, summary, manifest)."""
    code = export_main(
        [
            "--model",
            str(path),
            "--input-size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--output",
            str(out),
            "--verify",
            "--verify-images",
            "1",
            "--json",
            *extra,
        ]
    )
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None
    return code, manifest


def _assert_matches(artifact, oracle, torch):
    """ONNX Runtime's logits on a random input equal the oracle model's (relative to the logit range)."""
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    with runtime.load(artifact, threads=2) as session:
        got = session.infer(x)
    with torch.no_grad():
        want = oracle(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.999


def _mmseg_checkpoint(torch, tmp_path, depth, dataset):
    """A model-zoo file of mmsegmentation's release ``dataset``, and mmsegmentation's own model of it."""
    preset = get_config(f"danet_mmseg_r{depth}_d8_{dataset}")
    oracle = randomize(MMSegDANet(depth, preset.num_classes, preset.align_corners), seed=depth)
    path = tmp_path / f"danet_r{depth}-d8_{dataset}.pth"
    torch.save(mmseg_container(oracle, preset.class_names, mmseg_config_text(depth, preset.num_classes, dataset)), path)
    return oracle, path


@pytest.fixture(scope="module")
def mmseg_r50_cityscapes(tmp_path_factory):
    import torch

    return _mmseg_checkpoint(torch, tmp_path_factory.mktemp("mmseg"), 50, "cityscapes")


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_mmseg_r50_cityscapes_exports_with_one_command(mmseg_r50_cityscapes, tmp_path, torch):
    oracle, path = mmseg_r50_cityscapes
    out = tmp_path / "art"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.export",
            "--model",
            str(path),
            "--input-size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--output",
            str(out),
            "--verify",
            "--verify-images",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parity"]["passed"]
    # the choice and what the weights could not tell are said, not silent
    assert (
        "-> preset danet_mmseg_r50_d8_cityscapes (inferred from the weights and the checkpoint's config)"
        in result.stderr
    )
    assert "the checkpoint's config (meta['config']) says align_corners=False" in result.stderr
    assert "meta (dict of" in result.stderr and "auxiliary_head" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "danet_mmseg_r50_d8_cityscapes"
    assert manifest["model"]["align_corners"] is False and manifest["model"]["stem_width"] == 32
    ckpt = manifest["checkpoint"]
    assert ckpt["chosen_by"] == "inferred from the weights and the checkpoint's config"
    assert ckpt["layout"] == "mmsegmentation" and ckpt["candidates"] == ["danet_mmseg_r50_d8_cityscapes"]
    assert ckpt["config"]["align_corners"] is False
    # one protocol per artifact, where danet-eval reads it: the file's own (its stored config), as (H, W)
    protocol = manifest["export"]["test_protocol"]
    assert "test_protocol" not in ckpt and protocol["source"] == "meta['config']"
    assert (protocol["mode"], protocol["resize"], protocol["align_corners"]) == ("whole", [1024, 2048], False)
    assert set(ckpt["ignored"]) == {"meta", "optimizer"} and ckpt["inferred"]["training_heads"] == ["auxiliary_head"]
    _assert_matches(out, oracle, torch)  # mmsegmentation's own forward, align_corners=False


def test_danet_eval_of_the_checkpoint_file_itself_uses_its_own_protocol(mmseg_r50_cityscapes, torch):
    from danet_deploy.verify.evaluate import EvalRequest, model_protocol

    _, path = mmseg_r50_cityscapes
    with runtime.load(path, threads=2) as session:  # the torch reference, built from the file
        protocol = model_protocol(session.manifest, EvalRequest(models=(str(path),), data="folder:unused"))
    assert protocol.source == "meta['config']" and (protocol.mode, protocol.resize) == ("whole", (1024, 2048))


def test_mmseg_weights_without_their_config_are_refused_naming_each_choice(mmseg_r50_cityscapes, tmp_path, torch):
    oracle, _ = mmseg_r50_cityscapes
    path = tmp_path / "bare.pth"
    torch.save(oracle.state_dict(), path)  # the 512x1024 and 769x769 releases' weights are alike
    result = subprocess.run(
        [sys.executable, "-m", "danet_deploy.cli.export", "--model", str(path), "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and not (tmp_path / "x").exists()
    assert "fits 2 presets that build different networks" in result.stderr
    assert "--arch danet_mmseg_r50_d8_cityscapes;" in result.stderr
    assert "--arch danet_mmseg_r50_d8_cityscapes_769." in result.stderr


@pytest.mark.slow
def test_mmengine_769_training_checkpoint_exports_as_trained(torch, tmp_path):
    # mmseg 1.x training output of the 769x769 config: message_hub, optimizer, meta['cfg'] with align_corners=True
    oracle = randomize(MMSegDANet(50, 19, align_corners=True), seed=9)
    path = tmp_path / "iter_40000.pth"
    mmengine_training_checkpoint(
        oracle,
        path,
        get_config("danet_mmseg_r50_d8_cityscapes").class_names,
        mmseg_config_text(50, 19, "cityscapes_769"),
        optimizer_mb=8,
    )
    code, manifest = _export(path, tmp_path / "art")
    assert code == 0 and manifest["parity"]["passed"]
    assert manifest["model"]["name"] == "danet_mmseg_r50_d8_cityscapes_769" and manifest["model"]["align_corners"]
    ckpt = manifest["checkpoint"]
    # danet-eval runs it as the 769 release was measured, with no --mode/--crop/--stride given
    from danet_deploy.manifest import read_manifest
    from danet_deploy.verify.evaluate import EvalRequest, model_protocol

    protocol = model_protocol(
        read_manifest(tmp_path / "art"), EvalRequest(models=(str(tmp_path / "art"),), data="folder:unused")
    )
    assert (protocol.mode, protocol.crop, protocol.stride, protocol.align_corners) == (
        "slide",
        (769, 769),
        (513, 513),
        True,
    )
    assert protocol.resize == (1025, 2049) and protocol.source == "meta['cfg']" and "test_protocol" not in ckpt
    assert {"message_hub", "optimizer", "param_schedulers"} <= set(ckpt["ignored"])
    _assert_matches(tmp_path / "art", oracle, torch)  # mmsegmentation's forward with align_corners=True


def test_explicit_arch_mismatch_names_the_release(mmseg_r50_cityscapes, tmp_path):
    _, path = mmseg_r50_cityscapes
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.export",
            "--model",
            str(path),
            "--arch",
            "danet_r50_d8",
            "--output",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit --arch danet_r50_d8" in result.stderr
    assert "3->64->64->128 vs checkpoint deep stem 3->32->32->64" in result.stderr
    assert "--arch danet_mmseg_r50_d8_cityscapes" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_arch_overrides_what_the_file_says_with_a_warning(mmseg_r50_cityscapes, tmp_path, torch):
    oracle, path = mmseg_r50_cityscapes
    notes = []
    from danet_deploy.export import ExportRequest, export

    _, manifest = export(
        ExportRequest(str(path), output=tmp_path / "769", input_size=SIZE, arch="danet_mmseg_r50_d8_cityscapes_769"),
        log=notes.append,
    )
    assert manifest.model["align_corners"] is True and manifest.checkpoint["chosen_by"] == "--arch"
    assert any(n.startswith("warning:") and "says align_corners=False" in n for n in notes)
    oracle.align_corners = True  # what the user asked for
    try:
        _assert_matches(tmp_path / "769", oracle, torch)
    finally:
        oracle.align_corners = False


def test_model_options_describe_an_unlisted_checkpoint(tmp_path, torch):
    from danet_deploy.errors import CheckpointError
    from danet_deploy.model import create_model, init_for_testing

    # an edge ResNet-18 with a narrow deep stem: no preset has it
    model = init_for_testing(
        create_model("danet_edge_r18_d8", weights=False, deep_stem=True, stem_width=16, num_classes=4), seed=2
    )
    path = tmp_path / "custom.pt"
    torch.save(model.state_dict(), path)
    from danet_deploy.export import ExportRequest, export

    with pytest.raises(CheckpointError, match="no preset fits") as info:
        export(ExportRequest(str(path), output=tmp_path / "no"), log=lambda _: None)
    assert not (tmp_path / "no").exists()
    # the user's next step: the flags the message gives
    flags = re.search(r"Describe it with: (.*?) \(and check", str(info.value)).group(1).split()
    assert "--model-option" in flags and "stem_width=16" in flags
    code, manifest = _export(path, tmp_path / "yes", *flags)
    assert code == 0 and manifest["parity"]["passed"]  # the reference is rebuilt with the options too
    options = manifest["export"]["model_options"]
    assert options["stem_width"] == 16 and all(not isinstance(v, str) for v in options.values())  # typed
    assert manifest["model"]["deep_stem"] is True and manifest["model"]["stem_width"] == 16
    assert manifest["checkpoint"]["chosen_by"] == "--arch"
    _assert_matches(tmp_path / "yes", model, torch)


@pytest.mark.slow
@pytest.mark.parametrize(
    "depth,dataset", [(50, "ade20k"), (50, "voc12aug"), (101, "cityscapes"), (101, "ade20k"), (101, "voc12aug")]
)
def test_mmseg_release_exports(torch, tmp_path, depth, dataset):
    oracle, path = _mmseg_checkpoint(torch, tmp_path, depth, dataset)
    code, manifest = _export(path, tmp_path / "art")
    assert code == 0 and manifest["parity"]["passed"]
    assert manifest["model"]["name"] == f"danet_mmseg_r{depth}_d8_{dataset}"
    _assert_matches(tmp_path / "art", oracle, torch)


@pytest.mark.slow
def test_official_checkpoint_of_the_train_script_defaults_exports(torch, tmp_path):
    # official train.py defaults: ResNet-50, deep stem, ADE20K's 150 classes; no preset has that count
    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model("danet_r50_d8", weights=False, num_classes=150), seed=8)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(official_container(official_state(model.state_dict(), 150, module_prefix=True)), path)
    code, manifest = _export(path, tmp_path / "art")
    assert code == 0 and manifest["parity"]["passed"]
    assert manifest["model"]["name"] == "danet_r50_d8" and manifest["model"]["num_classes"] == 150
    assert manifest["model"]["align_corners"] is True and manifest["model"]["class_names"][0] == "wall"
    _assert_matches(tmp_path / "art", model, torch)  # the official conventions (align_corners=True) kept


@pytest.mark.slow
def test_official_release_pth_tar_exports(torch, tmp_path):
    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model("danet_official_r101_cityscapes", weights=False), seed=7)
    path = tmp_path / "DANet101.pth.tar"  # legacy format, DataParallel keys, numpy best_pred, auxlayer
    save_legacy_with_numpy1_names(official_container(official_state(model.state_dict(), 19, module_prefix=True)), path)
    code, manifest = _export(path, tmp_path / "art")
    assert code == 0 and manifest["parity"]["passed"]
    assert manifest["model"]["name"] == "danet_official_r101_cityscapes"
    assert manifest["model"]["multi_grid"] == [1, 2, 4] and manifest["model"]["deep_stem"] is False
    ckpt = manifest["checkpoint"]
    assert ckpt["layout"] == "official DANet" and set(ckpt["ignored"]) == {"epoch", "best_pred", "optimizer"}
    _assert_matches(tmp_path / "art", model, torch)


def test_model_options_on_a_preset_keep_parity(tmp_path):
    # the reference is rebuilt from the manifest's config, not the bare preset name
    code, manifest = _export(
        "danet_demo", tmp_path / "os16", "--model-option", "output_stride=16", "--model-option", "align_corners=false"
    )
    assert code == 0 and manifest["parity"]["passed"] and manifest["model"]["output_stride"] == 16
    assert manifest["model"]["weights"] == "danet_demo.safetensors"  # same tensors, other dilations
    # another class count would drop the shipped weights (an untrained network): refused ...
    code, _ = _export("danet_demo", tmp_path / "three", "--num-classes", "3")
    assert code == 2 and not (tmp_path / "three").exists()
    # ... while a preset without shipped weights takes it (a fresh, seeded classifier)
    code, manifest = _export("danet_edge_r18_d8", tmp_path / "edge3", "--num-classes", "3")
    assert code == 0 and manifest["parity"]["passed"] and manifest["model"]["num_classes"] == 3
