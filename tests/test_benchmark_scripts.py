"""The training benchmarks' scripts: the step-cost timer and the run chart read and write what they say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from danet_deploy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _val(miou: float, person: float) -> list[dict]:
    return [
        {"size": size, "miou": miou, "per_class_iou": {"person": person, "road": 0.99}}
        for size in ([512, 512], [512, 1024], [384, 640])
    ]


def test_train_step_cost_times_each_variant_and_reports_ratios(tmp_path):
    out = tmp_path / "cost.json"
    assert (
        _script("train_step_cost").main(
            [
                "--variants",
                "base",
                "output_stride=16",
                "--batches",
                "1",
                "--rounds",
                "1",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"base", "output_stride=16"}
    assert rows["base"]["ratio"] == 1.0 and rows["base"]["steps_timed"] == 1
    assert rows["output_stride=16"]["median_s_per_step"] > 0
    assert "cpu" in report["machine"]  # the machine is recorded with every timing


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_train_step_cost_variants_may_change_the_data_of_a_step(tmp_path):
    cost = _script("train_step_cost")
    options, config = cost.parse_variant("base_width=24;batch_size=4;crops_per_scene=2;crops=64x64")
    assert options == {"base_width": 24} and (config.batch_size, config.crops_per_scene) == (4, 2)
    assert config.crops == ((64, 64),)
    out = tmp_path / "cost.json"
    assert (
        cost.main(
            [
                "--variants",
                "base",
                "batch_size=4;crops_per_scene=2",
                "--batches",
                "1",
                "--rounds",
                "1",
                "--with-data",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["with_data"] is True and [r["variant"] for r in report["rows"]][1] == "batch_size=4;crops_per_scene=2"
    for bad in ("batch_size=3", "batch_size=four", "scene_max=100000"):  # 3: no multiple of 4 crops per scene
        with pytest.raises(ConfigError):
            cost.parse_variant(bad)


def test_train_step_cost_refuses_an_unknown_model_option():
    from danet_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model option"):
        _script("train_step_cost").parse_variant("stride=16")


def test_plot_training_runs_reads_reports_and_combined_files(tmp_path):
    pytest.importorskip("matplotlib")
    plot = _script("plot_training_runs")
    report = tmp_path / "run-x.json"
    report.write_text(json.dumps({"val": _val(0.91, 0.71)}))
    combined = tmp_path / "sweep.json"
    combined.write_text(
        json.dumps({"runs": [{"run": "A", "val": _val(0.88, 0.64)}, {"run": "B", "val": _val(0.90, 0.69)}]})
    )
    runs = plot.load_runs([combined, report])
    assert [r["run"] for r in runs] == ["A", "B", "run-x"]
    png = tmp_path / "chart.png"
    assert plot.main([str(combined), str(report), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_training_runs_refuses_a_run_without_results(tmp_path):
    plot = _script("plot_training_runs")
    report = tmp_path / "unscored.json"
    report.write_text(json.dumps({"val": []}))
    with pytest.raises(SystemExit, match="no 'val' results"):
        plot.load_runs([report])


def test_scripts_refuse_bad_arguments_with_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        _script("train_step_cost").main(["--variants", "stride=16"])
    assert stopped.value.code == 2 and "unknown model option" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit) as stopped:
        _script("plot_training_runs").main([str(broken), "--output", str(tmp_path / "x.png")])
    assert stopped.value.code == 2 and "cannot read the reports" in capsys.readouterr().err
