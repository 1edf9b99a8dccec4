"""danet-bench and danet-demo check their arguments and the user's files before any work: report
names, timeouts, presets not artifacts, existing reports, read-only outputs, missing matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hostile_user.hostile_support import MODEL, read_only, run_cli, snapshot

pytest.importorskip("onnxruntime")

from danet_deploy.errors import ConfigError


def test_bench_writes_reports_and_skips_plots_without_matplotlib(tmp_path, monkeypatch, capsys):
    from danet_deploy.bench import report as bench_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(bench_report, "to_markdown", lambda r: "| table |\n")
    monkeypatch.setattr(bench_report, "to_csv", lambda r: "target\n")
    paths = bench_report.write_reports({"rows": []}, tmp_path, plots=True)
    assert set(paths) == {"json", "csv", "markdown"} and all(p.is_file() for p in paths.values())
    assert "danet-deploy[bench]" in paths["markdown"].read_text()
    assert "plots skipped" in capsys.readouterr().err and not list(tmp_path.glob("*.png"))


def test_bench_says_it_takes_presets_not_artifacts(artifact, tmp_path, capsys):
    from danet_deploy.cli.bench import main as bench_main

    before = snapshot(tmp_path)
    assert bench_main(["--model", str(artifact), "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "preset name or a checkpoint" in err and f"--model {MODEL}" in err
    assert snapshot(tmp_path) == before


BENCH_TINY = [
    "--model",
    MODEL,
    "--engines",
    "torch,onnxruntime",
    "--input-size",
    "64x64",
    "--iters",
    "1",
    "--warmup",
    "0",
    "--scenes",
    "2",
    "--no-plots",
    "--no-progress",
]
DEMO_TINY = ["--combos", "onnxruntime:fp32", "--input-size", "64x64", "--iters", "1", "--warmup", "0", "--scenes", "1"]


@pytest.fixture
def no_bench_work(monkeypatch):
    """Fail the test if danet-bench or danet-demo starts exporting or timing."""
    from danet_deploy.bench import runner

    def started(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(runner, "run_benchmark", started)
    monkeypatch.setattr(runner, "ensure_artifact", started)


def _reached_the_work(monkeypatch) -> None:
    """Let a command pass its checks and stop, with a recognisable error, where the work begins."""
    from danet_deploy.bench import runner

    def reached(*args, **kwargs):
        raise ConfigError("reached the work")

    monkeypatch.setattr(runner, "run_benchmark", reached)
    monkeypatch.setattr(runner, "ensure_artifact", reached)


@pytest.mark.parametrize("stem", ["../../escape", "sub/bench", "/tmp/bench", "", " ", "..", "."])
def test_bench_stem_must_be_a_plain_name(stem, tmp_path, no_bench_work, capsys):
    before = snapshot(tmp_path)
    assert run_cli("bench", [*BENCH_TINY, "--output", str(tmp_path / "a" / "b"), "--stem", stem]) == 2
    err = capsys.readouterr().err
    assert "--stem" in err and "plain file name" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "inf", "-inf"])
def test_bench_timeout_must_be_finite_and_positive(timeout, tmp_path, no_bench_work, capsys):
    assert run_cli("bench", [*BENCH_TINY, "--output", str(tmp_path / "out"), f"--timeout={timeout}"]) == 2
    err = capsys.readouterr().err
    assert "--timeout must be a finite number of seconds > 0" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bench_keeps_the_users_report_files_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("bench.md", "bench.json", "bench.csv"):
        (out / name).write_text(f"my own {name}")
    (out / "mine.json").write_text("my own mine.json")
    before = snapshot(tmp_path)
    _reached_the_work(monkeypatch)
    assert run_cli("bench", [*BENCH_TINY, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already has bench.json, bench.csv, bench.md" in err and "--force" in err and "reached" not in err
    assert run_cli("bench", [*BENCH_TINY, "--output", str(out), "--stem", "mine"]) == 2
    assert "already has mine.json" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    # another stem, or --force, passes the check and reaches the work
    assert run_cli("bench", [*BENCH_TINY, "--output", str(out), "--stem", "other"]) == 2
    assert "reached the work" in capsys.readouterr().err
    assert run_cli("bench", [*BENCH_TINY, "--output", str(out), "--force"]) == 2
    assert "reached the work" in capsys.readouterr().err


def test_demo_keeps_the_users_files_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    (out / "bench").mkdir(parents=True)
    (out / "overlay.png").write_text("my own overlay")
    (out / "parity.json").write_text("{}")
    (out / "bench" / "bench.md").write_text("my notes")
    before = snapshot(tmp_path)
    _reached_the_work(monkeypatch)
    assert run_cli("demo", [*DEMO_TINY, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "overlay.png, parity.json, bench/bench.md" in err and "--force" in err and "reached" not in err
    assert snapshot(tmp_path) == before
    assert run_cli("demo", [*DEMO_TINY, "-o", str(out), "--force"]) == 2
    assert "reached the work" in capsys.readouterr().err


def test_demo_checks_its_arguments_and_output_before_creating_anything(tmp_path, no_bench_work, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    before = snapshot(tmp_path)
    assert run_cli("demo", [*DEMO_TINY, "-o", str(a_file)]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    assert run_cli("demo", [*DEMO_TINY, "-o", str(a_file / "sub")]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    for bad in (["--iters", "0"], ["--warmup", "-1"], ["--combos", "onnxruntime:fp64"], ["--input-size", "16x16"]):
        assert run_cli("demo", [*DEMO_TINY, *bad, "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "--iters must be >= 1" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before  # no empty output folder left behind


def test_demo_read_only_output_is_a_typed_error(tmp_path, no_bench_work, capsys):
    with read_only(tmp_path / "ro") as ro:
        before = snapshot(tmp_path)
        assert run_cli("demo", [*DEMO_TINY, "-o", str(ro / "demo")]) == 2
        assert run_cli("demo", [*DEMO_TINY, "-o", str(ro)]) == 2
        err = capsys.readouterr().err
        assert err.count("read-only or no permission") == 2 and "Traceback" not in err
        assert snapshot(tmp_path) == before


def test_make_demo_reruns_into_its_own_folder(tmp_path, no_bench_work):
    """``make demo`` runs danet-demo into one fixed folder every time: its command must pass the
    refusal to replace the previous run's results (and only that: the other checks still apply)."""
    import dataclasses
    import shlex

    from danet_deploy import demo
    from danet_deploy.cli.dataclass_args import parse_request
    from danet_deploy.cli.demo import build_parser

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "danet-demo" in line and not line.startswith("#"))
    argv = shlex.split(line)[1:]
    args = parse_request(demo.DemoRequest, build_parser(), argv)
    args = dataclasses.replace(args, output=str(tmp_path / "runs" / "demo"))  # an earlier run's results are there
    for name in demo.output_names():
        (tmp_path / "runs" / "demo" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / "demo" / name).write_text("earlier run")
    demo.demo_config(args)  # no refusal
