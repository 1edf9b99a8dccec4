"""danet-bench: FLOP counting, timing statistics, the per-process runner and its reports.

Runs a tiny model (danet_edge_r18_d8 at 64x64, a few iterations) end to end through the CLI
once per session; no assertion depends on how fast anything ran.
"""

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from danet_deploy.bench import report as bench_report
from danet_deploy.bench.flops import cam_flops, count_model_flops, count_preset_flops, pam_flops
from danet_deploy.bench.memory import peak_rss_mb
from danet_deploy.bench.rows import Row
from danet_deploy.bench.runner import (
    BenchConfig,
    accuracy,
    artifact_path,
    ensure_artifact,
    export_target_for,
    matching_artifact,
    run_worker,
    unsupported_reason,
)
from danet_deploy.bench.timing import summarize, time_calls
from danet_deploy.cli.bench import main as bench_main
from danet_deploy.errors import ConfigError

SIZE = (64, 64)


def test_conv_flops_from_hooks(torch):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 1, bias=False))
    flops = count_model_flops(net, (16, 16), batch=2)
    expected = 2 * (2 * 3 * 9 * 8 * 256 + 8 * 256) + 2 * (2 * 8 * 4 * 256)
    assert flops.conv == expected
    assert flops.pam == flops.cam == 0 and flops.total == expected


