"""benchmarks/fused_attention.py: its variants, its reading of the issue's goals, and (slow) a whole run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """A benchmarks/ script as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script():
    return _load("fused_attention")


def test_variants_cover_both_forms_on_both_engines_and_refuse_bf16_without_the_cpu():
    script = _script()
    names = [v["name"] for v in script.variants(bf16=True)]
    for engine in ("onnxruntime", "openvino"):
        for precision in ("fp32", "int8"):
            assert f"{engine} {precision} unfused" in names and f"{engine} {precision} fused" in names
    bf16 = {v["name"]: v for v in script.variants(bf16=False)}["openvino int8 fused attention-bf16"]
    assert "AMX-BF16" in bf16["refused"]


def test_verdict_reads_the_goals_from_one_runs_rows():
    rows = [
        {"name": "torch fp32 eager", "ratio_vs_torch_fp32": 1.0},
        {"name": "onnxruntime fp32 fused", "ratio_vs_torch_fp32": 0.4},
        {"name": "openvino fp32 fused", "ratio_vs_torch_fp32": 0.5},
        {
            "name": "openvino int8 fused",
            "ratio_vs_torch_fp32": 0.12,
            "agreement": 0.995,
            "profile": {"attention": {"share": 0.25}},
        },
        {"name": "onnxruntime int8 fused", "ratio_vs_torch_fp32": 0.1, "agreement": 0.98},
    ]
    verdict = _script().verdict(rows)
    assert verdict["openvino_int8_attention_share"] == {"openvino int8 fused": 0.25}
    assert verdict["best_int8_at_99"] == {
        "name": "openvino int8 fused",
        "ratio": 0.12,
        "rounds": None,
        "agreement": 0.995,
    }
    assert verdict["best_fp32"] == {"name": "onnxruntime fp32 fused", "ratio": 0.4, "rounds": None}
    assert verdict["fp32_floor"] is None


def test_verdict_reads_paired_round_medians_and_median_shares_over_pooled_figures():
    """A fast round of one row against a slow round of torch flattered a pooled ratio; the goals
    are read from the paired per-round median, and the share from the median profile round."""
    paired = {"median": 0.16, "min": 0.1, "max": 0.24, "rounds": 3}
    rows = [
        {
            "name": "openvino int8 fused attention-bf16",
            "ratio_vs_torch_fp32": 0.1,
            "ratio_paired": paired,
            "agreement": 0.999,
            "attention_share_rounds": [0.39, 0.31, 0.29],
            "profile": {"attention": {"share": 0.29}},
        },
        {
            "name": "openvino int8 fused",
            "ratio_vs_torch_fp32": 0.15,
            "ratio_paired": {"median": 0.15, "min": 0.15, "max": 0.15, "rounds": 3},
            "agreement": 0.999,
        },
    ]
    floor = {"ratio_paired": {"median": 0.5, "min": 0.47, "max": 0.52, "rounds": 3}}
    verdict = _script().verdict(rows, floor)
    assert verdict["best_int8_at_99"]["name"] == "openvino int8 fused"  # 0.15 paired beats 0.16
    assert verdict["best_int8_at_99"]["ratio"] == 0.15
    assert verdict["openvino_int8_attention_share"]["openvino int8 fused attention-bf16"] == 0.31
    assert verdict["fp32_floor"]["median"] == 0.5


def test_median_profile_is_the_profile_of_the_quoted_share():
    script = _script()
    profiles = [{"attention": {"share": s}, "tag": s} for s in (0.4, 0.3, 0.35, 0.2)] + [{"error": "failed"}]
    assert script.median_profile(profiles)["tag"] == 0.3  # lower middle of 0.2, 0.3, 0.35, 0.4
    assert script.median_profile([{"error": "failed"}]) is None


