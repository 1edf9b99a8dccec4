"""The benchmark's typed records: Row and BenchReport read back exactly what they write, and refuse
what no benchmark wrote; the worker's spec round-trips through its JSON."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.bench.report import SCHEMA, SCHEMA_VERSION, BenchReport, upgrade_report, validate
from danet_deploy.bench.rows import CSV_FIELDS, STATUSES, Row
from danet_deploy.bench.worker import WorkerSpec
from danet_deploy.errors import ConfigError

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
HINTS = typing.get_type_hints(Row)

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_scalar = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _finite | st.text(max_size=8)
_json_dict = st.dictionaries(st.text(max_size=8), _scalar, max_size=3)


def _strategy(hint: typing.Any) -> st.SearchStrategy[typing.Any]:
    """Values a row field of annotation ``hint`` may hold in a written report."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return st.one_of(*(_strategy(a) for a in typing.get_args(hint)))
    if typing.get_origin(hint) is list:
        return st.lists(_strategy(typing.get_args(hint)[0]), max_size=4)
    if typing.get_origin(hint) is dict:
        return _json_dict
    return {
        type(None): st.none(),
        str: st.text(max_size=12),
        bool: st.booleans(),
        int: st.integers(-(10**6), 10**6),
        float: _finite,
    }[hint]


_written_rows = st.builds(
    Row, **({name: _strategy(hint) for name, hint in HINTS.items()} | {"status": st.sampled_from(STATUSES)})
)


@settings(max_examples=60, deadline=None)
@given(_written_rows)
def test_a_row_reads_back_from_its_json_unchanged(row):
    text = json.dumps(row.to_dict())
    again = Row.from_dict(json.loads(text))
    assert again == row and json.dumps(again.to_dict()) == text
    assert list(row.to_dict()) == [f.name for f in dataclasses.fields(Row)]  # every field, in order


@settings(max_examples=40, deadline=None)
@given(_written_rows, st.sampled_from(CSV_FIELDS))
def test_a_row_without_a_column_is_refused_naming_it(row, name):
    data = row.to_dict()
    del data[name]
    with pytest.raises(ConfigError, match=f"lacks \\['{name}'\\]"):
        Row.from_dict(data)


@pytest.mark.parametrize(
    "name, value",
    [
        ("p50_ms", "12"),
        ("batch", 1.5),
        ("batch", True),
        ("latencies_ms", [1, "x"]),
        ("engine_info", [1]),
        ("engine", None),
        ("reused_artifact", 1),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_field(name, value):
    data = Row("onnxruntime", "fp32", "onnx", 1, 2, status="ok").to_dict() | {name: value}
    with pytest.raises(ConfigError, match=f"'{name}'"):
        Row.from_dict(data)


def test_unknown_keys_and_statuses_are_refused_and_nulls_read_as_unknown():
    data = Row("onnxruntime", "fp32", "onnx", 1, 2, status="ok").to_dict()
    with pytest.raises(ConfigError, match="unknown field"):
        Row.from_dict(data | {"p42_ms": 1.0})
    with pytest.raises(ConfigError, match="unknown status 'pending'"):
        Row.from_dict(data | {"status": "pending"})  # in-run only, never written
    with pytest.raises(ConfigError, match="must be an object"):
        Row.from_dict(["onnxruntime"])  # type: ignore[arg-type]
    row = Row.from_dict(data | {"batch": None, "latencies_ms": None})  # "null when unknown"; a null list is empty
    assert row.batch is None and row.latencies_ms == []
    latencies = [1.0, 2.0]
    assert Row.from_dict(data | {"latencies_ms": latencies}).latencies_ms is not latencies  # shares nothing


def _report(rows: list[Row]) -> dict[str, typing.Any]:
    """A report as run_benchmark writes it (sections shortened)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": "2026-01-01T00:00:00+00:00",
        "command": "danet-bench --model danet_demo",
        "config": {"model": "danet_demo", "size": [64, 64]},
        "model": {"name": "danet_demo", "source": "danet_demo", "num_classes": 6, "weights": "shipped"},
        "machine": {"cpu": {"model": "x"}, "load_average": {"before": [1.0], "after": [1.0]}},
        "gemm": {"gflops_peak": 10.0},
        "flops": {"total": 5},
        "scenes": {"split": "val", "count": 2},
        "rows": [r.to_dict() for r in rows],
        "summary": {"fp32": None},
        "seconds": 1.5,
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(_written_rows, max_size=3))
def test_a_report_reads_back_as_the_same_json(rows):
    data = _report(rows)
    report = BenchReport.from_dict(json.loads(json.dumps(data)))
    assert report.rows == rows
    assert json.dumps(report.to_dict(), indent=1) == json.dumps(data, indent=1)  # the file on disk, byte for byte


def test_a_report_is_validated_and_its_sections_are_not_shared():
    data = _report([Row("torch", "fp32", None, 1, 2, status="ok", p50_ms=3.0)])
    report = BenchReport.from_dict(data)
    assert report.row("torch", "fp32").p50_ms == 3.0 and report.row("torch", "int8") is None
    assert report.machine.cpu.model == "x" and report.machine.raw is not data["machine"]
    report.gemm["gflops_peak"] = 0.0
    assert data["gemm"]["gflops_peak"] == 10.0
    for broken, match in (
        ({"rows": [{"engine": "torch"}]}, "row 0 lacks"),
        ({"machine": []}, "malformed \\['machine'\\]"),
        ({"seconds": "1"}, "malformed \\['seconds'\\]"),
        ({"schema_version": 2}, "v3/v4/v5"),
    ):
        with pytest.raises(ConfigError, match=match):
            BenchReport.from_dict(data | broken)


def test_the_committed_v3_and_v4_results_read_as_reports():
    found = 0
    for path in sorted(RESULTS.glob("**/bench*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("schema_version", 0) < 3:
            continue  # v1 files predate the readable versions (validate() refuses them as before)
        validate(data)
        report = BenchReport.from_dict(data)
        assert [r.engine for r in report.rows] == [r["engine"] for r in upgrade_report(data)["rows"]], path
        found += 1
    assert found >= 1


@settings(max_examples=30, deadline=None)
@given(
    st.builds(
        WorkerSpec,
        model=st.text(max_size=8),
        scenes=st.text(max_size=8),
        load_options=_json_dict,
        batch=st.integers(1, 8),
        iters=st.integers(1, 50),
        warmup=st.integers(0, 5),
        predictions=st.none() | st.text(max_size=8),
        progress=st.booleans(),
        label=st.text(max_size=8),
        profile_runs=st.integers(0, 5),
    )
)
def test_a_worker_spec_reads_back_from_its_json(spec):
    assert WorkerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_worker_spec_with_an_unknown_key_is_a_runner_bug():
    with pytest.raises(ValueError, match="unknown keys \\['itters'\\]"):
        WorkerSpec.from_dict({"model": "m", "scenes": "s.npz", "itters": 3})
