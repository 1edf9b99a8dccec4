"""The typed sections of a benchmark report (machine, config, summary) write back exactly the JSON
they read, and a mistyped value is a ConfigError naming its key path, never another exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.bench.report import SCHEMA, BenchReport, format_table, header_lines, summary_lines, to_markdown
from danet_deploy.bench.sections import MachineInfo, ReportConfig, Summary
from danet_deploy.errors import ConfigError

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"

_text = st.text(max_size=8)
_count = st.none() | st.integers(1, 512)
_number = st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6)
_extra = st.dictionaries(
    st.text(min_size=1, max_size=6).map(lambda k: f"x_{k}"), st.none() | _text | _number, max_size=2
)


def _optional(keys: dict[str, st.SearchStrategy[object]]) -> st.SearchStrategy[dict[str, object]]:
    """Objects holding any subset of ``keys`` (validate has always accepted partial sections), plus unknown keys."""
    return st.fixed_dictionaries({}, optional=keys).flatmap(lambda d: _extra.map(lambda e: {**d, **e}))


_cpu = _optional(
    {
        "model": st.none() | _text,
        "arch": st.none() | _text,
        "features": st.dictionaries(_text, st.booleans(), max_size=3),
        "logical_cores": _count,
        "physical_cores": _count,
        "affinity_cores": _count,
    }
)
_machines = _optional(
    {
        "cpu": _cpu,
        "memory_gib": st.none() | _number,
        "gpus": st.lists(st.fixed_dictionaries({"name": _text, "memory": _text, "driver": _text}), max_size=2),
        "os": _text,
        "python": _text,
        "libraries": st.dictionaries(_text, _text, max_size=3),
        "load_average": st.fixed_dictionaries(
            {"before": st.none() | st.lists(_number, max_size=3), "after": st.lists(_number, max_size=3)}
        ),
    }
)
_configs = _optional(
    {
        "model": _text,
        "engines": st.lists(_text, max_size=3),
        "precisions": st.lists(_text, max_size=3),
        "size": st.lists(st.integers(32, 4096), min_size=2, max_size=2),
        **{k: st.integers(1, 100) for k in ("batch", "iters", "warmup", "threads", "rounds", "profile")},
        "output": st.none() | _text,
        "export_options": st.dictionaries(_text, st.dictionaries(_text, _text, max_size=2), max_size=2),
    }
)
_best = st.none() | st.fixed_dictionaries(
    {"engine": _text, "precision": _text, "p50_ms": _number},
    optional={"ratio_vs_torch_fp32": st.none() | _number, "argmax_agreement": st.none() | _number},
)
_summaries = st.dictionaries(st.sampled_from(["fp32", "fp16", "int8", "int8_at_99"]), _best)
RECORDS = ((MachineInfo, _machines), (ReportConfig, _configs), (Summary, _summaries))


@pytest.mark.parametrize("record, strategy", RECORDS, ids=lambda r: getattr(r, "__name__", ""))
def test_a_section_reads_back_as_the_same_json(record, strategy):
    @settings(max_examples=40, deadline=None)
    @given(strategy)
    def check(data):
        text = json.dumps(data)
        assert json.dumps(record.from_dict(json.loads(text)).to_dict()) == text  # keys, order, values

    check()


def _mutations(data: dict[str, object]) -> st.SearchStrategy[tuple[str, dict[str, object]]]:
    """One known key (or a nested one) replaced by a value of a wrong type; the key path it names."""
    paths = [[k] for k in data] + [[k, n] for k, v in data.items() if isinstance(v, dict) for n in v]
    return st.sampled_from(paths or [["cpu"]]).flatmap(
        lambda path: st.sampled_from([[1], {"a": 1}, "x", 1.5, True]).map(lambda bad: _set(data, path, bad))
    )


def _set(data: dict[str, object], path: list[str], value: object) -> tuple[str, dict[str, object]]:
    new = json.loads(json.dumps(data))
    (new if len(path) == 1 else new[path[0]])[path[-1]] = value
    return ".".join(path), new


@pytest.mark.parametrize("record, strategy", RECORDS, ids=lambda r: getattr(r, "__name__", ""))
def test_a_mutated_section_is_only_ever_a_config_error(record, strategy):
    @settings(max_examples=60, deadline=None)
    @given(strategy.flatmap(_mutations))
    def check(mutated):
        _, data = mutated
        try:
            again = record.from_dict(data)
        except ConfigError as exc:
            assert "benchmark report" in str(exc) and "re-run danet-bench" in str(exc)
        else:
            assert again.to_dict() == data  # an unknown key, or a value of an accepted type

    check()


@pytest.mark.parametrize(
    "record, data, path",
    [
        (MachineInfo, {"cpu": {"logical_cores": "2"}}, "machine.cpu.logical_cores"),
        (MachineInfo, {"cpu": {"features": {"avx": 1}}}, "machine.cpu.features.avx"),
        (MachineInfo, {"gpus": [{"name": 3}]}, "machine.gpus\\[0\\].name"),
        (MachineInfo, {"load_average": {"after": ["x"]}}, "machine.load_average.after"),
        (MachineInfo, [], "machine must be an object"),
        (ReportConfig, {"size": [64]}, "config.size"),
        (ReportConfig, {"batch": True}, "config.batch"),
        (ReportConfig, {"engines": "torch"}, "config.engines"),
        (Summary, {"fp32": {"engine": "torch", "precision": "fp32"}}, "summary.fp32.p50_ms"),
        (Summary, {"int8": []}, "summary.int8 must be an object"),
    ],
)
def test_a_mistyped_value_names_its_key_path(record, data, path):
    with pytest.raises(ConfigError, match=path):
        record.from_dict(data)


def test_the_committed_results_render_the_same_from_the_records():
    found = 0
    for path in sorted(RESULTS.glob("**/bench.json")):
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA or data.get("schema_version", 0) < 3:
            continue
        report = BenchReport.from_dict(data)
        assert report.machine.cpu.logical_cores and report.config.size and report.summary.get("fp32")
        assert header_lines(report) == header_lines(data) and to_markdown(report) == to_markdown(data)
        assert format_table(report) == format_table(data) and summary_lines(report) == summary_lines(data)
        found += 1
    assert found >= 1


@pytest.mark.parametrize("section", ["config", "model", "machine", "gemm", "flops", "scenes", "summary"])
def test_a_report_with_an_empty_section_still_renders(section):
    """``from_dict`` accepts a report whose section is ``{}`` (``validate`` always has); the header
    then said ``KeyError: 'name'`` instead of showing what the report does not say."""
    data = json.loads(sorted(RESULTS.glob("**/bench.json"))[0].read_text())
    data[section] = {}
    report = BenchReport.from_dict(data)
    text = to_markdown(report)
    assert all(line in text for line in header_lines(report))
    format_table(report)
    summary_lines(report)
