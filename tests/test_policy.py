import onnx
import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.export.onnxruntime import choose_int8_format, cpu_features
from danet_deploy.export.policy import PrecisionPolicy, attention_nodes

PAM = {"/head/sa/MatMul", "/head/sa/Softmax", "/head/sa/MatMul_1"}
CAM = {"/head/sc/MatMul", "/head/sc/ReduceMax", "/head/sc/Sub", "/head/sc/Softmax", "/head/sc/MatMul_1"}


def _export(tmp_path_factory, chunks, dynamic=True):
    from danet_deploy.export.onnx import export_onnx
    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False, attention_chunks=chunks), seed=0)
    path = tmp_path_factory.mktemp(f"policy{chunks}") / "model.onnx"
    export_onnx(model, path, (64, 64), dynamic=dynamic)
    return path


@pytest.fixture(scope="module")
def graph(tmp_path_factory, torch):
    return _export(tmp_path_factory, chunks=1)


def test_attention_float_selects_exactly_the_attention_core(graph):
    policy = PrecisionPolicy.from_spec("attention-float")
    selected = policy.float_nodes(graph)
    assert set(selected) == PAM | CAM
    ops = {n.name: n.op_type for n in onnx.load(str(graph)).graph.node}
    assert {ops[n] for n in selected} == {"MatMul", "Softmax", "ReduceMax", "Sub"}
    info = policy.describe(selected)
    assert info["float_nodes_by_module"] == {"pam": 3, "cam": 5}
    # the backbone, attention projections (1x1 convs) and the classifier stay quantizable
    assert not any("Conv" in n for n in selected)


def test_chunked_position_attention_found_by_structure(tmp_path_factory, torch):
    path = _export(tmp_path_factory, chunks=3)
    selected = PrecisionPolicy().float_nodes(path)
    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    pam = [n for n in selected if n.startswith("/head/sa/")]
    assert sum(ops[n] == "Softmax" for n in pam) == 3
    assert sum(ops[n] == "MatMul" for n in pam) == 6
    assert set(selected) >= CAM


def test_structure_not_names(graph):
    """Renamed nodes (another exporter) are still found: the walk uses ops and edges only."""
    model = onnx.load(str(graph))
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    from danet_deploy.export.policy import _onnx_graph

    found = attention_nodes(_onnx_graph(model))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert sorted(ops[n] for n in found) == sorted(["MatMul"] * 4 + ["Softmax"] * 2 + ["ReduceMax", "Sub"])


def test_presets_and_custom_patterns(graph):
    assert PrecisionPolicy.from_spec("quantize-all").float_nodes(graph) == []
    custom = PrecisionPolicy.from_spec("re:/head/conv8/")
    assert custom.name == "custom" and custom.float_nodes(graph) == ["/head/conv8/conv8.1/Conv"]
    both = PrecisionPolicy.from_spec("attention-float+re:/head/conv8/")
    assert set(both.float_nodes(graph)) == PAM | CAM | {"/head/conv8/conv8.1/Conv"}
    softmax = PrecisionPolicy.from_spec("op:Softmax")
    assert softmax.op_types == ("Softmax",) and set(softmax.float_nodes(graph)) == {
        "/head/sa/Softmax",
        "/head/sc/Softmax",
    }
    assert PrecisionPolicy.from_spec(None) == PrecisionPolicy()
    with pytest.raises(ConfigError, match="unknown precision policy 'fast'"):
        PrecisionPolicy.from_spec("fast")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        PrecisionPolicy.from_spec("re:(")


def test_backend_translations(graph):
    import openvino as ov

    policy = PrecisionPolicy()
    ov_model = ov.convert_model(str(graph))
    assert set(policy.openvino_float_nodes(ov_model)) == PAM | CAM  # OpenVINO keeps the ONNX node names
    kwargs = policy.nncf_kwargs(ov_model)
    assert set(kwargs["ignored_scope"].names) == PAM | CAM and kwargs["model_type"] is None
    assert "ignored_scope" not in PrecisionPolicy.from_spec("quantize-all").nncf_kwargs(ov_model)
    assert set(policy.ort_quantize_kwargs(graph)["nodes_to_exclude"]) == PAM | CAM
    assert set(policy.ort_fp16_kwargs(graph)["node_block_list"]) == PAM | CAM
    assert policy.ort_fp16_kwargs(graph)["op_block_list"] is None  # ORT's default block list
    blocked = PrecisionPolicy.from_spec("attention-float+op:Resize").ort_fp16_kwargs(graph)["op_block_list"]
    assert "Resize" in blocked and len(blocked) > 10


def test_int8_format_follows_cpu_features(tmp_path):
    avx2 = {"machine": "x86_64", "avx2": True}
    assert choose_int8_format(avx2)["format"] == "u8s8-reduced" and choose_int8_format(avx2)["reduce_range"]
    vnni = choose_int8_format({"machine": "x86_64", "avx2": True, "avx512_vnni": True})
    assert vnni["format"] == "u8s8" and not vnni["reduce_range"] and "VNNI" in vnni["reason"]
    assert choose_int8_format({"machine": "aarch64"})["activation"] == "QInt8"
    assert choose_int8_format(avx2, "s8s8")["format"] == "s8s8"
    with pytest.raises(ConfigError, match="int8_format"):
        choose_int8_format(avx2, "u4")
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_features(fake)["avx2"] and not cpu_features(fake)["avx512_vnni"]
    fake.write_text("processor\t: 0\nflags\t\t: avx2 avx512f avx512_vnni amx_int8\n")
    assert cpu_features(fake)["avx512_vnni"] and cpu_features(fake)["amx_int8"]
