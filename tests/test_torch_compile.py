"""The torch-compile engine: a peer of the exported engines that runs presets, never the reference."""

from __future__ import annotations

import numpy as np
import pytest

from danet_deploy import runtime
from danet_deploy.bench.runner import BenchConfig, default_engines, export_target_for, unsupported_reason
from danet_deploy.errors import ConfigError
from danet_deploy.targets import get_engine, reference_engine


def test_torch_compile_is_a_preset_engine_but_not_the_reference():
    engine = get_engine("torch-compile")
    assert engine.runs_presets and not engine.reference
    assert reference_engine().name == "torch"  # eager stays the FP32 yardstick
    assert "torch-compile" in default_engines()  # every CPU table shows it
    assert export_target_for("torch-compile", "fp32") is None  # runs the preset: nothing to export
    assert unsupported_reason("torch-compile", "fp32") is None
    assert "fp32 only" in unsupported_reason("torch-compile", "int8")
    BenchConfig(model="danet_demo", engines=["torch", "torch-compile"])  # accepted by the bench


def test_bench_row_loads_the_preset_with_its_own_engine():
    from danet_deploy.bench.rows import Row, RowRun
    from danet_deploy.bench.runner import _model_config, _prepare_row

    cfg = BenchConfig(model="danet_demo", engines=["torch", "torch-compile"], size=(64, 64))
    for engine in ("torch", "torch-compile"):
        run = RowRun(Row(engine, "fp32", None, 1, 2))
        _prepare_row(cfg, run, _model_config(cfg), lambda m: None)
        assert run.model_ref == "danet_demo" and run.load_options["backend"] == engine


def test_loading_is_lazy_and_options_are_checked(torch):
    with runtime.load("danet_demo", backend="torch-compile", threads=1) as session:
        info = session.describe()
        assert info["backend"] == "torch-compile" and info["compile_s"] is None  # compiles on the first call
    with pytest.raises(ConfigError, match="mode must be one of"):
        runtime.load("danet_demo", backend="torch-compile", mode="fastest")
    with pytest.raises(ConfigError, match="no option"):
        runtime.load("danet_demo", backend="torch-compile", modee="default")
    with pytest.raises(ConfigError, match="torch, torch-compile"):
        runtime.load("danet_demo", backend="onnxruntime")


@pytest.mark.slow
def test_compiled_model_matches_eager_and_reports_compile_time(torch):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with runtime.load("danet_demo", threads=1) as eager:
        ref = eager.infer(x)
    with runtime.load("danet_demo", backend="torch-compile", threads=1) as compiled:
        first = compiled.infer(x)
        again = compiled.infer(x)
        info = compiled.describe()
    np.testing.assert_allclose(first, ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(first, again)
    assert info["compile_s"] > 0 and list(info["compile_s_per_shape"]) == ["1x3x64x64"]
