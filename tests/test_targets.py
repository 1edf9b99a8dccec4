"""The target registry: one declaration drives the CLI, validation, the bench and the loader."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

from danet_deploy import runtime
from danet_deploy.bench.runner import BenchConfig, export_target_for, unsupported_reason
from danet_deploy.cli.export import build_parser
from danet_deploy.cli.export import main as export_main
from danet_deploy.errors import ConfigError
from danet_deploy.export.pipeline import ExportRequest
from danet_deploy.targets import (
    DEFAULT_CALIB_METHOD,
    Engine,
    Target,
    TargetOptions,
    get_target,
    option,
    register_engine,
    register_target,
    target_names,
    unregister,
)

# A throwaway target: a builder module that writes the FP32 ONNX under its own suffix, and an
# engine that runs that suffix with ONNX Runtime, registered from outside the package.
PLUGIN = """
import shutil
from pathlib import Path

from danet_deploy.export.pipeline import TargetResult
from danet_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend


def build(ctx):
    shutil.copyfile(ctx.fp32_onnx(), ctx.workdir / "model.toy")
    (ctx.workdir / "greeting.txt").write_text(ctx.options.greeting)
    return TargetResult(primary="model.toy", backend="toyrt", precision="fp32", input=ctx.input_spec())


class ToyBackend(OnnxRuntimeBackend):
    name = "toyrt"
"""


@dataclass(frozen=True)
class ToyOptions(TargetOptions):
    greeting: str = option("hello", "written into greeting.txt")
    repeats: int = option(1, "how often")


@pytest.fixture
def toy_target(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    engine = register_engine(Engine("toyrt", "Toy runtime", "toy_plugin:ToyBackend", suffixes=(".toy",)))
    target = register_target(
        Target(
            "toy",
            "a throwaway target",
            builder="toy_plugin:build",
            engine="toyrt",
            precisions=("fp32",),
            suffixes=(".toy",),
            options=ToyOptions,
        )
    )
    yield target, engine
    unregister("toy")
    unregister("toyrt")


def test_a_registered_target_reaches_cli_bench_and_loader(toy_target, tmp_path, capsys):
    choices = next(a for a in build_parser()._actions if a.dest == "target").choices
    assert "toy" in choices and "toy" in target_names()
    # the bench: a toyrt x fp32 row is exported by the toy target and can run here
    assert export_target_for("toyrt", "fp32") == "toy" and unsupported_reason("toyrt", "fp32") is None
    assert ("toyrt", "fp32") in BenchConfig(model="danet_demo", engines=["toyrt"]).combinations()
    # export: typed options reach the builder; the manifest records them
    out = tmp_path / "toy-art"
    assert (
        export_main(
            [
                "--model",
                "danet_demo",
                "--target",
                "toy",
                "--input-size",
                "64x64",
                "--option",
                "greeting=hi there",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "greeting.txt").read_text() == "hi there"
    # the loader: the artifact folder and the bare file (by its suffix) both open with the toy engine
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with runtime.load(out) as folder, runtime.load(out / "model.toy") as bare:
        assert folder.backend.name == bare.backend.name == "toyrt"
        np.testing.assert_allclose(folder.infer(x), bare.infer(x), rtol=0, atol=0)
        assert folder.manifest.export["options"] == {"greeting": "hi there", "repeats": 1}
    # misspelt option of the new target: refused with a suggestion
    assert (
        export_main(["--model", "danet_demo", "--target", "toy", "--option", "greting=x", "-o", str(tmp_path / "x")])
        == 2
    )
    assert "did you mean 'greeting'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ConfigError, match="already registered"):
        register_target(get_target("onnx"))
    with pytest.raises(ConfigError, match="did you mean 'openvino'"):
        get_target("openvin")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--target", "onnx", "--precision", "int8"],
            "--target onnx writes fp32 only; for int8 use --target onnxruntime",
        ),
        (["--target", "onnxruntime", "--precision", "int8", "--option", "nosuch=1"], "unknown option 'nosuch'"),
        (
            ["--target", "onnxruntime", "--precision", "int8", "--option", "calib_methd=entropy"],
            "did you mean 'calib_method'",
        ),
        (["--target", "onnxruntime", "--precision", "int8", "--option", "int8_format=s8s9"], "did you mean 's8s8'"),
        (["--target", "onnxruntime", "--precision", "int8", "--option", "calib_percentile=high"], "must be a number"),
        (
            ["--target", "openvino", "--precision", "int8", "--calib-method", "entropy"],
            "calibrates with minmax, percentile",
        ),
        (["--target", "onnxruntime", "--precision", "int8", "--option", "foo"], "must be KEY=VALUE"),
        (["--target", "onnx", "--dla-core", "0"], "unknown option 'dla_core' for --target onnx"),
        (["--target", "onnx", "--from", "somewhere"], "--from works with --target tensorrt"),
    ],
)
def test_bad_requests_fail_fast_before_the_model_is_built(args, message, tmp_path):
    """Each refusal comes from the registry in a fresh interpreter without torch ever imported."""
    code = textwrap.dedent(f"""
        import sys
        from danet_deploy.cli.export import main
        rc = main({[*args, "--model", "danet_demo", "-o", str(tmp_path / "out")]!r})
        assert "torch" not in sys.modules, "the model was built"
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_calibration_method_default_is_documented_and_recorded():
    request = ExportRequest(model="danet_demo", target="onnxruntime", precision="int8")
    assert request.calib_method == DEFAULT_CALIB_METHOD["int8"] == "minmax"
    assert request.to_dict()["calib_method"] == "minmax"
    assert (
        ExportRequest(model="danet_demo", target="tensorrt", precision="int8", calib_method="max").calib_method
        == "minmax"
    )
    assert (
        ExportRequest(
            model="danet_demo", target="onnxruntime", precision="int8", options={"calib_method": "entropy"}
        ).calib_method
        == "entropy"
    )
    assert ExportRequest(model="danet_demo", target="onnx").calib_method is None
    with pytest.raises(ConfigError, match="applies to --precision int8"):
        ExportRequest(model="danet_demo", target="openvino", precision="fp32", calib_method="minmax")


def test_options_are_typed_with_defaults():
    opts = get_target("tensorrt").parse_options({"dla_core": "1", "legacy_calibrator": "yes", "strongly_typed": "none"})
    assert opts.dla_core == 1 and opts.legacy_calibrator is True and opts.strongly_typed is None
    assert opts.data_max == 512.0 and opts.build == "auto"
    with pytest.raises(ConfigError, match="true or false"):
        get_target("tensorrt").parse_options({"legacy_calibrator": "maybe"})
    with pytest.raises(ConfigError, match="must be one of auto, true, false"):
        get_target("tensorrt").parse_options({"build": "later"})


def test_list_options_and_targets(capsys):
    assert export_main(["--list-targets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in target_names())
    assert export_main(["--list-options", "--target", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "int8_format" in out and "calib_percentile" in out and "--calib-method" in out
    assert export_main(["--list-options"]) == 0  # every target, including those whose options load lazily
    out = capsys.readouterr().out
    assert all(f"--target {name}:" in out for name in target_names())


def test_precision_hint_names_only_targets_that_build_from_a_model():
    with pytest.raises(ConfigError) as err:
        get_target("onnx").check_precision("int8")
    suggested = str(err.value).split("use --target ", 1)[1].split(" or ")
    assert suggested and all(get_target(name).builder is not None for name in suggested)


def test_runtime_load_refuses_unknown_backend_options(tmp_path):
    with pytest.raises(ConfigError, match="has no option 'thread'.*did you mean 'threads'"):
        runtime.load("danet_demo", thread=2)
