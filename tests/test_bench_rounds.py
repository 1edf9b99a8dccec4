"""Per-round paired ratios and the FP32 floor: the two figures that keep a noisy VM's drift and an
unreachable FP32 goal from being read as an engine's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from danet_deploy.bench.report import BenchReport, fp32_floor, header_lines, to_markdown
from danet_deploy.bench.rows import Row
from danet_deploy.bench.runner import _add_ratios
from danet_deploy.bench.timing import paired_round_ratios, ratio_spread, round_p50s
from danet_deploy.errors import ConfigError

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def test_round_p50s_splits_pooled_timings_by_round_and_drops_a_short_tail():
    assert round_p50s([1, 2, 3, 10, 20, 30, 99], 3) == [2.0, 20.0]
    assert round_p50s([1.0, 2.0], 0) == [] and round_p50s([], 3) == []


def test_paired_ratios_cancel_drift_that_pooled_p50s_do_not():
    """The machine doubles its speed between rounds; the engine is 0.2x the reference in both.
    Pooled p50s of an uneven mix read anything; paired rounds read 0.2 every time."""
    reference = [100.0] * 5 + [50.0] * 5
    engine = [20.0] * 5 + [10.0] * 5
    assert paired_round_ratios(engine, reference, 5) == [0.2, 0.2]
    assert ratio_spread([0.2, 0.25, 0.1]) == {"median": 0.2, "min": 0.1, "max": 0.25, "rounds": 3}
    assert ratio_spread([]) is None


@given(
    st.lists(st.floats(0.5, 2.0), min_size=1, max_size=6),
    st.floats(0.05, 3.0),
    st.integers(1, 5),
)
def test_a_constant_engine_ratio_survives_any_per_round_drift(speeds, ratio, iters):
    reference = [100.0 * s for s in speeds for _ in range(iters)]
    engine = [t * ratio for t in reference]
    got = paired_round_ratios(engine, reference, iters)
    assert len(got) == len(speeds) and all(abs(r - ratio) <= 1e-4 + 1e-4 * ratio for r in got)


def test_rounds_pair_only_where_both_rows_completed_them():
    assert paired_round_ratios([10.0] * 6, [20.0] * 3, 3) == [0.5]  # the reference ran one round


def _committed_report() -> dict:
    """A committed danet-bench report in today's schema (older ones are read up to it)."""
    for path in sorted(RESULTS.glob("**/bench.json")):
        data = BenchReport.from_dict(json.loads(path.read_text())).to_dict()
        if data.get("flops") and any((r["engine"], r["precision"]) == ("torch", "fp32") for r in data["rows"]):
            return data
    raise AssertionError("no committed danet-bench report with FLOPs and a torch fp32 row")


def test_fp32_floor_is_flops_at_the_gemm_peak_against_the_torch_row():
    data = _committed_report()
    floor = fp32_floor(data)
    assert floor is not None
    expected_ms = data["flops"]["total"] / (data["gemm"]["gflops_peak"] * 1e9) * 1e3
    assert floor["floor_ms"] == pytest.approx(expected_ms, abs=1e-3)
    ref = next(r for r in data["rows"] if (r["engine"], r["precision"]) == ("torch", "fp32"))
    rounds = round_p50s(ref["latencies_ms"], data["config"]["iters"]) if ref["rounds"] > 1 else [ref["p50_ms"]]
    assert floor["ratio_vs_torch_fp32"] == pytest.approx(expected_ms / min(rounds), abs=1e-4)  # torch's fastest round
    assert any(line.startswith("FP32 floor: ") for line in header_lines(data))
    # no FP32 row of a real run beats the floor (it would mean the yardstick read low)
    for row in data["rows"]:
        if row["precision"] == "fp32" and row["p50_ms"]:
            assert row["p50_ms"] >= floor["floor_ms"]


def test_fp32_floor_needs_flops_peak_and_a_timed_reference():
    data = _committed_report()
    assert fp32_floor({**data, "gemm": {}}) is None
    assert not any(line.startswith("FP32 floor") for line in header_lines({**data, "gemm": {}}))
    no_ref = {**data, "rows": [r for r in data["rows"] if r["engine"] != "torch"]}
    floor = fp32_floor(no_ref)
    assert floor is not None and floor["ratio_vs_torch_fp32"] is None


def test_older_rows_without_round_ratios_still_read_and_render():
    data = _committed_report()
    for row in data["rows"]:
        row.pop("ratio_rounds", None)
    report = BenchReport.from_dict({**data, "schema_version": 4})  # a v4 file reads as v5
    assert all(r.ratio_rounds == [] for r in report.rows)
    header = next(line for line in to_markdown(report).splitlines() if "per round" in line)
    column = header.split("|").index(" per round ")
    first_row = to_markdown(report).splitlines()[to_markdown(report).splitlines().index(header) + 2]
    assert first_row.split("|")[column].strip() == "-"  # no rounds: no per-round cell
    rows = [Row.from_dict({**data["rows"][0], "ratio_rounds": [0.5, 0.25]})]
    assert rows[0].ratio_rounds == [0.5, 0.25]
    markdown = to_markdown({**data, "rows": [{**data["rows"][0], "ratio_rounds": [0.5, 0.25]}]})
    assert "0.250-0.500" in markdown


@pytest.mark.parametrize("bad", [["x"], [None], 0.5, [True], {"a": 1}])
def test_a_malformed_ratio_rounds_is_refused_by_name(bad):
    data = _committed_report()
    with pytest.raises(ConfigError, match="ratio_rounds"):
        Row.from_dict({**data["rows"][0], "ratio_rounds": bad})


def _timed(engine: str, precision: str, latencies: list[float], rounds: int, status: str = "ok") -> Row:
    row = Row(engine, precision, None, 1, 2, status=status, rounds=rounds, latencies_ms=latencies)
    row.p50_ms = sorted(latencies)[len(latencies) // 2] if latencies else None
    return row


def test_add_ratios_pairs_rounds_only_with_a_reference_that_ran_two_or_more():
    ref = _timed("torch", "fp32", [100.0, 100.0, 50.0, 50.0], rounds=2)
    ort = _timed("onnxruntime", "fp32", [20.0, 20.0, 10.0, 10.0], rounds=2)
    one = _timed("openvino", "fp32", [30.0, 30.0], rounds=1)
    failed = _timed("openvino", "int8", [], rounds=0, status="failed")
    _add_ratios([ref, ort, one, failed], iters=2)
    assert ort.ratio_rounds == [0.2, 0.2] and ref.ratio_rounds == [1.0, 1.0]
    assert one.ratio_rounds == [] and one.ratio_vs_torch_fp32 is not None  # one round: pooled ratio only
    assert failed.ratio_rounds == [] and failed.ratio_vs_torch_fp32 is None
    lone = _timed("onnxruntime", "fp32", [20.0, 20.0, 10.0, 10.0], rounds=2)
    _add_ratios([_timed("torch", "fp32", [100.0, 100.0], rounds=1), lone], iters=2)
    assert lone.ratio_rounds == []  # the reference ran one round: nothing to pair
    alone = _timed("onnxruntime", "fp32", [20.0, 20.0, 10.0, 10.0], rounds=2)
    _add_ratios([alone], iters=2)
    assert alone.ratio_rounds == [] and alone.ratio_vs_torch_fp32 is None  # no reference row
