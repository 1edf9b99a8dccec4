"""Bounded calibration memory: ONNX Runtime's own min/max ranges, identical, at about one inference of memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import isolated_cache
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    from danet_deploy.export.pipeline import ExportRequest, export

    root = tmp_path_factory.mktemp("calibmem")
    path, _ = export(
        ExportRequest(model="danet_demo", target="onnx", input_size=(64, 96), output=root / "fp32"), log=lambda m: None
    )
    return path / "model.onnx"


def _reader(n=3):
    from danet_deploy.data.calibration import ort_reader

    rng = np.random.default_rng(0)
    return ort_reader([rng.standard_normal((1, 3, 64, 96)).astype(np.float32) * (1 + i) for i in range(n)])


def test_bounded_ranges_equal_onnxruntime_unbounded_ranges(fp32_onnx, tmp_path):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, load_tensors_data

    from danet_deploy.export.calib_memory import collect_minmax_ranges

    calibrator = create_calibrator(
        str(fp32_onnx), None, augmented_model_path=str(tmp_path / "aug.onnx"), calibrate_method=CalibrationMethod.MinMax
    )
    calibrator.collect_data(_reader())
    unbounded = calibrator.compute_data().data
    collect_minmax_ranges(fp32_onnx, _reader(), tmp_path / "ranges.json", tmp_path)
    bounded = load_tensors_data(tmp_path / "ranges.json").data
    assert set(bounded) == set(unbounded) and len(bounded) > 50
    for name, value in unbounded.items():  # bit-identical: min/max do not depend on the schedule
        np.testing.assert_array_equal(np.asarray(bounded[name].range_value), np.asarray(value.range_value))


def test_plan_states_the_expected_peak_before_the_run(fp32_onnx):
    from danet_deploy.export.calib_memory import activation_bytes, describe_plan, plan_calibration_memory

    total, largest, weights = activation_bytes(fp32_onnx)
    assert total > largest > 0 and weights > 1e6  # danet_demo: ~3.2 M parameters
    plan = plan_calibration_memory(fp32_onnx, 32, (64, 96), 1, "minmax")
    assert plan["bounded"] and plan["expected_peak_mb"] < plan["unbounded_peak_mb"]
    assert plan["calibration_tensors_mb"] == pytest.approx(32 * 3 * 64 * 96 * 4 / 2**20, abs=0.1)
    assert "expected peak" in describe_plan(plan)
    entropy = plan_calibration_memory(fp32_onnx, 32, (64, 96), 1, "entropy")
    assert not entropy["bounded"] and entropy["expected_peak_mb"] == entropy["unbounded_peak_mb"]


def test_onnxruntime_int8_export_records_its_calibration_memory(tmp_path):
    from danet_deploy.export.pipeline import ExportRequest, export

    logs = []
    with isolated_cache(tmp_path / "cache"):
        _path, manifest = export(
            ExportRequest(
                model="danet_demo",
                target="onnxruntime",
                precision="int8",
                input_size=(64, 64),
                calib_count=2,
                output=tmp_path / "int8",
            ),
            log=logs.append,
        )
    memory = manifest.extra["quantization"]["calibration_memory"]
    assert memory["bounded"] and memory["images"] == 2
    assert any(line.startswith("calibration memory:") for line in logs)  # stated before calibrating
    cached = list((tmp_path / "cache").rglob("ort-ranges-*.json"))
    assert cached and json.loads(cached[0].read_text())  # the bounded ranges fill the range cache


def _dag(edges_seed: int, n: int):
    """A random DAG of Add/Identity nodes in a shuffled-but-topological list (like an exporter's)."""
    import random

    from onnx import TensorProto, helper

    rng = random.Random(edges_seed)
    nodes, names = [], ["x"]
    for i in range(n):
        ins = rng.sample(names, k=min(len(names), rng.choice([1, 2])))
        op = "Add" if len(ins) == 2 else "Identity"
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"n{i}"))
        names.append(f"t{i}")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(f"t{n - 1}", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
def test_memory_order_is_a_topological_permutation(seed, n):
    from danet_deploy.export.calib_memory import memory_order

    model = _dag(seed, n)
    before = sorted(node.name for node in model.graph.node)
    memory_order(model)
    assert sorted(node.name for node in model.graph.node) == before
    available = {"x"}
    for node in model.graph.node:  # every input exists before its node runs
        assert all(i in available for i in node.input), node.name
        available.update(node.output)


def test_memory_order_finishes_one_chunk_before_the_next():
    """The exporter lists every chunk's big energy first; the order computes energy_i, uses it, then energy_i+1."""
    from onnx import TensorProto, helper

    from danet_deploy.export.calib_memory import memory_order

    chunks = 4
    nodes = [helper.make_node("Identity", ["x"], [f"e{i}"], name=f"energy{i}") for i in range(chunks)]
    nodes += [helper.make_node("Identity", ["x"], ["v"], name="value")]
    nodes += [helper.make_node("Add", [f"e{i}", "v"], [f"o{i}"], name=f"apply{i}") for i in range(chunks)]
    nodes += [helper.make_node("Concat", [f"o{i}" for i in range(chunks)], ["y"], name="concat", axis=0)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [chunks])],
    )
    order = [n.name for n in memory_order(helper.make_model(graph)).graph.node]
    for i in range(chunks - 1):  # energy i is consumed before energy i+1 exists
        assert order.index(f"apply{i}") < order.index(f"energy{i + 1}")


def test_modelopt_calibration_runs_memory_ordered_with_identical_scales(fp32_onnx, tmp_path, monkeypatch):
    """ModelOpt's max calibration through the memory-ordered session gives the same Q/DQ graph."""
    pytest.importorskip("modelopt.onnx.quantization")
    import contextlib

    import onnx
    from onnx import numpy_helper

    from danet_deploy.export import modelopt_memory
    from danet_deploy.export.tensorrt_prepare import prepare_int8

    rng = np.random.default_rng(1)
    calibration = np.concatenate([rng.standard_normal((1, 3, 64, 96)).astype(np.float32) * (1 + i) for i in range(3)])
    bounded = prepare_int8(
        fp32_onnx,
        tmp_path / "bounded.onnx",
        calibration,
        [],
        method="minmax",
        quantizer="modelopt",
        scratch=tmp_path,
        log=lambda m: None,
    )
    assert bounded["calibration_memory"]["bounded"] and "memory-ordered" in bounded["calibration_memory"]["how"]

    @contextlib.contextmanager
    def unbounded(roots, log=None):
        yield []

    monkeypatch.setattr(modelopt_memory, "memory_ordered_calibration", unbounded)
    plain = prepare_int8(
        fp32_onnx,
        tmp_path / "plain.onnx",
        calibration,
        [],
        method="minmax",
        quantizer="modelopt",
        scratch=tmp_path,
        log=lambda m: None,
    )
    assert not plain["calibration_memory"]["bounded"]

    def tensors(path):
        model = onnx.load(str(path))
        return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}, [
            n.op_type for n in model.graph.node
        ]

    (a, ops_a), (b, ops_b) = tensors(tmp_path / "bounded.onnx"), tensors(tmp_path / "plain.onnx")
    assert ops_a.count("QuantizeLinear") > 20 and sorted(ops_a) == sorted(ops_b)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
