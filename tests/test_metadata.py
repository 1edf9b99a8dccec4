"""One metadata path: every artifact kind states the attention plan its graph computes."""

from __future__ import annotations

import json

import onnx
import pytest

from danet_deploy.export import ExportRequest, export
from danet_deploy.manifest import read_manifest

CHUNKS = 3  # forced: the preset's config says 1, so a stale config would show


def _onnx_facts(path):
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    # one PAM chain per chunk: a Softmax, or the fused MultiHeadAttention that replaced it
    pam_softmaxes = [
        n for n in model.graph.node if n.op_type in ("Softmax", "MultiHeadAttention") and "/head/sa/" in n.name
    ]
    return json.loads(props["danet.model"])["attention_chunks"], len(pam_softmaxes), props["danet.precision"]


def _ir_facts(path):
    import openvino as ov

    model = ov.Core().read_model(str(path))
    stated = json.loads(model.get_rt_info(["danet", "model"]).astype(str))["attention_chunks"]
    # OpenVINO's converter folds a PAM chain split into heads (export.fused_attention) into one SDPA op
    softmaxes = [
        op
        for op in model.get_ops()
        if op.get_type_name().startswith("Softmax") or op.get_type_name() == "ScaledDotProductAttention"
    ]
    return stated, len(softmaxes) - 1, model.get_rt_info(["danet", "precision"]).astype(str)  # minus CAM's


@pytest.mark.parametrize(
    "target, precision, reader",
    [
        ("onnx", "fp32", _onnx_facts),
        ("onnxruntime", "int8", _onnx_facts),
        ("onnxruntime", "fp16", _onnx_facts),
        ("openvino", "fp32", _ir_facts),
        ("tensorrt", "int8", _onnx_facts),
    ],
)
def test_every_artifact_states_the_plan_its_graph_computes(target, precision, reader, tmp_path):
    request = ExportRequest(
        model="danet_demo",
        target=target,
        precision=precision,
        input_size=(64, 64),
        attention_chunks=CHUNKS,
        calib_count=2,
        output=tmp_path / "art",
        options={"build": "false"} if target == "tensorrt" else {},
    )
    folder, manifest = export(request, log=lambda _: None)
    stated, computed, stamped_precision = reader(folder / manifest.primary)
    assert stated == computed == CHUNKS
    assert stamped_precision == precision
    assert read_manifest(folder).model["attention_chunks"] == CHUNKS
    assert manifest.export["attention_plan"]["chunks"] == CHUNKS