def test_attention_flops_are_counted_analytically():
    flops = count_preset_flops("danet_edge_r18_d8", SIZE)
    n = (SIZE[0] // 8) * (SIZE[1] // 8)
    channels = 64  # head inter channels of the edge preset: backbone 256 // 4
    assert flops.pam == pam_flops(1, n, channels // 8, channels) == 2 * n * n * 8 + 2 * n * n * 64
    assert flops.cam == cam_flops(1, n, channels) == 4 * channels * channels * n
    assert flops.conv > 0 and flops.total == flops.conv + flops.linear + flops.pam + flops.cam
    assert count_preset_flops("danet_edge_r18_d8", SIZE, batch=3).total == 3 * flops.total


def test_summarize_percentiles_and_throughput():
    stats = summarize([float(i) for i in range(1, 101)], batch=4)
    assert stats["iters"] == 100
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01) and stats["mean_ms"] == pytest.approx(50.5)
    assert stats["throughput_ips"] == pytest.approx(4 * 1000 / 50.5, rel=1e-3)
    assert summarize([])["p50_ms"] is None


def test_gemm_peak_fp32_and_int8():
    from danet_deploy.bench.gemm import measure_gemm_peak

    fp32 = measure_gemm_peak(1, sizes=(128, 256), repeats=2)
    assert fp32["gflops_peak"] >= fp32["gflops_median"] > 0 and "float32" in fp32["method"]
    ran = [c for c in fp32["candidates"] if "gflops_peak" in c]
    # torch.mm and ONNX Runtime MatMul at both sizes; the peak is the best of all of them
    assert len(fp32["candidates"]) == 4 and fp32["gflops_peak"] == max(c["gflops_peak"] for c in ran)
    int8 = measure_gemm_peak(1, n=256, repeats=2, dtype="int8")
    # the INT8 yardstick is an INT8 engine's own kernel, never torch._int_mm
    assert int8["gflops_peak"] > 0 and int8["method"].startswith("onnxruntime ") and int8["reason"] is None
    assert {c["method"].split()[1] for c in int8["candidates"]} == {"MatMulInteger", "QLinearMatMul"}
    with pytest.raises(ValueError):
        measure_gemm_peak(1, n=64, dtype="bf16")


def test_int8_matmul_graphs_compute_the_product():
    """The timed graphs really multiply: MatMulInteger equals numpy's int32 product."""
    import numpy as np
    import onnxruntime as ort

    from danet_deploy.bench.gemm import matmul_model

    model = matmul_model(16, "MatMulInteger")
    b = next(np.frombuffer(i.raw_data, np.int8).reshape(16, 16) for i in model.graph.initializer if i.name == "B")
    a = np.random.default_rng(3).integers(0, 256, (16, 16), dtype=np.uint8)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    np.testing.assert_array_equal(out, a.astype(np.int32) @ b.astype(np.int32))
    with pytest.raises(ValueError):
        matmul_model(8, "Gemm")


def test_gemm_efficiency_is_a_fraction_or_null_with_reason(monkeypatch):
    from danet_deploy.bench import gemm

    peak = {"gflops_peak": 100.0, "method": "m"}
    assert gemm.efficiency(50.0, peak, "fp32") == (0.5, None)
    value, note = gemm.efficiency(150.0, peak, "fp32")  # above the yardstick: no fraction > 1
    assert value is None and "above the measured fp32 GEMM peak" in note
    value, note = gemm.efficiency(10.0, {"gflops_peak": None, "reason": "onnxruntime not installed"}, "int8")
    assert value is None and "onnxruntime not installed" in note
    assert gemm.efficiency(10.0, None, "int8")[0] is None

    # no INT8 engine importable: the peak is null with the reason, not a torch stand-in
    def missing(n, t):
        raise ImportError("no onnxruntime")

    monkeypatch.setattr(gemm, "_candidates", lambda dtype: [("onnxruntime", missing)])
    out = gemm.measure_gemm_peak(1, n=64, dtype="int8")
    assert out["gflops_peak"] is None and "onnxruntime not installed" in out["reason"]


def test_time_calls_runs_warmup_untimed():
    calls = []
    times = time_calls(lambda: calls.append(1), iters=5, warmup=3)
    assert len(calls) == 8 and len(times) == 5 and all(t >= 0 for t in times)


def test_peak_rss_is_this_process_own():
    assert 1 < peak_rss_mb() < 1e6


def test_accuracy_agreement_and_miou():
    ref = np.zeros((1, 4, 4), np.uint8)
    pred = ref.copy()
    pred[0, 0, :2] = 1
    labels = ref.copy()
    out = accuracy(pred, ref, labels, num_classes=2)
    assert out["argmax_agreement"] == pytest.approx(14 / 16)
    assert out["miou_vs_labels"] == pytest.approx((14 / 16 + 0.0) / 2)
    assert accuracy(pred, None, None, 2)["argmax_agreement"] is None


def test_target_mapping_and_unsupported_reasons():
    assert export_target_for("onnxruntime", "fp32") == "onnx"
    assert export_target_for("onnxruntime", "int8") == "onnxruntime"
    assert export_target_for("openvino", "fp16") == "openvino"
    assert export_target_for("torch", "fp32") is None
    assert "fp32 only" in unsupported_reason("torch", "int8")
    assert unsupported_reason("torch", "fp32") is None


def test_config_rejects_bad_options():
    with pytest.raises(ConfigError, match="unknown engine"):
        BenchConfig(model="danet_demo", engines=["tflite"])
    with pytest.raises(ConfigError, match="unknown precision"):
        BenchConfig(model="danet_demo", precisions=["int4"])
    with pytest.raises(ConfigError, match="32x32"):
        BenchConfig(model="danet_demo", size=(16, 16))
    assert BenchConfig(model="x", engines=["onnxruntime"]).combinations()[0] == ("torch", "fp32")


def test_cli_unknown_model_is_a_clean_error(tmp_path, capsys):
    assert bench_main(["--model", "no_such_model", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_worker_failure_reports_reason(tmp_path):
    np.savez(tmp_path / "scenes.npz", images=np.zeros((1, 64, 64, 3), np.uint8))
    spec = {
        "model": str(tmp_path / "missing-artifact"),
        "load_options": {"threads": 1},
        "batch": 1,
        "iters": 1,
        "warmup": 0,
        "scenes": str(tmp_path / "scenes.npz"),
        "predictions": None,
    }
    result = run_worker(spec, tmp_path, "broken", threads=1, timeout_s=120)
    assert result["status"] == "failed"
    assert "neither an artifact folder" in result["error"] and result["stage"] == "load"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--model",
        "danet_edge_r18_d8",
        "--engines",
        "torch,onnxruntime",
        "--precisions",
        "fp32,int8",
        "--input-size",
        "64x64",
        "--iters",
        "3",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--scenes",
        "2",
        "--calib-count",
        "4",
        "--output",
        str(out),
        "--no-progress",
    ]
    code = bench_main(argv)
    return code, out, json.loads((out / "bench.json").read_text())


def _row(report, engine, precision):
    return next(r for r in report["rows"] if (r["engine"], r["precision"]) == (engine, precision))


def test_bench_schema_and_rows(bench_run):
    code, _, report = bench_run
    assert code == 0
    bench_report.validate(report)
    assert report["schema"] == "danet-bench" and report["schema_version"] == 5
    # every row carries exactly the Row dataclass's fields (no private keys leak into the file)
    assert all(set(r) == {f.name for f in dataclasses.fields(Row)} for r in report["rows"])
    assert next((r["engine"], r["precision"]) for r in report["rows"]) == ("torch", "fp32")
    assert report["machine"]["cpu"]["logical_cores"] >= 1 and "torch" in report["machine"]["libraries"]
    assert len(report["gemm"]["runs_gflops_peak"]) == 2 and report["gemm"]["gflops_peak"] > 0
    assert "int8" in report["gemm"]  # int8 rows were asked for: an int8 yardstick is measured
    assert report["flops"]["total"] == count_preset_flops("danet_edge_r18_d8", SIZE).total
    ref = _row(report, "torch", "fp32")
    assert ref["status"] == "ok" and ref["ratio_vs_torch_fp32"] == 1.0 and ref["argmax_agreement"] == 1.0
    ort = _row(report, "onnxruntime", "fp32")
    assert ort["status"] == "ok" and ort["export_target"] == "onnx" and ort["file_size_mb"] > 0
    assert ort["rounds"] == 2 and len(ort["latencies_ms"]) == ort["iters"] == 6  # 2 rounds x 3, pooled
    assert len(ort["ratio_rounds"]) == 2 and all(r > 0 for r in ort["ratio_rounds"])  # paired round by round
    assert ref["ratio_rounds"] == [1.0, 1.0]
    assert ort["p50_ms"] <= ort["p90_ms"] <= ort["p99_ms"] <= ort["max_ms"]
    assert ort["argmax_agreement"] >= 0.98  # FP32 engines match the FP32 reference
    assert ort["gflops_achieved"] > 0 and ort["peak_rss_mb"] > ort["rss_before_load_mb"] > 0
    assert ort["gemm_peak_gflops"] == report["gemm"]["gflops_peak"]
    for row in report["rows"]:  # a fraction <= 1, or null with the reason
        if row["gflops_achieved"] is not None:
            eff = row["gemm_efficiency"]
            assert (eff is not None and 0 < eff <= 1 and row["gemm_note"] is None) or (eff is None and row["gemm_note"])
    int8 = _row(report, "onnxruntime", "int8")
    assert int8["gemm_peak_gflops"] == report["gemm"]["int8"]["gflops_peak"] > 0
    assert ort["miou_vs_labels"] is None  # random weights: the scene labels mean nothing
    for row in report["rows"]:
        assert row["status"] == "ok" or row["reason"], row


def test_the_written_report_reads_back_as_the_same_file(bench_run):
    """BenchReport (what run_benchmark returns) writes exactly the JSON on disk and reads it back."""
    _, out, report = bench_run
    typed = bench_report.BenchReport.from_dict(report)
    assert json.dumps(typed.to_dict(), indent=1) + "\n" == (out / "bench.json").read_text()
    assert typed.row("torch", "fp32").status == "ok" and typed.rows[0] == Row.from_dict(report["rows"][0])


def test_failing_combination_shows_its_reason(bench_run):
    _, out, report = bench_run
    torch_int8 = _row(report, "torch", "int8")
    assert torch_int8["status"] == "unsupported" and "fp32 only" in torch_int8["reason"]
    table = bench_report.format_table(report)
    assert "unsupported: torch runs the preset in fp32 only" in table
    markdown = (out / "bench.md").read_text()
    assert "| engine | precision |" in markdown and "fp32 only" in markdown and "bench-latency.png" in markdown


def test_csv_and_png_outputs(bench_run):
    _, out, report = bench_run
    rows = list(csv.DictReader(io.StringIO((out / "bench.csv").read_text())))
    assert [(r["engine"], r["precision"]) for r in rows] == [(r["engine"], r["precision"]) for r in report["rows"]]
    assert set(bench_report.CSV_FIELDS) == set(rows[0])
    for name in ("bench-latency.png", "bench-cdf.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_existing_artifact_is_matched_by_manifest(bench_run):
    _, out, report = bench_run
    artifact = out / "artifacts" / "danet_edge_r18_d8-onnx-fp32-64x64-b1"
    assert _row(report, "onnxruntime", "fp32")["artifact"] == str(artifact)
    same = BenchConfig(model="danet_edge_r18_d8", size=SIZE, output=out)
    assert matching_artifact(artifact, same, "onnx", "fp32", "danet_edge_r18_d8") == (True, "matches")
    other = BenchConfig(model="danet_edge_r18_d8", size=(96, 64), output=out)
    ok, why = matching_artifact(artifact, other, "onnx", "fp32", "danet_edge_r18_d8")
    assert not ok and "input shape" in why
    ok, why = matching_artifact(artifact, same, "onnx", "int8", "danet_edge_r18_d8")
    assert not ok and "precision" in why


def test_an_artifact_of_other_weights_or_classes_is_re_exported_not_reused(tmp_path):
    """An artifact with the right name, target, precision and shape but another model behind it
    (here: its manifest says 3 classes and random weights instead of the shipped ones, as an export
    by an older version with --num-classes 3 wrote) must not be timed and scored as the preset: the
    bench re-exports it and says why, then reuses its own export."""
    from danet_deploy.export import ExportRequest, export

    cfg = BenchConfig(model="danet_demo", size=SIZE, artifacts=tmp_path / "artifacts")
    path = artifact_path(cfg, "onnx", "fp32")
    export(ExportRequest("danet_demo", input_size=SIZE, output=path), log=lambda _: None)
    stale = json.loads((path / "manifest.json").read_text())
    stale["model"].update(weights=None, num_classes=3, class_names=["a", "b", "c"])
    stale["export"]["num_classes"] = 3
    (path / "manifest.json").write_text(json.dumps(stale))
    ok, why = matching_artifact(path, cfg, "onnx", "fp32", "danet_demo")
    assert not ok and "weights" in why and "num_classes" in why
    messages: list[str] = []
    assert ensure_artifact(cfg, "onnx", "fp32", "danet_demo", messages.append)[:2] == (path, False)
    assert any(m.startswith("exporting onnx/fp32") and "num_classes" in m for m in messages), messages
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"]["num_classes"] == 8 and manifest["model"]["weights"] == "danet_demo.safetensors"
    messages.clear()
    assert ensure_artifact(cfg, "onnx", "fp32", "danet_demo", messages.append)[:2] == (path, True)
    assert messages == [f"reusing {path}"]


def test_an_artifact_is_stale_once_the_shipped_weights_file_is_retrained_in_place(tmp_path, monkeypatch):
    """Same preset, same weights file name, other bytes (``danet-train --output <shipped> --force``):
    the artifact's recorded sha256 no longer matches, so bench re-exports instead of timing old weights."""
    from safetensors.numpy import load_file, save_file

    from danet_deploy.export import ExportRequest, export
    from danet_deploy.model import registry

    cfg = BenchConfig(model="danet_demo", size=SIZE, artifacts=tmp_path / "artifacts")
    path = artifact_path(cfg, "onnx", "fp32")
    export(ExportRequest("danet_demo", input_size=SIZE, output=path), log=lambda _: None)
    assert matching_artifact(path, cfg, "onnx", "fp32", "danet_demo") == (True, "matches")
    retrained = tmp_path / "weights"
    retrained.mkdir()
    state = load_file(str(registry.weights_dir() / "danet_demo.safetensors"))
    key = next(k for k, v in state.items() if v.dtype.kind == "f" and v.size > 1)
    state[key] = state[key] * 2
    save_file(state, str(retrained / "danet_demo.safetensors"))
    monkeypatch.setattr(registry, "weights_dir", lambda: retrained)
    ok, why = matching_artifact(path, cfg, "onnx", "fp32", "danet_demo")
    assert not ok and "changed since the export" in why
    monkeypatch.undo()
    older = json.loads((path / "manifest.json").read_text())
    del older["export"]["weights_sha256"]  # written before the digest was recorded: cannot be trusted
    (path / "manifest.json").write_text(json.dumps(older))
    assert not matching_artifact(path, cfg, "onnx", "fp32", "danet_demo")[0]


def test_an_artifact_of_other_export_options_or_architecture_is_not_reused(tmp_path):
    from danet_deploy.export import ExportRequest, export

    cfg = BenchConfig(model="danet_edge_r18_d8", size=SIZE, artifacts=tmp_path / "artifacts")
    path = artifact_path(cfg, "onnx", "fp32")
    export(
        ExportRequest(
            "danet_edge_r18_d8", input_size=SIZE, emit="both", model_options={"decoder_channels": 16}, output=path
        ),
        log=lambda _: None,
    )
    ok, why = matching_artifact(path, cfg, "onnx", "fp32", "danet_edge_r18_d8")
    assert not ok and "model config (decoder_channels)" in why and "emit" in why and "model_options" in why


def test_a_checkpoint_artifact_is_reused_only_for_the_same_checkpoint_bytes(tmp_path):
    from safetensors.numpy import load_file, save_file

    from danet_deploy.model.registry import weights_dir

    ckpt = tmp_path / "mine.safetensors"
    state = load_file(str(weights_dir() / "danet_demo.safetensors"))
    save_file(state, str(ckpt))
    cfg = BenchConfig(model=str(ckpt), arch="danet_demo", size=SIZE, artifacts=tmp_path / "artifacts")
    path, reused, _ = ensure_artifact(cfg, "onnx", "fp32", "danet_demo", lambda _: None)
    assert not reused and matching_artifact(path, cfg, "onnx", "fp32", "danet_demo") == (True, "matches")
    key = next(k for k, v in state.items() if v.dtype.kind == "f" and v.size > 1)
    state[key] = state[key] * 2  # the user retrained: same file name, other weights
    save_file(state, str(ckpt))
    ok, why = matching_artifact(path, cfg, "onnx", "fp32", "danet_demo")
    assert not ok and "checkpoint sha256" in why


def test_device_timing_statistics_from_infer_timed():
    from danet_deploy.bench.worker import _device_timing

    class FakeGpu:
        def __init__(self):
            self.calls = 0

        def infer_timed(self, batch):
            self.calls += 1
            return batch, {"compute": float(self.calls), "total": float(self.calls) + 1.0}

    backend = FakeGpu()
    stats = _device_timing(backend, np.zeros((1, 3, 4, 4), np.float32), iters=4, batch=1)
    assert backend.calls == 4
    assert stats["compute"]["p50_ms"] == pytest.approx(2.5) and stats["total"]["max_ms"] == pytest.approx(5.0)


def test_summary_picks_fastest_engine_per_precision():
    rows = [
        {
            "engine": "torch",
            "precision": "fp32",
            "status": "ok",
            "p50_ms": 100.0,
            "ratio_vs_torch_fp32": 1.0,
            "argmax_agreement": 1.0,
        },
        {
            "engine": "onnxruntime",
            "precision": "fp32",
            "status": "ok",
            "p50_ms": 50.0,
            "ratio_vs_torch_fp32": 0.5,
            "argmax_agreement": 1.0,
        },
        {
            "engine": "openvino",
            "precision": "int8",
            "status": "ok",
            "p50_ms": 20.0,
            "ratio_vs_torch_fp32": 0.2,
            "argmax_agreement": 0.95,
        },
        {
            "engine": "onnxruntime",
            "precision": "int8",
            "status": "ok",
            "p50_ms": 30.0,
            "ratio_vs_torch_fp32": 0.3,
            "argmax_agreement": 0.995,
        },
        {"engine": "openvino", "precision": "fp16", "status": "failed", "p50_ms": None},
    ]
    summary = bench_report.summarize_best(rows)
    assert summary["fp32"]["engine"] == "onnxruntime" and summary["fp16"] is None
    assert summary["int8"]["engine"] == "openvino" and summary["int8_at_99"]["engine"] == "onnxruntime"
    lines = bench_report.summary_lines({"summary": summary})
    assert "best FP16 engine: none ran" in lines and any("0.300 x torch fp32" in line for line in lines)


def test_exception_summary_keeps_the_cause_of_multiline_engine_errors():
    from danet_deploy.errors import summarize_exception

    exc = RuntimeError(
        "Exception from src/inference/src/cpp/infer_request.cpp:117:\n\n  Can't set input blob: wrong shape\n"
    )
    assert summarize_exception(exc, lines=4) == "RuntimeError: Can't set input blob: wrong shape"
    assert summarize_exception(ConfigError("bad --batch; use 1")) == "bad --batch; use 1"
    assert len(summarize_exception(ValueError("x" * 1000))) == 300
    # an empty message gave IndexError in str(exc).splitlines()[0]; the type name stands in for it
    assert summarize_exception(RuntimeError()) == "RuntimeError"
    assert summarize_exception(RuntimeError("\n  \n")) == "RuntimeError"
    assert summarize_exception(ConfigError("")) == "ConfigError"


def test_async_throughput_watchdog_gives_up_on_a_stuck_queue():
    import threading

    from danet_deploy.bench.worker import _async_throughput

    release = threading.Event()

    class Stuck:
        def infer_many(self, batches):
            release.wait(30)
            return batches

    class Fine:
        def infer_many(self, batches):
            return batches

    tensor = np.zeros((1, 3, 4, 4), np.float32)
    stuck = _async_throughput(Stuck(), tensor, count=4, batch=1, limit_s=0.2)
    release.set()
    assert stuck["async_throughput_ips"] is None and "did not return" in stuck["async_error"]
    fine = _async_throughput(Fine(), tensor, count=4, batch=2, limit_s=10)
    assert fine["async_throughput_ips"] > 0 and "async_error" not in fine


# -- one vocabulary: the rows are engines; the command goes through cli_main and parse_size ----------
def test_engines_flag_and_the_deprecated_targets_alias(capsys):
    from danet_deploy.cli.bench import build_parser

    assert build_parser().parse_args(["--model", "m", "--engines", "torch,onnxruntime"]).engines == [
        "torch",
        "onnxruntime",
    ]
    assert capsys.readouterr().err == ""
    old = build_parser().parse_args(["--model", "m", "--targets", "torch, openvino"])
    assert old.engines == ["torch", "openvino"]
    assert "--targets is deprecated" in capsys.readouterr().err and "--engines" in build_parser().format_help()


def test_bench_config_targets_keyword_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="engines="):
        cfg = BenchConfig(model="danet_demo", targets=["onnxruntime"])
    assert cfg.engines == ["onnxruntime"] and "targets" not in cfg.to_dict() and "engines" in cfg.to_dict()


@pytest.mark.parametrize("size, expected", [("64x96", (64, 96)), ("64,96", (64, 96)), ("64", (64, 64))])
def test_bench_input_size_uses_the_shared_size_parser(size, expected):
    from danet_deploy.cli.bench import build_parser

    assert build_parser().parse_args(["--model", "m", "--input-size", size]).input_size == expected


@pytest.mark.parametrize("size", ["0x5", "64x0", "-64x64", "64x64x3", "big"])
def test_bench_input_size_refuses_what_the_shared_parser_refuses(size, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--model", "danet_demo", "--input-size", size, "--output", str(tmp_path)])
    assert exit_info.value.code == 2 and "size" in capsys.readouterr().err


def test_bench_runs_under_cli_main(tmp_path, monkeypatch, capsys):
    """SIGTERM cleanup is installed while the benchmark runs, and a typed error is exit code 2."""
    import signal

    from danet_deploy.bench import runner

    seen = {}

    def fake_run(cfg, command=None):
        seen["handler"] = signal.getsignal(signal.SIGTERM)
        seen["engines"] = cfg.engines
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(runner, "run_benchmark", fake_run)
    code = bench_main(["--model", "danet_demo", "--engines", "torch", "--output", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "error: stopped by the test" in capsys.readouterr().err
    assert seen["engines"] == ["torch"] and seen["handler"] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert signal.getsignal(signal.SIGTERM) is not seen["handler"]  # restored afterwards


def _v3_report():
    """A schema v3 report as earlier releases wrote it: the engine under "target", describe() under "engine"."""
    row = {f.name: None for f in dataclasses.fields(Row) if f.name not in ("engine", "engine_info")}
    row |= {
        "target": "torch",
        "precision": "fp32",
        "export_target": None,
        "status": "ok",
        "p50_ms": 10.0,
        "engine": {"providers": ["x"]},
        "latencies_ms": [10.0],
    }
    return {
        "schema": "danet-bench",
        "schema_version": 3,
        "created": "2026-01-01T00:00:00+00:00",
        "config": {"targets": ["torch"]},
        "model": {},
        "machine": {},
        "gemm": {},
        "flops": {},
        "scenes": {},
        "rows": [row],
        "summary": {"fp32": {"target": "torch", "precision": "fp32", "p50_ms": 10.0}},
    }


def test_a_v3_report_is_read_as_v5():
    old = _v3_report()
    new = bench_report.upgrade_report(old)
    bench_report.validate(old)  # the reader accepts the older spelling
    assert new["schema_version"] == 5 and new["config"]["engines"] == ["torch"]
    assert new["rows"][0]["engine"] == "torch" and new["rows"][0]["engine_info"] == {"providers": ["x"]}
    assert "target" not in new["rows"][0] and new["summary"]["fp32"]["engine"] == "torch"
    assert old["rows"][0]["target"] == "torch"  # the caller's dict is left as it was
    assert bench_report.format_table(old).splitlines()[2].startswith("torch")
    assert bench_report.to_csv(old).splitlines()[1].startswith("torch,fp32")
    assert bench_report.upgrade_report({"schema": "danet-bench", "schema_version": 2}) == {
        "schema": "danet-bench",
        "schema_version": 2,
    }
    with pytest.raises(ConfigError, match="v3/v4/v5"):
        bench_report.validate({"schema": "danet-bench", "schema_version": 2})
