"""benchmarks/fused_attention.py: its variants, its reading of the issue's goals, and (slow) a whole run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


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
    assert verdict["fp32_floor"] is None  # no floor measured: none claimed


def _row(name: str, rounds: list[float], **more):
    return {"name": name, "round_p50_ms": rounds, "p50_ms": sorted(rounds)[len(rounds) // 2], **more}


def test_derive_reads_goals_from_median_rounds_and_the_floor_at_the_machines_fastest():
    """Round medians decide the goals (a bimodal row's few fast rounds do not); the base is the
    faster torch form that ran every round; the floor pairs the best peak with torch's fastest round."""
    report = {
        "rows": [
            _row("torch fp32 eager", [200.0, 150.0, 220.0]),
            _row("torch fp32 eager, unfused", [100.0], refused="failed: round 2"),  # never the base
            _row("onnxruntime fp32 fused", [140.0, 120.0, 150.0]),
            _row(
                "openvino int8 fused attention-bf16",
                [20.0, 38.0, 40.0],
                agreement=0.999,
                profile={"attention": {"share": 0.31}},
            ),
            _row("openvino int8 fused", [44.0, 43.0, 46.0], agreement=0.999, profile={"attention": {"share": 0.43}}),
        ],
        "flops_total": 30 * 10**9,
        "gemm_peak_gflops_rounds": [300.0, None, 200.0],
    }
    derived = _script().derive(report)
    assert derived["ratio_base"] == "torch fp32 eager"
    rows = {r["name"]: r for r in derived["rows"]}
    bf16 = rows["openvino int8 fused attention-bf16"]
    assert bf16["ratio_of_medians"] == 0.19 and bf16["ratio_rounds"] == [0.1, 0.2533, 0.1818]
    assert bf16["ratio_paired"]["min"] == 0.1 and "ratio_of_medians" not in rows["torch fp32 eager, unfused"]
    verdict = derived["verdict"]
    assert verdict["best_int8_at_99"]["name"] == "openvino int8 fused attention-bf16"
    assert verdict["best_int8_at_99"]["ratio"] == 0.19  # not 0.1, its one fast round
    assert verdict["openvino_int8_attention_share"] == {
        "openvino int8 fused attention-bf16": 0.31,
        "openvino int8 fused": 0.43,
    }
    # 30 GFLOP at the best peak 300 GFLOP/s = 100 ms; torch's fastest round 150 ms; median peak 250 -> 120 ms / 200 ms
    assert derived["fp32_floor"] == {"gflop": 30.0, "floor_ms": 100.0, "ratio_best": 0.6667, "ratio_median": 0.6}
    assert verdict["fp32_floor"] == {"floor_ms": 100.0, "ratio_best": 0.6667, "ratio_median": 0.6}
    text = _script().markdown(
        {
            **derived,
            "rows": [
                {k: v for k, v in r.items() if k != "profile"} for r in derived["rows"]
            ],  # tables need whole profiles
            "config": {"size": [8, 8], "threads": 2, "profile_rounds": 1},
            "machine": {"cpu": {"model": "x"}, "cpu_features": {}, "load_average": None},
            "model": {"name": "m", "weights": "w"},
            "reference": "torch fp32 eager",
            "command": "c",
            "created": "t",
            "goals": "g",
        }
    )
    assert "| openvino int8 fused attention-bf16 | 38.0 | 0.19 | 0.19 | 0.1333 | 0.100-0.253 |" in text  # 20/150
    assert "take 100.0 ms" in text and "0.6667x torch eager FP32's fastest round" in text


def test_median_profile_is_the_profile_of_the_quoted_share():
    script = _script()
    profiles = [{"attention": {"share": s}, "tag": s} for s in (0.4, 0.3, 0.35, 0.2)] + [{"error": "failed"}]
    assert script.median_profile(profiles)["tag"] == 0.3  # lower middle of 0.2, 0.3, 0.35, 0.4
    assert script.median_profile([{"error": "failed"}]) is None
    # the share quoted for a row is its median profile's, with an even count too
    row = {"name": "openvino int8 fused", "profile": script.median_profile(profiles)}
    assert script.verdict([row])["openvino_int8_attention_share"] == {"openvino int8 fused": 0.3}


def test_rederive_rewrites_a_saved_run_from_its_measurements_only(tmp_path):
    """A committed result re-derives to the same figures (the measurements are all it reads), and
    a file that is not one of its results is refused with exit 2."""
    saved = RESULTS / "fused_attention-danet_demo-512x512-paired.json"
    copy = tmp_path / saved.name
    copy.write_text(saved.read_text())
    assert _script().main(["--rederive", str(copy)]) == 0
    before, after = json.loads(saved.read_text()), json.loads(copy.read_text())
    assert after["verdict"] == before["verdict"] and after["fp32_floor"] == before["fp32_floor"]
    assert [r.get("round_p50_ms") for r in after["rows"]] == [r.get("round_p50_ms") for r in before["rows"]]
    assert (tmp_path / "fused_attention-danet_demo-512x512-paired.md").read_text().count("re-derived") == 1
    for text in ('{"rows": 3}', "[1, 2]", '{"rows": ["x"]}', "{not json", ""):
        bogus = tmp_path / "bogus.json"
        bogus.write_text(text)
        with pytest.raises(SystemExit) as stopped:
            _script().main(["--rederive", str(bogus)])
        assert stopped.value.code == 2, text
    with pytest.raises(SystemExit) as stopped:
        _script().main(["--rederive", str(tmp_path / "missing.json")])
    assert stopped.value.code == 2


def test_rederive_that_cannot_write_says_so_and_leaves_the_file(tmp_path, capsys):
    script = _script()
    saved = tmp_path / "run.json"
    saved.write_text((RESULTS / "fused_attention-danet_demo-512x512-paired.json").read_text())
    before = saved.read_text()

    def unwritable(report, stem):
        raise PermissionError(13, "Permission denied", str(stem))

    script.write_outputs = unwritable
    with pytest.raises(SystemExit) as stopped:
        script.main(["--rederive", str(saved)])
    assert stopped.value.code == 2 and "cannot write the results beside it" in capsys.readouterr().err
    assert saved.read_text() == before


def test_profile_rounds_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        _script().main(["--profile-rounds", "0"])
    assert stopped.value.code == 2 and "--profile-rounds must be at least 1" in capsys.readouterr().err


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
    assert all(len(r["round_p50_ms"]) == 2 and len(r["ratio_rounds"]) == 2 for r in timed)
    assert all(r["ratio_of_medians"] > 0 and len(r["attention_share_rounds"]) == 2 for r in timed)
    base = next(r for r in timed if r["name"] == report["ratio_base"])
    assert base["ratio_rounds"] == [1.0, 1.0] and base["ratio_of_medians"] == 1.0
    floor = report["fp32_floor"]
    assert len(report["gemm_peak_gflops_rounds"]) == 2 and floor["ratio_best"] > 0 and floor["ratio_median"] > 0
    assert all(t >= floor["floor_ms"] for r in timed for t in r["round_p50_ms"])  # no round below the floor
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
