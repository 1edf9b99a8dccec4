"""Training smoke run, weight saving/loading, and (when shipped) the demo weights' quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.model.registry import weights_dir


def _tiny_config(tmp_path, **overrides):
    from danet_deploy.train import TrainConfig

    values = dict(steps=3, batch_size=2, crop=64, scene_min=64, scene_max=96, warmup=1, eval_count=1,
                  eval_size=64, log_every=1, output=str(tmp_path / "tiny.safetensors"))
    values.update(overrides)
    return TrainConfig(**values)


def test_three_step_training_writes_loadable_fp16_weights(torch, tmp_path):
    from safetensors import safe_open

    from danet_deploy import create_model
    from danet_deploy.train import train

    lines: list[str] = []
    report = train(_tiny_config(tmp_path), command="test", progress=False, log=lines.append)
    path = tmp_path / "tiny.safetensors"
    assert path.exists() and report["steps"] == 3 and any("step 3/3" in line for line in lines)
    assert json.loads((tmp_path / "tiny.json").read_text())["val"]["size"] == [64, 64]
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert meta["steps"] == "3" and meta["command"] == "test"
        assert f.get_tensor("head.conv8.1.weight").dtype == torch.float16
    model = create_model("danet_demo", weights=path)
    assert next(model.parameters()).dtype == torch.float32
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 64, 64)


def test_training_batches_are_deterministic(tmp_path):
    from danet_deploy.train import training_batch

    config = _tiny_config(tmp_path)
    a, b = training_batch(5, config), training_batch(5, config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (2, 64, 64, 3) and a[1].shape == (2, 64, 64)
    assert not np.array_equal(a[0], training_batch(6, config)[0])


def test_bad_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, crop=60).validate()
    with pytest.raises(ConfigError):
        _tiny_config(tmp_path, scene_min=32).validate()


def test_time_budget_shrinks_the_schedule_and_lr_still_anneals(tmp_path):
    from danet_deploy.train import _budgeted_total, poly_lr

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
    from danet_deploy.train import evaluate

    metrics = evaluate(create_model("danet_demo"), "val", count=4, size=(256, 256))
    assert metrics.miou() > 0.6, metrics.summary()
