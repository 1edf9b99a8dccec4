"""Per-layer diagnostics: tensors matched by name, error located where it is introduced, FP16 range."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import isolated_cache

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402 after importorskip

from danet_deploy.verify import perlayer  # noqa: E402 after importorskip


def _chain(weights: list[np.ndarray], scale: float = 1.0, half_after: int | None = None) -> onnx.ModelProto:
    """x -> Conv -> Relu -> Conv -> Relu -> ... -> Mul(scale): a tiny graph with ONNX-exporter-like names.

    ``half_after``: cast to float16 after that conv (and back at the end), like an FP16 graph.
    """
    nodes, inits, prev = [], [], "input"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        nodes.append(
            helper.make_node(
                "Conv", [prev, f"w{i}"], [f"/conv{i}/Conv_output_0"], name=f"/conv{i}/Conv", pads=[1, 1, 1, 1]
            )
        )
        nodes.append(
            helper.make_node("Relu", [f"/conv{i}/Conv_output_0"], [f"/relu{i}/Relu_output_0"], name=f"/relu{i}/Relu")
        )
        prev = f"/relu{i}/Relu_output_0"
    if half_after is not None:
        nodes.insert(
            2 * half_after + 2,
            helper.make_node("Cast", [f"/relu{half_after}/Relu_output_0"], ["half"], to=TensorProto.FLOAT16),
        )
        # re-wire the following nodes to half precision: weights become fp16 initializers
        for node in nodes[2 * half_after + 3 :]:
            node.input[0] = "half" if node.input[0] == f"/relu{half_after}/Relu_output_0" else node.input[0]
        for init in inits[half_after + 1 :]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    inits.append(numpy_helper.from_array(np.array(scale, np.float16 if half_after is not None else np.float32), "s"))
    nodes.append(helper.make_node("Mul", [prev, "s"], ["/scale/Mul_output_0"], name="/scale/Mul"))
    out = "/scale/Mul_output_0"
    if half_after is not None:
        nodes.append(helper.make_node("Cast", [out], ["logits"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", [out], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _weights(seed: int = 0, layers: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 2, 3, 3)) * 0.4 for _ in range(layers)]


def _inputs(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, 2, 8, 8)).astype(np.float32) for _ in range(n)]


def test_error_is_located_at_the_layer_that_introduces_it():
    weights = _weights()
    broken = [w.copy() for w in weights]
    broken[2] = broken[2] + np.random.default_rng(5).standard_normal(broken[2].shape) * 0.05  # layer 2 only
    layers = perlayer.compare_layers(_chain(weights), _chain(broken), _inputs())
    by_name = {l.tensor: l for l in layers}
    # exact upstream of the change, erroneous from it on
    assert by_name["/relu1/Relu_output_0"].sqnr_db == math.inf and by_name["/conv1/Conv_output_0"].added_nsr == 0
    assert by_name["/conv2/Conv_output_0"].sqnr_db < 60 and by_name["/relu3/Relu_output_0"].sqnr_db < 60
    report = perlayer.PerLayerReport("x", "int8", 2, [8, 8], layers)
    assert report.worst()[0].tensor == "/conv2/Conv_output_0"  # ranked by the noise it adds, not depth
    assert all(l.matched and l.precision == "fp32" for l in layers)
    assert {l.op for l in layers} == {"Conv", "Relu", "Mul"}  # the Identity/Cast layout ops are not layers


def test_fp16_graph_flags_overflow_and_counts_inf():
    weights = _weights(layers=2)
    ref = _chain(weights, scale=6e4)  # a finite FP16 scale, but the scaled tensor exceeds 65504
    art = _chain(weights, scale=6e4, half_after=0)
    layers = perlayer.compare_layers(ref, art, _inputs(1))
    last = next(l for l in layers if l.tensor == "/scale/Mul_output_0")
    assert last.fp16_overflow and last.ref_abs_max > perlayer.FP16_MAX
    assert last.precision == "fp16" and last.nonfinite > 0  # inf in half precision, counted
    first = next(l for l in layers if l.tensor == "/conv0/Conv_output_0")
    assert first.precision == "fp32" and not first.fp16_overflow and first.sqnr_db == math.inf
    report = perlayer.PerLayerReport("x", "fp16", 1, [8, 8], layers)
    data = json.loads(json.dumps(report.to_dict()))  # strictly JSON (inf as a string, never bare Infinity)
    assert data["fp16_overflow"] == ["/scale/Mul_output_0"] and "/scale/Mul_output_0" in data["nonfinite"]
    assert "FP16 overflow" in report.table() and "NaN/Inf" in report.table()


def test_quantized_tensor_is_compared_after_its_dequantize():
    """T -> QuantizeLinear -> DequantizeLinear: the dequantized tensor (what consumers read) is compared."""
    ref = _chain(_weights(layers=1))
    art = _chain(_weights(layers=1))
    g = art.graph
    relu = next(n for n in g.node if n.op_type == "Relu")
    g.initializer.extend(
        [numpy_helper.from_array(np.array(0.5, np.float32), "sc"), numpy_helper.from_array(np.array(0, np.uint8), "zp")]
    )
    q = helper.make_node("QuantizeLinear", [relu.output[0], "sc", "zp"], ["q"], name="q")
    dq = helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["dq"], name="dq")
    mul = next(n for n in g.node if n.op_type == "Mul")
    mul.input[0] = "dq"
    index = list(g.node).index(relu) + 1
    g.node.insert(index, dq)
    g.node.insert(index, q)
    layers = {l.tensor: l for l in perlayer.compare_layers(ref, art, _inputs(1))}
    relu_layer = layers["/relu0/Relu_output_0"]
    assert relu_layer.node == "/relu0/Relu" and relu_layer.sqnr_db < 40  # rounding to steps of 0.5 is visible
    assert relu_layer.max_abs_error <= 0.25 + 1e-6  # at most half a quantization step
    assert layers["/scale/Mul_output_0"].precision == "int8"  # fed by a DequantizeLinear


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    from danet_deploy.export.pipeline import ExportRequest, export

    root = tmp_path_factory.mktemp("perlayer")
    with isolated_cache(root / "cache"):
        path, _ = export(
            ExportRequest(
                model="danet_demo",
                target="onnxruntime",
                precision="int8",
                output=root / "int8",
                input_size=(64, 64),
                calib_count=2,
            ),
            log=lambda m: None,
        )
    return path


def test_per_layer_cli_on_an_onnxruntime_int8_artifact(int8_artifact, tmp_path, capsys):
    from danet_deploy.cli.parity import main

    out = tmp_path / "layers.json"
    code = main(
        [str(int8_artifact), "--per-layer", "--generated", "1", "--threads", "1", "--output", str(out), "--json"]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    data = json.loads(out.read_text())
    assert printed["worst"] == data["worst"] and data["precision"] == "int8"
    layers = data["layers"]
    assert data["matched"] >= 0.6 * data["layers_total"]  # Conv+Relu fusions hide the pre-activation tensors only
    int8 = [l for l in layers if l["precision"] == "int8"]
    assert len(int8) > 20 and all(10 < l["sqnr_db"] < 80 for l in int8)  # quantized, and close to the reference
    # the default policy keeps attention in float: its softmaxes are matched and computed in fp32
    assert {l["precision"] for l in layers if l["op"] == "Softmax"} == {"fp32"}
    png = tmp_path / "layers.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_per_layer_on_an_openvino_int8_artifact(tmp_path):
    pytest.importorskip("nncf")
    from danet_deploy.export.pipeline import ExportRequest, export

    with isolated_cache(tmp_path / "cache"):
        path, _ = export(
            ExportRequest(
                model="danet_demo",
                target="openvino",
                precision="int8",
                output=tmp_path / "ov",
                input_size=(64, 64),
                calib_count=2,
            ),
            log=lambda m: None,
        )
    from danet_deploy.verify.perlayer_run import run_per_layer

    report = run_per_layer(path, generated=1, threads=1)
    matched = [l for l in report.layers if l.matched]
    assert len(matched) >= 0.6 * len(report.layers)  # the IR keeps the ONNX tensor names
    int8 = [l for l in matched if l.precision == "int8"]
    assert len(int8) > 15 and all(10 < l.sqnr_db < 80 for l in int8)
    assert {l.precision for l in matched if l.op == "Softmax"} == {"fp32"}  # attention-float kept them
    assert any(l.quantized_output for l in matched)  # FakeQuantize outputs compared like Q/DQ


def test_per_layer_rejects_bad_inputs(int8_artifact, tmp_path, capsys):
    from danet_deploy.cli.parity import main

    assert main([str(int8_artifact), "--per-layer", "--reference", "danet_demo"]) == 2
    assert "--reference takes an FP32 .onnx" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--per-layer"]) == 2
    assert "artifact folder" in capsys.readouterr().err
