"""Benchmark scripts write a fresh folder by default and never replace a report without --force.

``benchmarks/runtime_overhead.py`` and ``benchmarks/serve.py`` wrote over the committed
``benchmarks/results/`` files (which the README quotes) on every plain run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.util.result_files import BENCHMARK_RUNS, benchmark_result_paths

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_is_a_fresh_folder_outside_the_committed_results(tmp_path):
    md, js = benchmark_result_paths(None, ["overhead.md", "overhead.json"], tmp_path, force=False)
    assert md.parent == js.parent and md.parent.parent == tmp_path / BENCHMARK_RUNS
    assert md.name == "overhead.md" and js.name == "overhead.json" and md.parent.name.startswith("overhead-")
    assert not md.parent.exists()  # nothing is created before the run has something to write


def test_an_existing_report_or_its_sibling_is_refused_without_force(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ConfigError, match="--force"):
        benchmark_result_paths(tmp_path / "r.md", ["x.md", "x.json"], tmp_path, force=False)
    assert benchmark_result_paths(tmp_path / "r.md", ["x.md", "x.json"], tmp_path, force=True) == [
        tmp_path / "r.md",
        tmp_path / "r.json",
    ]


def test_runtime_overhead_refuses_before_measuring(tmp_path):
    script = _script("runtime_overhead")
    assert script.build_parser().parse_args([]).out is None
    committed = tmp_path / "runtime_overhead.md"
    committed.write_text("committed numbers")
    with pytest.raises(ConfigError, match="already exists"):
        script.main(["--out", str(committed), "--sizes", "bad"])  # a measurement would fail on the size first
    assert committed.read_text() == "committed numbers"


def test_serve_benchmark_refuses_before_measuring(tmp_path):
    pytest.importorskip("tritonclient.http", reason="tritonclient (serve extra) not installed")
    script = _script("serve")
    assert script.build_parser().parse_args([]).out is None
    committed = tmp_path / "serve.md"
    committed.write_text("committed numbers")
    with pytest.raises(ConfigError, match="already exists"):
        script.main(["--out", str(committed), "--artifact", str(tmp_path / "missing")])
    assert committed.read_text() == "committed numbers"
