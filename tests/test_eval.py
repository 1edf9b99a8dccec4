"""danet-eval: the evaluator over sessions (and a Triton server), its protocols, CLI and result files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from danet_deploy import runtime
from danet_deploy.cli.eval import main
from danet_deploy.data.metrics import SegmentationMetrics
from danet_deploy.data.scene_layouts import write_scene_dataset
from danet_deploy.data.scenes import SceneDataset
from danet_deploy.verify.evaluate import EvalRequest, evaluate

SIZE = (64, 128)
COUNT = 3


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_scene_dataset("cityscapes", root, count=COUNT, size=SIZE)
    return root


def _quiet(**kw):
    return EvalRequest(quiet=True, **kw)


def test_demo_miou_on_the_cityscapes_copy_equals_its_miou_on_the_scenes(cityscapes, torch):
    outcome = evaluate(_quiet(models=("danet_demo",), data=f"cityscapes:{cityscapes}"), log=lambda _: None)
    direct = SegmentationMetrics(8)
    with runtime.load("danet_demo") as session:
        for image, label in SceneDataset("val", size=SIZE, count=COUNT):
            direct.update(session.run(image), label)
    got = outcome.results[0].metrics
    np.testing.assert_array_equal(got.confusion, direct.confusion)
    assert got.miou() == direct.miou() and got.images == COUNT
    assert math.isfinite(got.miou())


def test_cli_prints_per_class_iou_and_writes_every_result_file(cityscapes, tmp_path, capsys, torch):
    out, masks = tmp_path / "out", tmp_path / "masks"
    assert (
        main(
            [
                "danet_demo",
                "--data",
                f"cityscapes:{cityscapes}",
                "--output",
                str(out),
                "--save-masks",
                str(masks),
                "--worst",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    for word in ("road", "sidewalk", "pole", "mIoU", "mAcc", "aAcc", "whole image"):
        assert word in text
    data = json.loads((out / "results.json").read_text())
    model = data["models"][0]
    assert model["images"] == COUNT and len(model["worst_images"]) == 2 and model["protocol"]["mode"] == "whole"
    assert set(model["per_class_iou"]) == set(model["per_class_acc"]) and len(model["per_class_iou"]) == 8
    assert (out / "results.csv").read_text().startswith("class,danet_demo")
    assert "| mIoU |" in (out / "results.md").read_text()
    assert (out / "confusion_danet_demo.png").stat().st_size > 0
    assert len(list((out / "worst" / "danet_demo").glob("*.png"))) == 2
    assert len(list((masks / "danet_demo").rglob("*.png"))) == COUNT
    # a second run refuses to overwrite without --force, and replaces with it
    assert main(["danet_demo", "--data", f"cityscapes:{cityscapes}", "--output", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (
        main(
            [
                "danet_demo",
                "--data",
                f"cityscapes:{cityscapes}",
                "--save-masks",
                str(masks),
                "--quiet",
                "--force",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["models"][0]["images"] == COUNT


def test_bad_data_exits_2_naming_the_file_and_a_missing_label_is_reported(tmp_path, capsys, torch):
    write_scene_dataset("cityscapes", tmp_path, count=2, size=SIZE)
    labels = sorted((tmp_path / "gtFine").rglob("*.png"))
    labels[0].unlink()
    assert main(["danet_demo", "--data", f"cityscapes:{tmp_path}", "--quiet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dataset"]["labelled"] == 1 and data["dataset"]["skipped"][0]["reason"] == "no label file"
    labels[1].write_bytes(b"\x89PNG broken")
    assert main(["danet_demo", "--data", f"cityscapes:{tmp_path}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(labels[1]) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--data", "mnist:/x"], "is not a dataset"),
        (["--data", "cityscapes:/nonexistent"], "is not a folder"),
        (["--data", "cityscapes:{root}", "--mode", "slide"], "needs --crop"),
        (["--data", "cityscapes:{root}", "--crop", "32x32"], "--mode slide only"),
    ],
)
def test_usage_errors_exit_2(argv, words, cityscapes, capsys):
    argv = [a.replace("{root}", str(cityscapes)) for a in argv]
    assert main(["danet_demo", *argv, "--quiet"]) == 2
    assert words in capsys.readouterr().err


def test_slide_and_resize_protocols_run_the_exact_path(cityscapes, torch):
    whole = evaluate(_quiet(models=("danet_demo",), data=f"cityscapes:{cityscapes}", limit=1), log=lambda _: None)
    slide = evaluate(
        _quiet(
            models=("danet_demo",),
            data=f"cityscapes:{cityscapes}",
            limit=1,
            mode="slide",
            crop=(64, 64),
            stride=(64, 32),
        ),
        log=lambda _: None,
    )
    small = evaluate(
        _quiet(models=("danet_demo",), data=f"cityscapes:{cityscapes}", limit=1, resize=(32, 64)), log=lambda _: None
    )
    for outcome in (slide, small):
        metrics = outcome.results[0].metrics
        assert metrics.images == 1 and metrics.confusion.sum() == whole.results[0].metrics.confusion.sum()
    assert slide.results[0].protocol.crop == (64, 64) and "overrides" in slide.results[0].protocol.source
    # the reference at half size is a different (worse or equal-ish) prediction, measured on the full-size labels
    assert not np.array_equal(small.results[0].metrics.confusion, whole.results[0].metrics.confusion)


def test_the_request_dataclass_is_the_cli():
    from danet_deploy.cli.dataclass_args import build_parser

    parser = build_parser(EvalRequest, "danet-eval", "")
    text = parser.format_help()
    for flag in (
        "--data",
        "--split",
        "--limit",
        "--mode",
        "--resize",
        "--crop",
        "--stride",
        "--server",
        "--save-masks",
        "--output",
        "--json",
    ):
        assert flag in text
    with pytest.raises(SystemExit):
        parser.parse_args(["m", "--crop", "axb"])


@pytest.fixture(scope="module")
def onnx_artifacts(tmp_path_factory):
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    root = tmp_path_factory.mktemp("eval-artifacts")
    made = {}
    for target, precision in (("onnxruntime", "int8"), ("openvino", "fp16")):
        path, _ = export(
            ExportRequest(
                model="danet_demo",
                target=target,
                precision=precision,
                input_size=SIZE,
                output=str(root / f"{target}-{precision}"),
                calib_count=4,
            ),
            log=lambda _m: None,
        )
        made[target] = path
    return made


@pytest.mark.slow
def test_reference_and_two_engines_in_one_run(cityscapes, onnx_artifacts, capsys, torch):
    models = ["danet_demo", str(onnx_artifacts["onnxruntime"]), str(onnx_artifacts["openvino"])]
    assert main([*models, "--data", f"cityscapes:{cityscapes}", "--quiet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ref, *engines = data["models"]
    for engine in engines:
        assert engine["images"] == COUNT and abs(engine["miou"] - ref["miou"]) < 0.15
    # the artifact's mIoU is mmseg's definition on its own predictions
    with runtime.load(onnx_artifacts["onnxruntime"]) as session:
        direct = SegmentationMetrics(8)
        for image, label in SceneDataset("val", size=SIZE, count=COUNT):
            direct.update(session.run(image), label)
    assert engines[0]["miou"] == round(direct.miou(), 6)


@pytest.mark.slow
def test_server_gives_the_local_engines_metrics(cityscapes, onnx_artifacts, tmp_path, torch):
    pytest.importorskip("pytriton")
    pytest.importorskip("tritonclient.grpc")
    from test_serve import ServerProcess, free_port

    artifact = onnx_artifacts["onnxruntime"]
    local = evaluate(_quiet(models=(str(artifact),), data=f"cityscapes:{cityscapes}"), log=lambda _: None)
    srv = ServerProcess(artifact, tmp_path / "server.log", free_port(), free_port())
    try:
        srv.wait_ready()
        for protocol, port in (("http", srv.http_port), ("grpc", srv.grpc_port)):
            remote = evaluate(
                _quiet(
                    models=(str(artifact),),
                    data=f"cityscapes:{cityscapes}",
                    server=f"127.0.0.1:{port}",
                    server_protocol=protocol,
                    in_flight=3,
                ),
                log=lambda _: None,
            )
            np.testing.assert_array_equal(remote.results[0].metrics.confusion, local.results[0].metrics.confusion)
            assert "127.0.0.1" in remote.results[0].notes[0]
    finally:
        srv.close()


@pytest.mark.slow
def test_accuracy_budget_measured_in_miou_on_a_cityscapes_folder(tmp_path, capsys, torch):
    from danet_deploy.cli.export import main as export_main

    write_scene_dataset("cityscapes", tmp_path / "cs", count=4, size=SIZE)
    write_scene_dataset("cityscapes", tmp_path / "cs", split="train", count=4, size=SIZE)
    out = tmp_path / "int8"
    assert (
        export_main(
            [
                "--model",
                "danet_demo",
                "--target",
                "onnxruntime",
                "--precision",
                "int8",
                "--input-size",
                "64x128",
                "--output",
                str(out),
                "--max-accuracy-drop",
                "0.3",
                "--val",
                f"cityscapes:{tmp_path / 'cs'}",
                "--val-count",
                "4",
                "--calib",
                f"cityscapes:{tmp_path / 'cs'}",
                "--calib-count",
                "4",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    budget = manifest["extra"]["accuracy_budget"]
    assert budget["metric"] == "miou" and budget["met"] and budget["measured_drop"] <= 0.3
    assert budget["validation"]["source"] == f"cityscapes:{tmp_path / 'cs'}" and budget["validation"]["split"] == "val"
    assert manifest["export"]["test_protocol"]["mode"] == "whole"


@pytest.mark.slow
def test_bench_accuracy_columns_on_a_dataset(cityscapes, tmp_path, torch):
    from danet_deploy.cli.bench import main as bench_main

    out = tmp_path / "bench"
    assert (
        bench_main(
            [
                "--model",
                "danet_demo",
                "--engines",
                "torch",
                "--precisions",
                "fp32",
                "--input-size",
                "64x128",
                "--iters",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--scenes",
                "2",
                "--no-plots",
                "--no-progress",
                "--data",
                f"cityscapes:{cityscapes}",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "bench.json").read_text())
    assert report["scenes"]["source"] == f"cityscapes:{cityscapes}" and report["scenes"]["count"] == 2
    row = report["rows"][0]
    expected = evaluate(
        _quiet(models=("danet_demo",), data=f"cityscapes:{cityscapes}", limit=2, resize=SIZE), log=lambda _: None
    )
    assert row["miou_vs_labels"] == round(expected.results[0].metrics.miou(), 6)


def test_bench_refuses_a_bad_data_spec_before_any_work(tmp_path, capsys):
    from danet_deploy.cli.bench import main as bench_main

    assert bench_main(["--model", "danet_demo", "--data", "voc:/nowhere", "--output", str(tmp_path / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_parity_on_a_dataset_scores_its_labels(cityscapes, onnx_artifacts, capsys, torch):
    from danet_deploy.cli.parity import main as parity_main

    artifact = str(onnx_artifacts["openvino"])
    parity_main([artifact, "--data", f"cityscapes:{cityscapes}", "--data-count", "2", "--json", "--no-manifest"])
    report = json.loads(capsys.readouterr().out)
    expected = evaluate(_quiet(models=("danet_demo",), data=f"cityscapes:{cityscapes}", limit=2), log=lambda _: None)
    assert report["reference_miou_vs_labels"] == pytest.approx(expected.results[0].metrics.miou(), abs=1e-6)


def test_an_unreachable_server_is_a_clean_error(cityscapes, tmp_path, capsys):
    pytest.importorskip("tritonclient.http")
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    artifact, _ = export(
        ExportRequest(
            model="danet_demo", target="onnx", precision="fp32", input_size=SIZE, output=str(tmp_path / "onnx")
        ),
        log=lambda _m: None,
    )
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert (
        main(
            [
                str(artifact),
                "--data",
                f"cityscapes:{cityscapes}",
                "--server",
                f"127.0.0.1:{port}",
                "--server-wait",
                "1",
                "--quiet",
            ]
        )
        == 2
    )
    assert "is danet-serve running there" in capsys.readouterr().err
    assert main(["danet_demo", "--data", f"cityscapes:{cityscapes}", "--server", f"127.0.0.1:{port}", "--quiet"]) == 2
    assert "name the artifact folder" in capsys.readouterr().err
