"""Training smoke run, weight saving/loading, and (when shipped) the demo weights' quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.model.registry import DEMO_CLASSES, weights_dir


def _tiny_config(tmp_path, **overrides):
    from danet_deploy.training.loop import TrainConfig

    values = dict(
        steps=3,
        batch_size=2,
        crops_per_scene=2,
        crops=((64, 64), (64, 96)),
        scene_min=64,
        scene_max=96,
        warmup=1,
        eval_count=1,
        eval_sizes=((64, 64), (64, 128)),
        log_every=1,
        prefetch=False,
        output=str(tmp_path / "tiny.safetensors"),
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_three_step_training_writes_loadable_fp16_weights(torch, tmp_path):
    from safetensors import safe_open

    from danet_deploy import create_model
    from danet_deploy.training.loop import train

    lines: list[str] = []
    report = train(_tiny_config(tmp_path, prefetch=True), command="test", progress=False, log=lines.append)
    path = tmp_path / "tiny.safetensors"
    assert path.exists() and report["steps"] == 3 and any("step 3/3" in line for line in lines)
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert [v["size"] for v in written["val"]] == [[64, 64], [64, 128]]
    assert written["amp"] in ("bf16", "off") and set(written["class_weights"]) == set(DEMO_CLASSES)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert meta["steps"] == "3" and meta["command"] == "test"
        assert f.get_tensor("head.conv8.1.weight").dtype == torch.float16
    model = create_model("danet_demo", weights=path)
    assert next(model.parameters()).dtype == torch.float32
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 64, 64)


def test_training_batches_are_deterministic(tmp_path):
    from danet_deploy.training.loop import training_batch

    config = _tiny_config(tmp_path)
    a, b = training_batch(5, config), training_batch(5, config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape[0] == 2 and a[0].shape[1:3] in ((64, 64), (64, 96)) and a[1].shape == a[0].shape[:3]
    assert not np.array_equal(a[0], training_batch(6, config)[0])
    shapes = {training_batch(step, config)[0].shape[1:3] for step in range(12)}
    assert shapes == {(64, 64), (64, 96)}  # every crop shape is drawn


def test_early_steps_draw_the_early_crops_then_the_full_ones(tmp_path):
    """The crop-size curriculum: the first ``early_share`` of the steps cut the smaller crops."""
    from danet_deploy.training.loop import training_batch

    config = _tiny_config(tmp_path, steps=8, early_share=0.5, early_crops=((32, 32), (32, 48)), early_scale=0.625)
    config.validate()
    assert config.early_steps == 4 and config.scene_range_at(3) == (40, 60) and config.scene_range_at(4) == (64, 96)
    assert _tiny_config(tmp_path, steps=6000, early_share=0.29, early_crops=((32, 32),)).early_steps == 1740
    assert _tiny_config(tmp_path, steps=8, early_share=0.99, early_crops=((32, 32),)).early_steps == 7  # last: full
    shapes = [training_batch(step, config)[0].shape[1:3] for step in range(8)]
    assert set(shapes[:4]) <= {(32, 32), (32, 48)} and set(shapes[4:]) <= {(64, 64), (64, 96)}
    # with no early phase (the shipped recipe's default) the early crops are never drawn, and the
    # shipped recipe's batches are the ones its weights were trained on (digest taken before the
    # curriculum existed; numpy's PCG64 streams and the scene renderer are stable)
    import hashlib

    from danet_deploy.training.loop import TrainConfig

    assert TrainConfig().early_steps == 0
    images, labels = training_batch(4999, TrainConfig())
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    assert digest == "e283a1c1640d0909", (
        "the default recipe's step-4999 batch changed: the documented "
        "danet-train command no longer reproduces the shipped weights' data "
        "(a code change, or a numpy/Pillow release that renders differently)"
    )
    plain = _tiny_config(tmp_path, steps=8, early_share=0.0, early_crops=((32, 32),))
    np.testing.assert_array_equal(training_batch(0, plain)[0], training_batch(0, _tiny_config(tmp_path, steps=8))[0])


def test_several_prefetch_workers_deliver_the_same_batches_in_order(tmp_path):
    from danet_deploy.training.loop import _batches

    one = list(_batches(_tiny_config(tmp_path, steps=4)))
    many = list(_batches(_tiny_config(tmp_path, steps=4, prefetch=True, workers=3)))
    assert [s for s, _, _ in many] == [0, 1, 2, 3]
    for (_, a, la), (_, b, lb) in zip(one, many):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_ema_saves_the_averaged_weights_and_bn_statistics(torch, tmp_path):
    """Same seed, same steps: with --ema the saved weights are the average, not the last step's,
    and they load and segment like any weights file."""
    from safetensors.torch import load_file

    from danet_deploy import create_model
    from danet_deploy.training.loop import train, weight_average

    assert weight_average(torch.nn.Linear(2, 2), 0.0) is None
    plain = train(
        _tiny_config(tmp_path, output=str(tmp_path / "plain.safetensors")), progress=False, log=lambda _: None
    )
    averaged = train(
        _tiny_config(tmp_path, ema=0.5, output=str(tmp_path / "ema.safetensors")), progress=False, log=lambda _: None
    )
    assert averaged["config"]["ema"] == 0.5 and plain["config"]["ema"] == 0.0
    last, mean = load_file(str(tmp_path / "plain.safetensors")), load_file(str(tmp_path / "ema.safetensors"))
    assert set(last) == set(mean)  # the averaged module saves under the model's own keys
    assert not torch.equal(last["head.conv8.1.weight"], mean["head.conv8.1.weight"])
    assert not torch.equal(last["backbone.bn1.running_mean"], mean["backbone.bn1.running_mean"])  # buffers averaged
    model = create_model("danet_demo", weights=tmp_path / "ema.safetensors")
    with torch.inference_mode():
        assert torch.isfinite(model(torch.zeros(1, 3, 64, 64))).all()


def test_model_options_reach_the_model_and_the_report(torch, tmp_path):
    from danet_deploy.training.loop import train

    report = train(
        _tiny_config(tmp_path, steps=1, eval_count=0, model_options={"decoder_channels": "16"}),
        progress=False,
        log=lambda _: None,
    )
    assert report["config"]["model_options"] == {"decoder_channels": 16}
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tiny.safetensors"), "pt") as f:
        assert f.get_tensor("decoder.fuse.0.0.weight").shape[0] == 16
        assert json.loads(f.metadata()["model_options"]) == {"decoder_channels": 16}
    from danet_deploy.training.loop import evaluate_weights  # rebuilds the trained architecture from the metadata

    (result,) = evaluate_weights(tmp_path / "tiny.safetensors", count=1, sizes=((64, 64),), progress=False)
    assert result["images"] == 1 and 0.0 <= result["miou"] <= 1.0


def test_cuda_without_a_gpu_is_a_config_error(torch, tmp_path):
    from danet_deploy.training.loop import train

    if torch.cuda.is_available():  # pragma: no cover - the check is for CPU machines
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(_tiny_config(tmp_path, device="cuda"), progress=False, log=lambda _: None)


def test_bad_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, crops=((60, 64),)).validate()
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, scene_min=32).validate()
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, batch_size=3, crops_per_scene=2).validate()
    for bad in (
        dict(ohem_keep=0.0),
        dict(crowd=1.5),
        dict(amp="fp8"),
        dict(aspect_min=3.0, aspect_max=2.0),
        dict(device="tpu"),
        dict(workers=0),
        dict(model_options={"decoder_chanels": 8}),
        dict(early_share=1.0),
        dict(early_share=0.5, early_crops=()),
        dict(early_share=0.5, early_crops=((48, 48),), early_scale=0.625),  # taller than a 40-high scene
        dict(early_share=0.5, early_scale=0.2),
        dict(steps=3, early_share=0.1, early_crops=((32, 32),)),
        dict(early_share=0.5, early_crops=((32, 32),), time_budget_min=5.0),
    ):
        with pytest.raises(ConfigError):
            _tiny_config(tmp_path, **bad).validate()


def test_crop_shapes_parse_and_bad_ones_are_refused():
    from danet_deploy.training.loop import parse_shapes

    assert parse_shapes("256x256, 192X352") == ((256, 256), (192, 352))
    with pytest.raises(ConfigError, match="not HxW"):
        parse_shapes("256")


def test_unweighted_loss_is_the_official_cross_entropy(torch):
    import torch.nn.functional as F

    from danet_deploy.training.loss import danet_loss

    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(2, 8, 16, 16, generator=gen) for _ in range(3)]
    target = torch.randint(0, 8, (2, 16, 16), generator=gen)
    target[0, :2] = 255  # ignored pixels
    expected = sum(F.cross_entropy(o, target, ignore_index=255) for o in logits)
    assert torch.allclose(danet_loss(logits, target), expected, rtol=1e-5)
    weights = torch.rand(8, generator=gen) + 0.5
    expected = sum(F.cross_entropy(o, target, weight=weights, ignore_index=255) for o in logits)
    assert torch.allclose(danet_loss(logits, target, weights), expected, rtol=1e-5)


def test_ohem_keeps_only_the_hardest_pixels(torch):
    import torch.nn.functional as F

    from danet_deploy.training.loss import danet_loss

    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = 5.0  # every pixel confidently right ...
    logits[0, 0, 0, :2] = -5.0  # ... except two, confidently wrong
    hard = F.cross_entropy(logits, target, reduction="none")[0, 0, :2].mean()
    assert torch.allclose(danet_loss(logits, target, ohem_keep=2 / 16), hard)
    assert danet_loss(logits, target, ohem_keep=1.0) < hard / 4
    ignored = torch.full_like(target, 255)  # nothing labelled: a zero loss, not an error
    assert danet_loss(logits, ignored, ohem_keep=0.3).item() == 0.0


def test_class_weights_favour_rare_classes():
    from danet_deploy.training.loss import balanced_weights, class_frequencies

    labels = [np.array([[0, 0, 0, 0], [0, 0, 1, 2]], np.uint8), np.array([[255, 0], [0, 1]], np.uint8)]
    freq = class_frequencies(labels, 4)
    assert np.isclose(freq.sum(), 1.0) and freq[3] == 0 and freq[0] > freq[1] > freq[2]
    weights = balanced_weights(freq, power=0.5, cap=5.0)
    assert weights[2] > weights[1] > weights[0] and weights[3] == 5.0
    assert np.allclose(balanced_weights(freq, power=0.0)[:3], 1.0)


def test_time_budget_shrinks_the_schedule_and_lr_still_anneals(tmp_path):
    from danet_deploy.training.loop import _budgeted_total, poly_lr

    config = _tiny_config(tmp_path, steps=1000, warmup=10, time_budget_min=1.0)
    assert _budgeted_total(5, 5.0, config) == 1000  # too early to estimate
    planned = _budgeted_total(100, 30.0, config)  # 0.3 s/step, 30 s left -> 100 more steps
    assert planned == 200
    assert poly_lr(planned - 1, config, planned) < 0.02 * config.lr
    assert _budgeted_total(100, 1.0, config) == 1000  # never more than the configured steps
    assert _budgeted_total(100, 61.0, config) == 100  # past the budget: stop now
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, time_budget_min=0).validate()


def test_cli_evaluate_only_reports_missing_weights(tmp_path, capsys):
    from danet_deploy.cli.train import main

    assert main(["--evaluate-only", "--weights", str(tmp_path / "missing.safetensors"), "--no-progress"]) == 2
    assert "no weights" in capsys.readouterr().err


SHIPPED = weights_dir() / "danet_demo.safetensors"


@pytest.mark.skipif(not SHIPPED.exists(), reason="demo weights not shipped in this checkout")
def test_shipped_demo_weights_segment_val_scenes(torch):
    from danet_deploy import create_model
    from danet_deploy.training.loop import evaluate

    metrics = evaluate(create_model("danet_demo"), "val", count=4, size=(256, 256))
    assert metrics.miou() > 0.6, metrics.summary()


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_killed_trainer_leaves_no_prefetch_worker_and_no_weights(tmp_path):
    """SIGKILL mid-run: the spawned scene worker notices its parent is gone and exits; no weights appear."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    out = tmp_path / "w.safetensors"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.train",
            "--steps",
            "500",
            "--batch-size",
            "2",
            "--crops-per-scene",
            "2",
            "--crops",
            "64x64",
            "--scene-min",
            "64",
            "--scene-max",
            "96",
            "--eval-count",
            "0",
            "--no-progress",
            "--output",
            str(out),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    workers: list = []
    while time.time() < deadline and not workers and proc.poll() is None:
        workers = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.2)
    assert workers, "the prefetch worker never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _gone, alive = psutil.wait_procs(workers, timeout=15)
    for p in alive:
        p.kill()
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"
    assert not out.exists() and not out.with_suffix(".json").exists()


