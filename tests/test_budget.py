"""INT8 accuracy budget: request validation, the bounded search, and the ONNX Runtime path end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import isolated_cache
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.errors import ConfigError
from danet_deploy.export.budget import (
    SIDE_SUFFIX,
    AccuracyBudget,
    AccuracyBudgetError,
    reproduce_policy,
    search_float_layers,
)
from danet_deploy.export.pipeline import ExportRequest


def _request(**kw):
    base = dict(
        model="danet_demo",
        target="onnxruntime",
        precision="int8",
        input_size=(64, 64),
        calib_count=2,
        max_accuracy_drop=0.3,
    )
    return ExportRequest(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(precision="fp16"), "applies to --precision int8"),
        (dict(target="onnx", precision="fp32"), "applies to --precision int8, not fp32"),
        (dict(max_accuracy_drop=-1.0), ">= 0"),
        (dict(max_accuracy_drop=float("nan")), "finite"),
        (dict(accuracy_metric="top1"), "must be one of miou, agreement"),
        (dict(model="danet_r50_d8", accuracy_metric="miou"), "needs labels"),
        (dict(val="photos", accuracy_metric="miou"), "needs labels"),
        (dict(val="photos", calib="photos", accuracy_metric="agreement"), "is the calibration source"),
        (dict(val="/no/such/folder", accuracy_metric="agreement"), "not an image folder"),
        (dict(val_count=0), "--val-count"),
        (dict(budget_evaluations=1), "--budget-evaluations"),
        (dict(max_accuracy_drop=None, accuracy_metric="miou"), "only apply with --max-accuracy-drop"),
        (dict(target="tensorrt", options={"legacy_calibrator": True}), "legacy-calibrator"),
    ],
)
def test_bad_budget_requests_fail_before_any_work(kw, message):
    with pytest.raises(ConfigError, match=message):
        _request(**kw)


def test_same_folder_for_validation_and_calibration_is_refused(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(ConfigError, match="is the calibration source"):
        _request(val=str(tmp_path / "imgs"), calib=str(tmp_path / "imgs" / ".." / "imgs"), accuracy_metric="agreement")


def test_metric_defaults_follow_the_labels():
    assert _request().budget.metric == "miou"  # danet_demo on the generated (labelled) val scenes
    assert _request(model="danet_r50_d8").budget.metric == "agreement"  # other classes: no labels
    assert _request(max_accuracy_drop=None).budget is None
    recorded = _request().to_dict()["accuracy_budget"]
    assert recorded["max_drop"] == 0.3 and recorded["metric"] == "miou" and "mIoU points" in recorded["unit"]


def test_cli_rejects_a_budget_on_fp16(capsys):
    from danet_deploy.cli.export import main

    assert (
        main(["--model", "danet_demo", "--target", "onnxruntime", "--precision", "fp16", "--max-accuracy-drop", "0.3"])
        == 2
    )
    assert "applies to --precision int8" in capsys.readouterr().err


# -- the search, with a fake quantizer: drop(k) falls as more ranked layers stay in float ----------
def _fake(drop_of_k, n, max_evaluations, latency=lambda k: 10.0 + 0.01 * k):  # float layers cost time
    budget = AccuracyBudget(max_drop=0.3, metric="agreement", max_evaluations=max_evaluations)
    calls = {"quantize": [], "rank": 0}

    def quantize(extra, tag):
        calls["quantize"].append(len(extra))
        return Path(f"k{len(extra)}")

    def evaluate(path):
        k = int(path.name[1:])
        return {"drop": drop_of_k(k), "value": 100 - drop_of_k(k), "agreement": 1.0}

    def rank(path):
        calls["rank"] += 1
        return [
            {
                "node": f"n{i}",
                "tensor": f"t{i}",
                "op": "Conv",
                "added_nsr": 1.0 / (i + 1),
                "sqnr_db": 30.0,
                "charged_as": "int8 layer",
            }
            for i in range(n)
        ]

    result = search_float_layers(quantize, evaluate, rank, budget, lambda p: latency(int(p.name[1:])), lambda m: None)
    return result, calls


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), threshold=st.integers(0, 200))
def test_search_finds_the_fewest_layers_when_drop_is_monotone(n, threshold):
    threshold = min(threshold, n)
    evaluations = 2 * (n.bit_length() + 1) + 1  # enough for doubling plus bisection
    result, calls = _fake(lambda k: 0.0 if k >= threshold else 1.0 + (threshold - k), n, evaluations)
    assert result.met and result.chosen.k == threshold
    assert len(calls["quantize"]) <= evaluations and calls["rank"] == (0 if threshold == 0 else 1)
    assert result.float_nodes() == [f"n{i}" for i in range(threshold)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 100), cap=st.integers(2, 6))
def test_search_never_exceeds_its_evaluation_bound(n, cap):
    result, calls = _fake(lambda k: 1.0, n, cap)  # a budget nothing meets
    assert len(calls["quantize"]) <= cap and not result.met
    assert result.chosen.drop == 1.0


def test_search_prefers_the_fastest_graph_that_meets_the_budget():
    # doubling meets at k=4, bisection at k=3; k=4 happens to be faster (fewer float layers is not always faster)
    result, _ = _fake(lambda k: 0.0 if k >= 3 else 1.0, 8, 8, latency=lambda k: 5.0 if k == 4 else 9.0)
    timed = [e for e in result.evaluations if e.met]
    assert len(timed) >= 2 and all(e.latency_ms is not None for e in timed)
    assert result.chosen.k == 4 and result.chosen.latency_ms == min(e.latency_ms for e in timed)


def test_the_policy_graph_is_one_more_candidate():
    budget = AccuracyBudget(max_drop=0.3, metric="agreement", max_evaluations=6)

    def run(policy_drop, policy_ms):
        paths = {}

        def quantize(nodes, tag):
            paths[tag] = Path(tag)
            return paths[tag]

        def evaluate(path):
            drop = policy_drop if path.name == "policy" else (0.0 if int(path.name[1:]) >= 2 else 1.0)
            return {"drop": drop, "value": 100 - drop, "agreement": 1.0}

        def rank(p):
            return [
                {"node": f"n{i}", "tensor": "t", "added_nsr": 1.0, "sqnr_db": 20.0, "charged_as": "x"} for i in range(5)
            ]

        def lat(p):
            return policy_ms if p.name == "policy" else 10.0 + int(p.name[1:])

        return search_float_layers(
            quantize, evaluate, rank, budget, lat, lambda m: None, alternative=lambda: quantize([], "policy")
        )

    faster = run(0.1, 5.0)
    assert faster.chosen.label == "policy" and faster.met
    slower = run(0.1, 50.0)
    assert slower.chosen.label == "search" and slower.chosen.k == 2
    failing = run(2.0, 1.0)  # fast but outside the budget: never chosen
    assert failing.chosen.label == "search" and failing.evaluations[0].label == "policy"
    assert len(failing.evaluations) <= budget.max_evaluations


def test_reproduce_policy_names_exactly_the_kept_nodes():
    from danet_deploy.export.policy import PrecisionPolicy

    spec = reproduce_policy("attention-float", ["/a/b.0/Conv", "/c/Add"])
    policy = PrecisionPolicy.from_spec(spec)
    assert policy.keep_attention and reproduce_policy("quantize-all", []) == "quantize-all"
    import re

    def kept(name):
        return any(re.search(p, name) for p in policy.patterns)

    assert kept("/a/b.0/Conv") and kept("/c/Add")
    assert not kept("/a/bx0/Conv") and not kept("/a/b.0/Conv_1") and not kept("/x/c/Add")  # escaped, anchored


# -- end to end: ONNX Runtime INT8 ----------------------------------------------------------------
def test_onnxruntime_budget_met_is_recorded_and_reproducible(tmp_path):
    from danet_deploy import runtime
    from danet_deploy.export import export
    from danet_deploy.export.budget import load_validation, onnx_masks

    with isolated_cache(tmp_path / "cache"):
        path, manifest = export(
            _request(output=tmp_path / "int8", max_accuracy_drop=100.0, accuracy_metric="agreement", val_count=2),
            log=lambda m: None,
        )
    entry = manifest.extra["accuracy_budget"]
    assert entry["met"] and entry["metric"] == "agreement" and entry["latency_ms"] > 0
    # both the --policy graph and the all-INT8 start meet so loose a budget: both timed, the faster kept
    graphs = {e["graph"]: e for e in entry["evaluations"]}
    assert set(graphs) == {"policy", "search"} and all(e["met"] and e["latency_ms"] > 0 for e in graphs.values())
    assert entry["latency_ms"] == min(e["latency_ms"] for e in graphs.values())
    policy = manifest.extra["quantization"]["policy"]  # the artifact's float nodes are the budget's choice
    assert policy["float_nodes"] == [k["node"] for k in entry["layers_kept_float"]]
    if entry["chosen_graph"] == "policy":
        assert len(entry["layers_kept_float"]) == 8 and entry["reproduce_policy"] == "attention-float"
    else:
        assert entry["layers_kept_float"] == [] and entry["reproduce_policy"] == "quantize-all"
    assert entry["validation"]["split"] == "val" and manifest.export["accuracy_budget"]["max_drop"] == 100.0
    # the recorded drop is what the artifact itself gives on the same validation images
    budget = AccuracyBudget(100.0, "agreement", val_count=2)
    val = load_validation(budget, (64, 64), manifest.preprocessing, manifest.num_classes, lambda m: None)
    with runtime.load(path) as session:
        masks = np.stack([session.infer(val.tensors[i : i + 1])[0].argmax(0) for i in range(2)])
    from danet_deploy.export.pipeline import ExportRequest as Req
    from danet_deploy.export.pipeline import export as export_fp32

    ref, _ = export_fp32(
        Req(model="danet_demo", target="onnx", input_size=(64, 64), output=tmp_path / "fp32"), log=lambda m: None
    )
    val.set_reference(onnx_masks(ref / "model.onnx", val.tensors))
    assert val.score(masks)["drop"] == pytest.approx(entry["measured_drop"], abs=0.05)


def test_onnxruntime_unmet_budget_exits_nonzero_and_keeps_the_best_graph_aside(tmp_path):
    out = tmp_path / "int8"
    with isolated_cache(tmp_path / "cache"), pytest.raises(AccuracyBudgetError, match="not met") as err:
        from danet_deploy.export import export

        # a negative drop is refused, so ask for 0 with a metric no INT8 graph can reach exactly
        # while float layers are capped at 2 evaluations (the policy graph and one more)
        export(
            _request(
                output=out,
                max_accuracy_drop=0.0,
                accuracy_metric="agreement",
                val_count=2,
                budget_evaluations=2,
                policy="quantize-all",
            ),
            log=lambda m: None,
        )
    assert not out.exists()  # never written as the artifact
    side = out.parent / f"{out.name}{SIDE_SUFFIX}"
    assert err.value.side == side and (side / "model.onnx").is_file()
    report = json.loads((side / "budget.json").read_text())
    assert report["met"] is False and report["measured_drop"] > 0 and len(report["evaluations"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("target", ["openvino", "tensorrt"])
def test_budget_on_the_other_int8_paths(tmp_path, target):
    pytest.importorskip("nncf" if target == "openvino" else "onnxruntime")
    from danet_deploy import runtime
    from danet_deploy.export import export

    with isolated_cache(tmp_path / "cache"):
        path, manifest = export(
            _request(
                target=target,
                output=tmp_path / target,
                max_accuracy_drop=100.0,
                accuracy_metric="agreement",
                val_count=2,
            ),
            log=lambda m: None,
        )
    extra = manifest.extra
    entry = extra["quantization"]["accuracy_budget"] if target == "openvino" else extra["tensorrt"]["accuracy_budget"]
    assert entry["met"] and entry["measured_drop"] <= 100.0 and entry["metric"] == "agreement"
    assert entry["method"] == (
        "nncf.quantize_with_accuracy_control"
        if target == "openvino"
        else "sensitivity search (per-layer ranking, doubling + bisection)"
    )
    with runtime.load(path) as session:
        assert session.run(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64)
