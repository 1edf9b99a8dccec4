"""Fused attention: the rewritten graphs compute what the unfused ones do, on every engine here.

Exactness is checked against the unfused graph and the torch reference at shapes larger than the
export's (dynamic H, W: N grows), with chunked attention, because a chunked or fused form that is
frozen at export time fails silently only when N grows.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

FP32_TOL = 1e-4  # of the largest logit: ten times inside parity's fp32 max_rel_error (1e-3)


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def _export(tmp: Path, chunks: int, dynamic: bool, size: tuple[int, int] = (64, 64)) -> tuple[object, Path]:
    from danet_deploy.export.onnx import export_onnx
    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model("danet_demo", weights=False), seed=0).eval()
    model.set_attention_chunks(chunks)
    path = tmp / f"demo_c{chunks}_{'dyn' if dynamic else 'static'}.onnx"
    export_onnx(model, path, size, dynamic=dynamic)
    return model, path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _fused_copy(path: Path, how: str = "fused") -> tuple[Path, object]:
    import onnx

    from danet_deploy.export.fused_attention import (
        apply_attention_form,
        pad_for_tensorrt,
    )

    model = onnx.load(str(path))
    report = pad_for_tensorrt(model) if how == "tensorrt" else apply_attention_form(model, how)
    onnx.checker.check_model(model, full_check=True)
    out = path.with_name(f"{path.stem}_{how}.onnx")
    onnx.save(model, str(out))
    return out, report


@pytest.mark.parametrize("chunks", [1, 3])
def test_fused_graph_equals_unfused_and_torch_at_larger_n(tmp_path, torch, chunks):
    model, path = _export(tmp_path, chunks, dynamic=True)
    fused, report = _fused_copy(path)
    assert len(report.fused_nodes) == chunks and not report.skipped
    import onnx

    ops = [n.op_type for n in onnx.load(str(fused)).graph.node if "/head/sa/" in n.name]
    assert ops.count("MultiHeadAttention") == chunks and "Softmax" not in ops
    x = np.random.default_rng(1).standard_normal((1, 3, 96, 136)).astype(np.float32)  # N 204 > 64 at export
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    plain, fast = _ort(path, x), _ort(fused, x)
    assert _rel(fast, plain) < FP32_TOL
    assert _rel(fast, ref) < FP32_TOL


def test_unfused_form_leaves_the_graph_alone(tmp_path, torch):
    import onnx

    _, path = _export(tmp_path, 1, dynamic=False)
    out, report = _fused_copy(path, "unfused")
    assert report.fused_nodes == [] and report.form == "unfused"
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == [n.op_type for n in onnx.load(str(path)).graph.node]


def test_unknown_form_is_a_typed_error():
    from danet_deploy.errors import ExportError
    from danet_deploy.export.fused_attention import apply_attention_form

    with pytest.raises(ExportError, match="fused or unfused"):
        apply_attention_form(None, "flash")


def _pam_kinds(compiled) -> list[str]:
    return sorted(
        op.get_rt_info()["layerType"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_friendly_name() in ("/head/sa/MatMul", "/head/sa/Softmax", "/head/sa/MatMul_1")
    )


def test_openvino_ir_compiles_split_head_pam_into_one_kernel(tmp_path, torch):
    ov = pytest.importorskip("openvino")
    _, path = _export(tmp_path, 1, dynamic=False)
    heads, report = _fused_copy(path, "heads:2")
    assert report.fused_nodes == ["/head/sa/MatMul"] and not report.skipped
    core = ov.Core()
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    kinds = {}
    for form, src in (("unfused", path), ("fused", heads)):
        ov.save_model(ov.convert_model(str(src)), str(tmp_path / f"{form}.xml"), compress_to_fp16=False)
        compiled = core.compile_model(
            core.read_model(str(tmp_path / f"{form}.xml")),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2},
        )
        kinds[form] = _pam_kinds(compiled)
        assert _rel(compiled({"input": x})[0], _ort(path, x)) < FP32_TOL
    assert kinds["unfused"] == ["MatMul", "MatMul", "Softmax"]  # the plugin's heuristics refuse one head
    assert kinds["fused"] == ["Subgraph"]  # one fused MHA kernel for the whole core


def test_split_heads_skips_what_would_break_at_other_sizes(tmp_path, torch):
    _, dynamic = _export(tmp_path, 1, dynamic=True)
    _, report = _fused_copy(dynamic, "heads:2")
    assert report.fused_nodes == [] and "symbolic or not divisible" in report.skipped[0]
    _, chunked = _export(tmp_path, 3, dynamic=False)  # 64 queries in chunks of 21, 21, 22
    out, report = _fused_copy(chunked, "heads:2")
    assert len(report.fused_nodes) == 1 and len(report.skipped) == 2
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert _rel(_ort(out, x), _ort(chunked, x)) < FP32_TOL


def test_tensorrt_layout_pads_query_and_key_to_one_head_size_exactly(tmp_path, torch):
    import onnx

    model, path = _export(tmp_path, 2, dynamic=True)
    out, report = _fused_copy(path, "tensorrt")
    assert len(report.fused_nodes) == 2
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(out)))
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info
    }
    energy = [n for n in inferred.graph.node if n.name in report.fused_nodes]
    for node in energy:  # BMM1 over one head size H = C: [B,1,N,C] @ [B,1,C,N]
        q, k = shapes[node.input[0]], shapes[node.input[1]]
        assert q[3] == k[2] == model.head.sa.in_channels
    x = np.random.default_rng(3).standard_normal((1, 3, 80, 104)).astype(np.float32)
    assert _rel(_ort(out, x), _ort(path, x)) < FP32_TOL


@pytest.mark.parametrize("channels,fused", [(64, True), (256, False)])
def test_eager_pam_takes_sdpa_only_where_measured_faster_and_stays_exact(torch, channels, fused):
    from danet_deploy.model import attention

    module = attention.PositionAttention(channels).eval()
    module.gamma.data.fill_(1.0)
    x = torch.randn(1, channels, 12, 20)
    with (
        mock.patch.object(
            attention.F, "scaled_dot_product_attention", wraps=attention.F.scaled_dot_product_attention
        ) as sdpa,
        torch.no_grad(),
    ):
        out = module(x)
    assert (sdpa.call_count == 1) is fused
    module.fused = False
    with torch.no_grad():
        plain = module(x)
        module.chunks = 3
        chunked = module(x)
    assert (out - plain).abs().max().item() < 1e-5
    assert torch.equal(plain, chunked)


def test_eager_attention_keeps_the_graph_form_in_training_and_export(torch):
    from danet_deploy.model import attention

    pam, cam = attention.PositionAttention(16).train(), attention.ChannelAttention().train()
    x = torch.randn(1, 16, 6, 6)
    with mock.patch.object(attention.F, "scaled_dot_product_attention") as sdpa:
        pam(x), cam(x)
        with mock.patch.object(torch.onnx, "is_in_onnx_export", return_value=True):
            pam.eval()(x), cam.eval()(x)
    sdpa.assert_not_called()


def test_eager_cam_sdpa_equals_max_minus_energy_form(torch):
    from danet_deploy.model.attention import ChannelAttention

    module = ChannelAttention().eval()
    module.gamma.data.fill_(1.0)
    x = torch.randn(1, 32, 16, 16)
    with torch.no_grad():
        fused = module(x)
        module.fused = False
        plain = module(x)
    assert ((fused - plain).abs().max() / plain.abs().max()).item() < 1e-4


def test_policy_keeps_fused_attention_nodes_in_float(tmp_path, torch):
    import onnx

    from danet_deploy.export.policy import PrecisionPolicy

    _, path = _export(tmp_path, 1, dynamic=False)
    fused, _ = _fused_copy(path)
    nodes = PrecisionPolicy.from_spec("attention-float").float_nodes(onnx.load(str(fused)))
    assert "/head/sa/FusedAttention" in nodes
    assert any("/head/sc/" in n for n in nodes)  # CAM is still found by structure


def test_attention_bf16_is_refused_where_it_cannot_hold():
    from danet_deploy.errors import ConfigError
    from danet_deploy.export.policy import PrecisionPolicy, check_attention_bf16

    policy = PrecisionPolicy.from_spec("attention-bf16")
    assert policy.keep_attention and policy.attention_precision == "bf16" and policy.name == "attention-bf16"
    amx = {"amx_bf16": True}
    check_attention_bf16(policy, "openvino", "int8", amx)
    check_attention_bf16(policy, "openvino", "int8", {"avx512_bf16": True})
    with pytest.raises(ConfigError, match="AMX-BF16 or AVX512-BF16"):
        check_attention_bf16(policy, "openvino", "int8", {"avx2": True, "avx512f": True})
    with pytest.raises(ConfigError, match="--target openvino"):
        check_attention_bf16(policy, "onnxruntime", "int8", amx)
    with pytest.raises(ConfigError, match="--precision int8"):
        check_attention_bf16(policy, "openvino", "fp32", amx)
    check_attention_bf16(PrecisionPolicy.from_spec("attention-float"), "onnxruntime", "fp16", {})


def test_openvino_backend_applies_only_a_known_recorded_precision():
    from danet_deploy.runtime.backends.openvino import _recorded_runtime

    manifest = mock.Mock(
        extra={"openvino_runtime": {"properties": {"CACHE_DIR": "/etc"}, "inference_precision": "bf16"}}
    )
    assert _recorded_runtime(manifest) == {"inference_precision": "bf16"}
    manifest.extra = {"openvino_runtime": {"inference_precision": "f64"}}
    assert _recorded_runtime(manifest) == {}
    manifest.extra = {"openvino_runtime": "garbage"}
    assert _recorded_runtime(manifest) == {}
    assert _recorded_runtime(None) == {}


def test_torch_backend_option_turns_the_eager_kernels_off(torch):
    from danet_deploy.runtime import load

    for fused in (True, False):
        net = load("danet_demo", threads=1, fused_attention=fused).backend.model
        assert net.head.sa.fused is fused and net.head.sc.fused is fused


@pytest.mark.slow
def test_tensorrt_bundle_option_writes_the_padded_attention_layout(tmp_path, torch):
    import onnx

    from danet_deploy.export import ExportRequest, export

    request = ExportRequest(
        "danet_demo",
        target="tensorrt",
        precision="fp32",
        input_size=(64, 64),
        dynamic=True,
        min_size=(32, 32),
        max_size=(128, 128),
        output=tmp_path / "trt",
        options={"build": False, "attention": "mha-pattern"},
    )
    folder, manifest = export(request, log=lambda m: None)
    attention = manifest.extra["tensorrt"]["attention"]
    assert attention["form"] == "mha-pattern" and attention["padded_chains"] == ["/head/sa/MatMul"]
    names = {n.name for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert {"/head/sa/MatMul_trt/PadQuery", "/head/sa/MatMul_trt/PadKey"} <= names


@pytest.mark.slow
def test_openvino_int8_artifact_keeps_pam_float_and_in_one_kernel(tmp_path, torch):
    pytest.importorskip("nncf")
    from danet_deploy import runtime
    from danet_deploy.export import ExportRequest, export

    folder, manifest = export(
        ExportRequest(
            "danet_demo",
            target="openvino",
            precision="int8",
            input_size=(64, 64),
            calib_count=2,
            output=tmp_path / "ov",
        ),
        log=lambda m: None,
    )
    assert manifest.extra["attention"]["fused_nodes"] == ["/head/sa/MatMul"]
    assert any("/head/sa/" in n for n in manifest.extra["quantization"]["policy"]["float_nodes"])
    with runtime.load(folder, threads=2) as session:
        compiled = session.backend._get((1, 3, 64, 64)).compiled
        pam = [
            (op.get_rt_info()["layerType"].astype(str), op.get_friendly_name())
            for op in compiled.get_runtime_model().get_ordered_ops()
            if "/head/sa/" in op.get_friendly_name()
        ]
    kinds = {kind for kind, _ in pam}
    assert "Subgraph" in kinds and not kinds & {"Softmax", "MatMul"}, pam


@pytest.mark.parametrize("chunks", [1, 3])
def test_openvino_sdpa_form_is_exact_and_one_kernel_per_chunk_at_larger_n(tmp_path, torch, chunks):
    """``attention=sdpa``: the MultiHeadAttention rewrite read by OpenVINO as ScaledDotProductAttention
    compiles into one kernel per chunk even in a dynamic export (which the query-heads split skips),
    and its logits equal the unfused graph's at a larger N than exported."""
    ov = pytest.importorskip("openvino")
    _, path = _export(tmp_path, chunks, dynamic=True)
    mha, report = _fused_copy(path, "fused")
    assert len(report.fused_nodes) == chunks and not report.skipped
    compiled = ov.Core().compile_model(
        ov.convert_model(str(mha)), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    )
    x = np.random.default_rng(3).standard_normal((1, 3, 96, 136)).astype(np.float32)  # N 204 > 64 at export
    assert _rel(compiled({"input": x})[0], _ort(path, x)) < FP32_TOL
    ops = [
        (op.get_rt_info()["layerType"].astype(str), op.get_friendly_name())
        for op in compiled.get_runtime_model().get_ordered_ops()
    ]
    assert [k for k, n in ops if "ScaledDotProductAttention" in n] == ["Subgraph"] * chunks, ops
    assert not [n for k, n in ops if k in ("Softmax", "MatMul") and "/head/sa/" in n]