TINY_ARGS = [
    "--steps",
    "1",
    "--batch-size",
    "2",
    "--crops-per-scene",
    "2",
    "--crops",
    "64x64",
    "--scene-min",
    "64",
    "--scene-max",
    "96",
    "--eval-count",
    "0",
    "--no-prefetch",
    "--no-progress",
]


def test_cli_never_replaces_the_shipped_weights_by_default(capsys):
    """The default --output is the shipped file every danet_demo command loads: refused before any step."""
    from danet_deploy.cli.train import main

    before = SHIPPED.stat().st_mtime_ns if SHIPPED.exists() else None
    assert main(TINY_ARGS) == 2
    assert "shipped weights" in capsys.readouterr().err
    assert (SHIPPED.stat().st_mtime_ns if SHIPPED.exists() else None) == before


def test_cli_refuses_existing_outputs_and_folders_unless_forced(torch, tmp_path, capsys):
    from danet_deploy.cli.train import main

    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"the user's own file")
    assert main([*TINY_ARGS, "--output", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_bytes() == b"the user's own file"
    report = tmp_path / "notes.json"
    report.write_text("keep me")
    assert main([*TINY_ARGS, "--output", str(tmp_path / "new.safetensors"), "--report", str(report)]) == 2
    assert report.read_text() == "keep me" and not (tmp_path / "new.safetensors").exists()
    assert main([*TINY_ARGS, "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*TINY_ARGS, "--output", str(mine), "--force"]) == 0
    assert mine.read_bytes() != b"the user's own file" and mine.with_suffix(".json").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--threads", "0"],
        ["--weight-decay", "-1"],
        ["--time-budget-min", "nan"],
        ["--warmup", "-1"],
        ["--log-every", "0"],
        ["--ema", "1.0"],
        ["--ema", "0.2"],
        ["--ema", "nan"],
        ["--scene-max", "100000"],
        ["--eval-sizes", "100000x100000"],
    ],
)
def test_cli_refuses_non_numbers_and_out_of_range_knobs(tmp_path, capsys, flags):
    from danet_deploy.cli.train import main

    assert main([*TINY_ARGS, "--output", str(tmp_path / "w.safetensors"), *flags]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and flags[0].lstrip("-").split("-")[0] in err.lower().replace(" ", "-")
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize(
    "flags", [["--threads", "-1"], ["--eval-count", "0"], ["--eval-sizes", "100000x100000"], ["--eval-sizes", "8x8"]]
)
def test_cli_evaluate_only_refuses_bad_counts(capsys, flags):
    from danet_deploy.cli.train import main

    assert main(["--evaluate-only", "--no-progress", *flags]) == 2
    assert flags[0] in capsys.readouterr().err
