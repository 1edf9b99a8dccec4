"""Per-op profiles (danet-bench --profile): each engine's profiler, the attention share, the report."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from danet_deploy.bench.profile import (
    OpTime,
    attention_module,
    onnxruntime_trace_ops,
    plot_profile,
    profile_backend,
    profile_markdown,
    summarize_profile,
    tensorrt_layer_type,
)


def test_attention_nodes_are_found_under_every_engines_names():
    assert attention_module("/head/sa/MatMul", "MatMul") == "pam"
    assert attention_module("/head/sa/Softmax", "Softmax") == "pam"
    assert attention_module("/head/sa/MatMul", "MatMulIntegerToFloat") == "pam"  # ORT's QDQ folding
    assert attention_module("/head/sa/MatMul_1", "Subgraph") == "pam"  # OpenVINO's fused MHA kernel
    assert attention_module("/head/sa/FusedAttention", "MultiHeadAttention") == "pam"
    assert attention_module("ScaledDotProductAttention_123", "MatMul") == "pam"
    assert attention_module("/head/sc/Sub", "Subgraph") == "cam"
    assert attention_module("head.sc/aten::scaled_dot_product_attention", "aten::scaled_dot_product_attention") == "cam"
    assert attention_module("head.sa/aten::pad", "aten::pad") == "pam"
    assert attention_module("/head/sa/query_conv/Conv", "Convolution") is None  # projections are not the core
    assert attention_module("/head/sa/Add", "Add") is None  # the residual gamma * out + x neither
    assert attention_module("/layer4/conv2/Conv", "Conv") is None


def test_summary_shares_and_top_nodes():
    ops = [
        OpTime("/layer1/Conv", "Conv", 30.0),
        OpTime("/head/sa/MatMul", "MatMul", 10.0),
        OpTime("/head/sa/Softmax", "Softmax", 5.0),
        OpTime("/head/sc/MatMul", "MatMul", 5.0),
        OpTime("/idle", "Reshape", 0.0),
    ]
    prof = summarize_profile(ops, "test", runs=3, top=2)
    assert prof["total_ms"] == 50.0 and prof["nodes_profiled"] == 4 and prof["runs"] == 3
    assert prof["attention"]["pam_ms"] == 15.0 and prof["attention"]["cam_ms"] == 5.0
    assert prof["attention"]["share"] == 0.4
    assert prof["attention"]["ms_by_op_type"] == {"MatMul": 15.0, "Softmax": 5.0}
    assert [o["op"] for o in prof["by_op_type"]] == ["Conv", "MatMul", "Softmax"]
    assert [n["name"] for n in prof["top_nodes"]] == ["/layer1/Conv", "/head/sa/MatMul"]
    assert summarize_profile([], "empty", 1)["attention"]["share"] is None


def test_onnxruntime_trace_drops_the_first_run():
    trace = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        {"cat": "Node", "name": "/head/sa/MatMul_kernel_time", "ts": 10, "dur": 20000, "args": {"op_name": "MatMul"}},
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        {"cat": "Node", "name": "/head/sa/MatMul_kernel_time", "ts": 210, "dur": 2000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "/head/sa/MatMul_fence_before", "ts": 209, "dur": 5},
        {"cat": "Session", "name": "model_run", "ts": 400, "dur": 100},
        {"cat": "Node", "name": "/head/sa/MatMul_kernel_time", "ts": 410, "dur": 4000, "args": {"op_name": "MatMul"}},
    ]
    ops, runs = onnxruntime_trace_ops(trace)
    assert runs == 2 and len(ops) == 1 and ops[0].ms == pytest.approx(3.0)
    assert onnxruntime_trace_ops(trace, skip_first=False)[0][0].ms == pytest.approx(26.0 / 3)


def test_tensorrt_layer_types_from_names():
    assert tensorrt_layer_type("/head/sa/MatMul_1") == "MatMul"
    assert tensorrt_layer_type("/layer1/conv1/Conv + /layer1/relu/Relu") == "Conv"
    assert tensorrt_layer_type("{ForeignNode[/head/sa/MatMul.../head/sa/MatMul_1]}") == "Myelin (fused region)"


def _fake_tensorrt(monkeypatch):
    """A ``tensorrt`` module with just ``IProfiler`` (the Python base class a profiler subclasses)."""
    trt = types.ModuleType("tensorrt")

    class IProfiler:
        def __init__(self) -> None:
            pass

    trt.IProfiler = IProfiler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


class _FakeLane:
    """An execution context that reports layer times to its ``profiler`` on each run, as TensorRT does."""

    LAYERS = (
        ("/layer1/conv1/Conv + /layer1/relu/Relu", 2.0),
        ("/head/sa/MatMul", 1.0),
        ("/head/sa/Softmax", 0.5),
        ("/head/sa/MatMul_1", 0.5),
    )

    def __init__(self) -> None:
        self.context = SimpleNamespace(profiler=None)
        self.prepared = []
        self.graph_runs = 0

    def prepare(self, batch: np.ndarray) -> None:
        self.prepared.append(batch.shape)

    def run(self, events: bool = False) -> np.ndarray:
        if not events:  # a CUDA graph launch: TensorRT does not call the profiler for it
            self.graph_runs += 1
            return np.zeros(1)
        for name, ms in self.LAYERS:
            if self.context.profiler is not None:
                self.context.profiler.report_layer_time(name, ms)
        return np.zeros(1)


def test_tensorrt_profile_with_an_iprofiler_on_one_context(monkeypatch):
    _fake_tensorrt(monkeypatch)
    lane = _FakeLane()
    released = []
    backend = SimpleNamespace(name="tensorrt", _acquire=lambda: lane, _release=released.append)
    prof = profile_backend(backend, np.zeros((1, 3, 8, 8), np.float32), 4)
    assert "error" not in prof, prof
    assert prof["runs"] == 4 and prof["total_ms"] == pytest.approx(4.0)
    assert prof["attention"]["pam_ms"] == pytest.approx(2.0) and prof["attention"]["share"] == 0.5
    assert lane.graph_runs == 0 and len(lane.prepared) == 4
    assert lane.context.profiler is None and released == [lane]  # restored and given back


def test_profile_failure_is_recorded_not_raised(monkeypatch):
    _fake_tensorrt(monkeypatch)

    def broken():
        raise RuntimeError("no context")

    prof = profile_backend(SimpleNamespace(name="tensorrt", _acquire=broken), np.zeros((1, 3, 8, 8), np.float32), 1)
    assert "no context" in prof["error"]
    assert "no per-op profiler" in profile_backend(SimpleNamespace(name="mystery"), np.zeros(1), 1)["error"]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    from danet_deploy.export.onnx import export_onnx
    from danet_deploy.model import create_model, init_for_testing

    path = tmp_path_factory.mktemp("profile") / "demo.onnx"
    model = init_for_testing(create_model("danet_demo", weights=False), seed=0).eval()
    export_onnx(model, path, (64, 64), config=model.config.to_dict())
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_real_engine_profiles_name_the_attention_core(tiny_onnx, backend):
    pytest.importorskip(backend)
    from danet_deploy.runtime import load

    session = load(tiny_onnx, backend=backend, threads=1)
    prof = profile_backend(session.backend, np.zeros((1, 3, 64, 64), np.float32), 2)
    assert "error" not in prof, prof
    assert prof["total_ms"] > 0 and prof["attention"]["pam_ms"] > 0 and prof["attention"]["cam_ms"] > 0
    assert 0 < prof["attention"]["share"] < 1
    assert any(n.startswith("/head/sa/") for n in prof["attention"]["nodes"])


def test_torch_profile_names_ops_by_module(torch):
    from danet_deploy.runtime import load

    session = load("danet_demo", threads=1)
    prof = profile_backend(session.backend, np.zeros((1, 3, 64, 64), np.float32), 1)
    assert "error" not in prof, prof
    names = [n["name"] for n in prof["top_nodes"]]
    assert any("/aten::conv2d" in n for n in names)
    assert prof["attention"]["pam_ms"] > 0 and prof["attention"]["cam_ms"] > 0


def _report(rows):
    return {"model": {"name": "danet_demo"}, "config": {"size": [64, 64], "batch": 1, "threads": 2}, "rows": rows}


def test_markdown_and_plot(tmp_path):
    prof = summarize_profile(
        [
            OpTime("/layer1/Conv", "Conv", 30.0),
            OpTime("/head/sa/MatMul", "MatMul", 10.0),
            OpTime("/head/sc/Softmax", "Softmax", 2.0),
            OpTime("/x/Resize", "Resize", 1.0),
        ],
        "t",
        2,
    )
    rows = [
        {"engine": "openvino", "precision": "int8", "profile": prof},
        {"engine": "onnxruntime", "precision": "fp32", "profile": {"error": "profiling failed: boom"}},
        {"engine": "torch", "precision": "fp32", "profile": None},
    ]
    text = profile_markdown(_report(rows))
    assert "| openvino | int8 | 43.0 | **27.9%** (12.0 ms) | 10.0 ms | 2.0 ms | Conv 69.8% |" in text
    assert "profiling failed: boom" in text and "| torch |" not in text
    assert "### openvino int8" in text and "`/head/sa/MatMul`" in text
    assert profile_markdown(_report([rows[2]])) == ""
    path = plot_profile(_report(rows), tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_refuses_profile_with_no_runs(tmp_path, capsys):
    from danet_deploy.cli.bench import main

    assert main(["--model", "danet_demo", "--profile", "--profile-runs", "0", "--output", str(tmp_path / "out")]) == 2
    assert "--profile-runs must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_worker_profiles_in_its_own_process(tmp_path, tiny_onnx):
    from danet_deploy.bench.runner import run_worker

    scenes = tmp_path / "scenes.npz"
    np.savez(scenes, images=np.zeros((1, 64, 64, 3), np.uint8))
    spec = {
        "model": str(tiny_onnx),
        "load_options": {"threads": 1},
        "batch": 1,
        "scenes": str(scenes),
        "profile_runs": 1,
    }
    result = run_worker(spec, tmp_path, "profiled", threads=1, timeout_s=300)
    assert result["status"] == "ok", result
    assert result["profile"]["attention"]["pam_ms"] > 0 and "latencies_ms" not in result  # profiling only
