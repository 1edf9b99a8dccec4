"""Masks computed in the graph (--emit): every target, the runtime, parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from danet_deploy import runtime
from danet_deploy.cli.export import main as export_main
from danet_deploy.errors import ConfigError
from danet_deploy.export import ExportRequest, export
from danet_deploy.verify.parity import run_parity

SIZE = (64, 64)


def _export(tmp_path, target, precision, emit, size=SIZE, calib_count=2, **kw):
    options = {"build": "false"} if target == "tensorrt" else {}
    return export(
        ExportRequest(
            model="danet_demo",
            target=target,
            precision=precision,
            input_size=size,
            emit=emit,
            calib_count=calib_count,
            output=tmp_path / f"{target}-{precision}-{emit}",
            options=options,
            **kw,
        ),
        log=lambda _: None,
    )


@pytest.fixture(scope="module")
def reference_logits_artifact(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("ref"), "onnx", "fp32", "logits")[0]


@pytest.fixture(scope="module")
def scenes():
    from danet_deploy.data.scenes import SceneDataset

    data = SceneDataset("val", size=SIZE, count=2)
    return [data[i][0] for i in range(2)]


@pytest.mark.parametrize(
    "target, precision, mask_type",
    [  # one export each: the ONNX one in make test
        ("onnx", "fp32", "uint8"),
        pytest.param("onnxruntime", "int8", "uint8", marks=pytest.mark.slow),
        pytest.param("openvino", "fp32", "uint8", marks=pytest.mark.slow),
        pytest.param("tensorrt", "fp16", "int32", marks=pytest.mark.slow),
    ],
)
def test_mask_in_graph_matches_the_logits_path(
    target, precision, mask_type, tmp_path, reference_logits_artifact, scenes
):
    folder, manifest = _export(tmp_path, target, precision, "mask")
    assert manifest.output["emit"] == "mask" and manifest.output["name"] == "mask"
    assert manifest.output["tensors"] == [{"name": "mask", "shape": [1, *SIZE], "dtype": mask_type}]
    with runtime.load(folder) as masks_session, runtime.load(reference_logits_artifact) as logits_session:
        assert masks_session.outputs == ("mask",)
        for image in scenes:
            got, want = masks_session.run(image), logits_session.run(image)
            assert got.dtype == np.dtype(mask_type) and got.shape == image.shape[:2]
            threshold = 1.0 if precision == "fp32" else 0.97  # fp16/int8 engines may flip boundary pixels
            assert (got == want).mean() >= threshold
        with pytest.raises(ConfigError, match="not full-resolution logits"):
            masks_session.infer(np.zeros((1, 3, *SIZE), np.float32))
        with pytest.raises(ConfigError, match="no logits to return"):
            masks_session.run(scenes[0], return_logits=True)


def test_onnx_mask_graph_ends_in_argmax_and_loads_bare(tmp_path, scenes):
    folder, _ = _export(tmp_path, "onnx", "fp32", "mask")
    graph = onnx.load(str(folder / "model.onnx"))
    producers = {out: node for node in graph.graph.node for out in node.output}
    last = producers[graph.graph.output[0].name]  # arg-max, unless the image's logits were not finite
    assert last.op_type == "Where" and any(
        producers[i].op_type == "Cast" and producers[producers[i].input[0]].op_type == "ArgMax"
        for i in last.input
        if i in producers
    )
    assert {"IsNaN", "IsInf"} <= {n.op_type for n in graph.graph.node}
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    with runtime.load(folder / "model.onnx") as bare, runtime.load(folder) as full:  # no manifest: names tell
        assert bare.outputs == ("mask",)
        np.testing.assert_array_equal(bare.run(scenes[0]), full.run(scenes[0]))


def test_both_and_lowres_outputs(tmp_path, scenes):
    both, _ = _export(tmp_path, "onnx", "fp32", "both")
    lowres, manifest = _export(tmp_path, "onnx", "fp32", "mask-lowres")
    assert [t["name"] for t in manifest.output["tensors"]] == ["mask", "logits_lowres"]
    assert manifest.output["tensors"][1]["shape"] == [1, 8, 16, 16]  # 8 classes at the decoder's stride 4
    big = np.concatenate([scenes[0], scenes[1]], axis=1)  # another size than the engine's: resized back
    with runtime.load(both) as session:
        mask, logits = session.run(big, return_logits=True)
        assert mask.shape == big.shape[:2] and logits.shape == (8, *big.shape[:2])
        x = np.zeros((1, 3, *SIZE), np.float32)
        outs = session.infer_outputs(x)
        np.testing.assert_array_equal(outs["mask"], outs["logits"].argmax(1))
        np.testing.assert_array_equal(session.infer(x), outs["logits"])
    with runtime.load(lowres) as session:
        mask, logits = session.run(scenes[0], return_logits=True)
        assert logits.shape == (8, *SIZE) and logits.dtype == np.float32
        with pytest.raises(ConfigError, match="sliding windows"):
            session.run(big, tile=(64, 64))


def test_parity_compares_masks_when_only_a_mask_exists(tmp_path):
    # the product's INT8 tolerance (>= 99% agreement) is asserted at a size the demo model is made
    # for; at 64x64 a whole scene is a few stride-8 cells and 2 images decide it
    folder, _ = _export(tmp_path, "onnxruntime", "int8", "mask", size=(128, 128), calib_count=8)
    report = run_parity(folder, generated=4, write_manifest=False)
    assert report.passed, report.table()
    assert np.isnan(report.sqnr_db) and report.argmax_agreement >= 0.99
    assert {c.name for c in report.checks} <= {"argmax_agreement", "margin_agreement", "miou_drop"}
    assert "n/a" in report.table()


def test_emit_is_checked_before_work(tmp_path, capsys):
    assert (
        export_main(["--target", "tensorrt", "--precision", "fp16", "--emit", "both", "-o", str(tmp_path / "x")]) == 2
    )
    assert "serves --emit logits or mask" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--emit must be one of"):
        ExportRequest(model="danet_demo", emit="probabilities")