@pytest.mark.slow
def test_a_small_run_writes_every_variant_with_profiles(tmp_path):
    assert (
        _script().main(
            [
                "--size",
                "64",
                "64",
                "--val",
                "1",
                "--iters",
                "1",
                "--rounds",
                "2",
                "--calib-count",
                "2",
                "--profile-runs",
                "1",
                "--profile-rounds",
                "2",
                "--only",
                "torch",
                "openvino fp32",
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "fused_attention-danet_demo-64x64.json").read_text())
    timed = [r for r in report["rows"] if r.get("p50_ms")]
    assert {r["name"] for r in timed} == {
        "torch fp32 eager",
        "torch fp32 eager, unfused",
        "openvino fp32 unfused",
        "openvino fp32 fused",
    }
    assert all(r["profile"]["attention"]["share"] is not None for r in timed)
    assert all(len(r["ratio_rounds"]) == 2 and r["ratio_paired"]["rounds"] == 2 for r in timed)
    assert all(len(r["attention_share_rounds"]) == 2 for r in timed)
    base = next(r for r in timed if r["name"] == report["ratio_base"])
    assert base["ratio_rounds"] == [1.0, 1.0]
    floor = report["fp32_floor"]
    assert floor["floor_ms"] > 0 and len(floor["gemm_peak_gflops_rounds"]) == 2 and len(floor["ratio_rounds"]) == 2
    assert all(r["p50_ms"] >= floor["floor_ms"] for r in timed)  # nothing runs below the FP32 floor
    assert "FP32 floor:" in (tmp_path / "fused_attention-danet_demo-64x64.md").read_text()
    assert "cpu_features" in report["machine"] and (tmp_path / "fused_attention-danet_demo-64x64.png").is_file()


def test_issue_variant_set_keeps_the_rows_the_goals_are_read_from():
    script = _script()
    names = [v["name"] for v in script.variants(bf16=True, which="issue")]
    assert names == [
        "torch fp32 eager",
        "onnxruntime fp32 unfused",
        "openvino fp32 unfused",
        "onnxruntime fp32 fused",
        "openvino fp32 fused",
        "onnxruntime int8 fused",
        "openvino int8 fused",
        "openvino int8 fused attention-bf16",
    ]
    assert len(script.variants(bf16=True)) == len(names) + len(script.NOT_IN_ISSUE_SET)
    # agreement is against the unfused torch form when it ran, else against torch eager's default form
    assert script.reference_name(["torch fp32 eager", "torch fp32 eager, unfused"]) == "torch fp32 eager, unfused"
    assert script.reference_name(["torch fp32 eager", "openvino int8 fused"]) == "torch fp32 eager"
    assert script.reference_name(["openvino int8 fused"]) is None


def test_openvino_attention_form_reaches_every_fused_openvino_row_only():
    rows = _script().variants(bf16=True, openvino_form="sdpa")
    forms = {r["name"]: r.get("options", {}).get("attention") for r in rows}
    assert forms["openvino fp32 fused"] == forms["openvino int8 fused attention-bf16"] == "sdpa"
    assert forms["onnxruntime fp32 fused"] == "fused" and forms["openvino int8 unfused"] == "unfused"


def test_suffix_must_be_part_of_a_file_name(capsys):
    """Refused before anything is exported, not after a ten-minute run."""
    with pytest.raises(SystemExit) as stopped:
        _script().main(["--suffix=../elsewhere"])
    assert stopped.value.code == 2 and "no path separators" in capsys.readouterr().err


def _padding_script():
    return _load("attention_padding")


def test_attention_padding_torch_rows_are_the_same_maths_and_the_fastest_is_named():
    """The PyTorch rows (the fused-kernel yardstick) compute PAM exactly like the engines' rows,
    padded or not, and the summary names the fastest variant per engine and precision."""
    script = _padding_script()
    x = script.feeds(256)
    want = script.reference(x)
    runs = script._torch_runs(x, threads=1, bf16=False)
    assert set(runs) == {f"torch f32 {form} pad{p}" for form in ("unfused", "sdpa") for p in script.PADS}
    for name, (run, _) in runs.items():
        assert abs(run()[0, 0] - want).max() < 1e-4, name
    rows = [
        {"variant": "torch bf16 sdpa pad64", "median_ms": 9.3},
        {"variant": "torch bf16 sdpa pad8", "median_ms": 27.0},
        {"variant": "openvino bf16 heads2 pad8", "median_ms": 10.8},
    ]
    assert script.fastest_lines(rows)[2:] == [
        "- torch bf16: 9.3 ms (torch bf16 sdpa pad64)",
        "- openvino bf16: 10.8 ms (openvino bf16 heads2 pad8)",
    ]


def test_fp32_floor_pairs_each_rounds_gemm_peak_with_that_rounds_torch_time():
    """A fast round's peak over a slow round's torch time would read a floor lower than any state
    the machine was in: round k's peak goes with round k's torch p50 only."""
    floor = _script().fp32_floor(10**9 * 100, [400.0, None, 200.0], [500.0, 300.0, 1000.0])
    # round 1: 100 GFLOP at 400 GFLOP/s = 250 ms over 500 ms; round 2 has no peak; round 3: 500/1000
    assert floor["ratio_rounds"] == [0.5, 0.5] and floor["ratio_paired"]["median"] == 0.5
    assert floor["floor_ms"] == 250.0 and floor["gemm_peak_gflops_rounds"] == [400.0, None, 200.0]
    empty = _script().fp32_floor(10**9, [None], [100.0])
    assert empty["floor_ms"] is None and empty["ratio_paired"] is None
