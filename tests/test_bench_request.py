"""danet-bench from Python: BenchRequest is the command line, run_bench(request) is the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danet_deploy.bench.report import BenchReport
from danet_deploy.bench.request import BenchRequest, run_bench
from danet_deploy.bench.rows import Row
from danet_deploy.bench.runner import BenchConfig, run_benchmark
from danet_deploy.cli import dataclass_args
from danet_deploy.cli.bench import build_parser
from danet_deploy.cli.bench import main as bench_main
from danet_deploy.errors import ConfigError


def _parsed(argv: list[str]) -> BenchRequest:
    return dataclass_args.parse_request(BenchRequest, build_parser(), argv)


def test_the_command_line_and_python_build_the_same_request(capsys):
    argv = [
        "--model",
        "danet_demo",
        "--engines",
        "torch, onnxruntime",
        "--precisions",
        "fp32,int8",
        "--input-size",
        "64x96",
        "--output",
        "out/b",
        "--artifacts",
        "out/a",
        "--no-plots",
        "--json",
        "--profile",
    ]
    built = BenchRequest(
        model="danet_demo",
        engines=("torch", "onnxruntime"),
        precisions=("fp32", "int8"),
        input_size=(64, 96),
        output=Path("out/b"),
        artifacts=Path("out/a"),
        plots=False,
        as_json=True,
        profile=True,
    )
    assert _parsed(argv) == built
    old = _parsed(["--model", "danet_demo", "--targets", "torch,onnxruntime"])  # the deprecated spelling
    assert old.engines == ("torch", "onnxruntime") and "--targets is deprecated" in capsys.readouterr().err


def test_the_request_defaults_are_the_configs(tmp_path):
    """One definition of each default: the request's config equals BenchConfig's own defaults."""
    cfg = BenchRequest(model="danet_demo", output=tmp_path).config()
    assert cfg == BenchConfig(model="danet_demo", output=tmp_path)
    assert _parsed(["--model", "danet_demo", "--output", str(tmp_path)]) == BenchRequest("danet_demo", output=tmp_path)


def _fake_report(cfg: BenchConfig, reference_status: str) -> BenchReport:
    rows = [
        Row(
            "torch",
            "fp32",
            None,
            1,
            2,
            status=reference_status,
            reason=None if reference_status == "ok" else "x",
            p50_ms=10.0,
        ),
        Row("onnxruntime", "fp32", "onnx", 1, 2, status="ok", p50_ms=5.0),
    ]
    return BenchReport(
        created="2026-01-01T00:00:00+00:00",
        command=None,
        config=cfg.to_dict(),
        model={"name": "danet_demo", "source": "danet_demo", "num_classes": 6, "weights": "shipped"},
        machine={"cpu": {"model": "test cpu", "logical_cores": 2}},
        gemm={"gflops_peak": 1.0, "method": "test", "threads": 2},
        flops={"gflops": 1.0, "attention": 1e8, "total": 10**9},
        scenes={"split": "val", "count": 2, "labels_used": False},
        rows=rows,
    )


@pytest.mark.parametrize("reference, code", [("ok", 0), ("failed", 1)])
def test_run_bench_writes_the_reports_and_the_command_prints_them(reference, code, tmp_path, monkeypatch, capsys):
    from danet_deploy.bench import runner

    monkeypatch.setattr(runner, "run_benchmark", lambda cfg, command=None: _fake_report(cfg, reference))
    outcome = run_bench(BenchRequest("danet_demo", output=tmp_path / "a", plots=False))
    assert outcome.passed is (reference == "ok") and set(outcome.paths) == {"json", "csv", "markdown"}
    written = json.loads(outcome.paths["json"].read_text())
    assert BenchReport.from_dict(written) == outcome.report
    assert bench_main(["--model", "danet_demo", "--output", str(tmp_path / "b"), "--no-plots", "--json"]) == code
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "b" / "bench.json").read_text())
    assert bench_main(["--model", "danet_demo", "--output", str(tmp_path / "c"), "--no-plots"]) == code
    out = capsys.readouterr().out
    assert "machine: test cpu" in out and "onnxruntime" in out and "wrote " in out


@pytest.mark.parametrize(
    "values",
    [
        {"input_size": 64},
        {"input_size": "64x64"},
        {"input_size": (64, 64, 3)},
        {"input_size": (64.5, 64)},
        {"threads": 2.5},
        {"iters": "5"},
        {"batch": True},
        {"warmup": 1.5},
        {"timeout": "10"},
        {"timeout": True},
        {"calib_count": 0},
    ],
)
def test_a_python_request_of_the_wrong_type_is_a_config_error(tmp_path, values):
    """run_bench(BenchRequest(...)) from Python: a value no flag could produce names its option
    (ConfigError), rather than a TypeError from the unpacking or a fractional thread count passed on."""
    with pytest.raises(ConfigError, match="--"):
        BenchRequest(model="danet_demo", output=tmp_path / "out", **values).config()


def test_a_python_request_takes_engines_and_precisions_as_comma_text(tmp_path):
    """engines="onnxruntime" is the flag's text, not eleven one-letter engine names."""
    config = BenchRequest(
        model="danet_demo", output=tmp_path / "out", engines="onnxruntime, openvino", precisions="fp32"
    ).config()
    assert config.engines == ["onnxruntime", "openvino"] and config.precisions == ["fp32"]


def test_an_input_size_no_export_could_plan_is_refused_before_the_scenes_are_made(tmp_path, monkeypatch):
    """--input-size 100000x100000: the exporter's attention-plan message, before the parent process
    generates its accuracy scenes at that size (about 120 GB) or measures anything."""
    from danet_deploy.bench import gemm
    from danet_deploy.data import scenes

    def reached(*args, **kwargs):
        raise AssertionError("the run went on past the size check")

    monkeypatch.setattr(scenes, "SceneDataset", reached)
    monkeypatch.setattr(gemm, "measure_gemm_peak", reached)
    config = BenchConfig(model="danet_demo", engines=["onnxruntime"], size=(100000, 100000), output=tmp_path)
    with pytest.raises(ConfigError, match="position attention"):
        run_benchmark(config)