def test_openvino_target_option_writes_the_sdpa_form(tmp_path, torch):
    from danet_deploy.export import ExportRequest, export

    _, manifest = export(
        ExportRequest(
            "danet_demo", target="openvino", input_size=(64, 64), output=tmp_path / "ov", options={"attention": "sdpa"}
        ),
        log=lambda m: None,
    )
    assert manifest.extra["attention"]["form"] == "openvino-sdpa"
    assert manifest.extra["attention"]["fused_nodes"] == ["/head/sa/FusedAttention"]


@pytest.mark.slow
def test_openvino_int8_sdpa_form_keeps_pam_float_under_attention_float(tmp_path, torch):
    pytest.importorskip("nncf")
    import openvino as ov

    from danet_deploy.export import ExportRequest, export

    folder, manifest = export(
        ExportRequest(
            "danet_demo",
            target="openvino",
            precision="int8",
            input_size=(64, 64),
            calib_count=2,
            output=tmp_path / "ov",
            options={"attention": "sdpa"},
        ),
        log=lambda m: None,
    )
    sdpa = [
        op
        for op in ov.Core().read_model(str(folder / "model.xml")).get_ordered_ops()
        if op.get_type_name() == "ScaledDotProductAttention"
    ]
    assert len(sdpa) == 1 and sdpa[0].get_friendly_name() in manifest.extra["quantization"]["policy"]["float_nodes"]
    for port in sdpa[0].inputs()[:3]:  # query, key, value straight from float producers, no FakeQuantize
        node = port.get_source_output().get_node()
        while node.get_type_name() in ("Reshape", "Transpose", "Squeeze", "Unsqueeze"):
            node = node.input(0).get_source_output().get_node()
        assert node.get_type_name() != "FakeQuantize", node.get_friendly_name()
