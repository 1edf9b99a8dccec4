"""Raw camera bytes into the graph (--accept rgb8|bgr8): every target, the runtime, parity, Triton."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy import runtime
from danet_deploy.cli.export import main as export_main
from danet_deploy.errors import ConfigError, ExportError, InputError, ManifestError
from danet_deploy.export import ExportRequest, export
from danet_deploy.manifest import read_manifest
from danet_deploy.verify.parity import TOLERANCES, compare_logits, run_parity

SIZE = (64, 64)


def _export(tmp_path, target, precision="fp32", accept="float", size=SIZE, calib_count=2, **kw):
    options = {"build": "false"} if target == "tensorrt" else {}
    folder, manifest = export(
        ExportRequest(
            model="danet_demo",
            target=target,
            precision=precision,
            input_size=size,
            accept=accept,
            calib_count=calib_count,
            options=options,
            output=tmp_path / f"{target}-{precision}-{accept}",
            **kw,
        ),
        log=lambda _: None,
    )
    return folder, manifest


@pytest.fixture(scope="module")
def scenes():
    from danet_deploy.data.scenes import SceneDataset

    data = SceneDataset("val", size=SIZE, count=2)
    return [data[i][0] for i in range(2)]


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    """A float ONNX artifact and its --accept rgb8 twin (static 64x64)."""
    root = tmp_path_factory.mktemp("pair")
    return _export(root, "onnx")[0], _export(root, "onnx", accept="rgb8")[0]


def _same_as_host(float_folder, accept_folder, images, accept="rgb8", precision="fp32", exact=True):
    """The accept artifact on raw images against the float artifact on host-preprocessed ones: within
    the precision's parity tolerance (``exact``: bit for bit, and the very same masks)."""
    wanted, got = [], []
    with runtime.load(float_folder) as host, runtime.load(accept_folder) as graph:
        assert graph.accepts == accept and host.accepts == "float"
        for image in images:
            raw = np.ascontiguousarray(image[..., ::-1]) if accept == "bgr8" else image  # what the camera sends
            wanted.append(host.infer(host.prepare([image], SIZE))[0])
            got.append(graph.infer(graph.prepare([raw], SIZE))[0])
            big = np.concatenate([image, image], axis=1)  # not the static size: resized on the host, in uint8
            raw_big = np.ascontiguousarray(big[..., ::-1]) if accept == "bgr8" else big
            agree = (graph.run(raw_big) == host.run(big)).mean()
            assert agree == 1.0 if exact else agree >= TOLERANCES[precision].min_argmax_agreement
    report = compare_logits(wanted, got, None, precision)
    assert report.passed, report.table()
    if exact:
        assert report.max_abs_error == 0.0 and report.argmax_agreement == 1.0


def test_onnx_graph_takes_uint8_nhwc_and_matches_host_preprocessing_bit_for_bit(onnx_pair, scenes):
    float_folder, accept_folder = onnx_pair
    manifest = read_manifest(accept_folder)
    assert manifest.input == {
        "name": "image",
        "shape": [1, *SIZE, 3],
        "dtype": "uint8",
        "dynamic_axes": {},
        "layout": "NHWC",
        "accept": "rgb8",
    }
    assert manifest.output["shape"] == [1, 8, *SIZE]  # the outputs keep their NCHW shapes
    assert manifest.export["accept"] == "rgb8" and "accept" not in read_manifest(float_folder).export  # as before
    graph = onnx.load(str(accept_folder / "model.onnx"))
    (inp,) = graph.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [n.op_type for n in graph.graph.node[:5]] == [
        "Transpose",
        "Cast",
        "Div",
        "Sub",
        "Div",
    ]  # RGB model: no Gather
    # the same float32 operations as the host's lookup tables: identical inputs, identical logits
    _same_as_host(float_folder, accept_folder, scenes)


def test_bgr8_reorders_in_the_graph_and_cli_flag(tmp_path, onnx_pair, scenes):
    out = tmp_path / "bgr"
    assert (
        export_main(
            [
                "--model",
                "danet_demo",
                "--target",
                "onnx",
                "--input-size",
                "64x64",
                "--accept",
                "bgr8",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    graph = onnx.load(str(out / "model.onnx"))
    gather = next(n for n in graph.graph.node if n.op_type == "Gather")
    assert gather.name == "accept/Gather"
    assert {p.key: p.value for p in graph.metadata_props}["danet.accept"] == "bgr8"
    _same_as_host(onnx_pair[0], out, scenes, accept="bgr8")
    with runtime.load(out / "model.onnx") as bare:  # no manifest: the graph's input and metadata tell
        assert bare.accepts == "bgr8" and bare.image_order == "BGR"


def test_from_rgb_hands_rgb_images_over_in_the_order_each_artifact_takes(tmp_path, onnx_pair, scenes):
    """Session.from_rgb: one image, a list, a tuple or an NxHxWx3 array of RGB pixels, as run/prepare/stream
    take them (BGR only for --accept bgr8), so every artifact gives the float artifact's masks on them."""
    bgr, _ = _export(tmp_path, "onnx", accept="bgr8")
    rgb, batch = scenes[0], np.stack(scenes)
    with runtime.load(onnx_pair[0]) as host:
        want = host.run(list(batch))
        for folder, flipped in [(onnx_pair[0], False), (onnx_pair[1], False), (bgr, True)]:
            with runtime.load(folder) as session:
                order = (lambda a: a[..., ::-1]) if flipped else (lambda a: a)
                np.testing.assert_array_equal(session.from_rgb(rgb), order(rgb))
                assert session.from_rgb(rgb).flags.c_contiguous
                np.testing.assert_array_equal(session.from_rgb(batch), order(batch))
                for many in (list(batch), tuple(batch)):
                    got = session.from_rgb(many)
                    assert isinstance(got, list) and len(got) == len(scenes)
                    np.testing.assert_array_equal(np.stack(got), order(batch))
                for mask, expected in zip(session.run(session.from_rgb(list(batch))), want):
                    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("accept", ["float", "rgb8", "bgr8"])
@pytest.mark.parametrize("bad", [None, "frame.png", 5, [[1, 2, 3]]])
def test_from_rgb_refuses_what_is_not_an_image_alike_for_every_accept_kind(accept, bad):
    """Session.from_rgb hands each image to inputs.from_rgb: a non-array is an InputError whatever the
    artifact takes (a bgr8 artifact's channel swap raised a bare TypeError while a float one passed it on)."""
    from danet_deploy.inputs import from_rgb

    with pytest.raises(InputError, match="expected a numpy uint8 HxWx3 RGB image"):
        from_rgb(bad, accept)


@pytest.mark.parametrize("accept, order", [("rgb8", "RGB"), ("bgr8", "RGB"), ("rgb8", "BGR")])
def test_every_prefix_order_gives_the_host_tensor(accept, order):
    """The prefix alone (on an Identity graph): bytes-first for CPU engines, cast-first for TensorRT,
    both equal to the host's preprocessing of the same pixels, bit for bit."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from danet_deploy.export.accept import wrap_onnx
    from danet_deploy.runtime.preprocess import preprocess

    pre = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "color_order": order}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["out"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    image = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)  # as the camera sends it
    rgb = image[..., ::-1] if accept == "bgr8" else image
    want = preprocess(list(rgb), pre)
    for cast_first in (False, True):
        wrapped = wrap_onnx(model, accept, pre, cast_first=cast_first)
        onnx.checker.check_model(wrapped, full_check=True)
        first = wrapped.graph.node[0]
        assert first.op_type == ("Cast" if cast_first else "Transpose") and list(first.input) == ["image"]
        got = ort.InferenceSession(wrapped.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"image": image}
        )[0]
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ExportError, match="one float32 input"):  # wrapped already: it takes uint8
        wrap_onnx(wrap_onnx(model, accept, pre), accept, pre)


def test_bad_input_to_an_accept_artifact_is_a_typed_error(onnx_pair, scenes):
    with runtime.load(onnx_pair[1]) as session:
        image = scenes[0]
        for bad, match in [
            (image[None].astype(np.float32) / 255, "float tensor"),
            (np.zeros((1, 3, *SIZE), np.float32), "dtype float32"),
            (np.zeros((1, *SIZE, 4), np.uint8), "3 colour channels last.*alpha"),
            (np.zeros((1, 3, *SIZE), np.uint8), "looks NCHW"),
            (image, "4-D"),
            ([image], "got list"),
            (np.zeros((1, 32, 32, 3), np.uint8), "static shape"),
        ]:
            with pytest.raises(InputError, match=match):
                session.infer(bad)
        with pytest.raises(InputError, match="uint8"):
            session.run(image.astype(np.float32))
        with pytest.raises(InputError, match="3 colour channels"):
            session.run(np.zeros((*SIZE, 2), np.uint8))


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.float16, np.float32, np.float64, np.bool_]),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
    accept=st.sampled_from(["rgb8", "bgr8"]),
)
def test_the_image_check_passes_only_uint8_nhwc_batches(dtype, shape, accept):
    from danet_deploy.inputs import check_image_batch

    array = np.zeros(shape, dtype)
    valid = dtype == np.uint8 and len(shape) == 4 and shape[3] == 3 and min(shape) > 0
    if valid:
        assert check_image_batch(array, accept).flags.c_contiguous
    else:
        with pytest.raises(InputError, match="uint8|4-D|channels|empty"):
            check_image_batch(array, accept)


def test_manifest_schema_checks_the_accept_entry(onnx_pair, tmp_path):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(onnx_pair[1], folder)
    path = folder / "manifest.json"
    original = json.loads(path.read_text())
    for change, match in [
        ({"accept": "yuv"}, "input.accept"),
        ({"dtype": "float32"}, "uint8 NHWC"),
        ({"shape": [1, 64, 64, 4]}, "3 channels"),
        ({"accept": None}, "input.layout"),
    ]:
        path.write_text(json.dumps({**original, "input": {**original["input"], **change}}))
        with pytest.raises(ManifestError, match=match):
            read_manifest(folder, verify=False)


def test_dynamic_accept_artifact_streams_and_tiles_like_the_float_one(tmp_path, scenes):
    float_folder, _ = _export(tmp_path, "onnx", dynamic=True)
    accept_folder, manifest = _export(tmp_path, "onnx", accept="rgb8", dynamic=True)
    assert manifest.input["shape"] == ["batch", "height", "width", 3]
    assert manifest.input["dynamic_axes"] == {"0": "batch", "1": "height", "2": "width"}
    odd = np.ascontiguousarray(np.concatenate([scenes[0], scenes[1]], axis=0)[:100, :72])
    with runtime.load(float_folder) as host, runtime.load(accept_folder) as graph:
        assert graph.input_spec.static_hw is None
        for image in (odd, scenes[0][:20, :20]):  # its own size; a tiny one upsampled to the network minimum
            np.testing.assert_array_equal(graph.run(image), host.run(image))
        frames = [scenes[0], odd, scenes[1]]
        got = [mask for _, mask, _ in graph.stream(iter(frames))]
        want = [mask for _, mask, _ in host.stream(iter(frames))]
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(graph.run(odd, tile=(48, 48)), host.run(odd, tile=(48, 48)))


def test_parity_and_per_layer_parity_apply_unchanged(onnx_pair):
    from danet_deploy.verify.perlayer_run import run_per_layer

    report = run_parity(onnx_pair[1], generated=2, write_manifest=False)
    assert report.passed and report.argmax_agreement == 1.0
    layers = run_per_layer(onnx_pair[1], generated=1)
    assert all(layer.matched for layer in layers.layers)
    assert all(layer.sqnr_db is None or layer.sqnr_db > 60 for layer in layers.layers)


def test_triton_repository_of_an_accept_artifact_takes_danet_serves_uint8_image(tmp_path):
    from danet_deploy.serve.repository import parse_config, write_triton_repository
    from danet_deploy.serve.server import INPUT_NAME

    folder, _ = _export(tmp_path, "onnx", accept="rgb8", emit="mask", dynamic=True)
    repo = write_triton_repository(folder, tmp_path / "repo")
    config = parse_config((repo.model_dir / "config.pbtxt").read_text())
    (inp,) = config.input
    assert inp.name == INPUT_NAME == "image"
    assert config.max_batch_size > 0 and list(inp.dims) == [-1, -1, 3]  # danet-serve: UINT8 [-1, -1, 3] batched
    from tritonclient.grpc import model_config_pb2

    assert inp.data_type == model_config_pb2.TYPE_UINT8
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("mask", model_config_pb2.TYPE_UINT8, [-1, -1])
    ]
    assert any("danet-serve's contract" in note for note in repo.notes)
    float_folder, _ = _export(tmp_path, "onnx")  # the default: say plainly that it is another contract
    plain = write_triton_repository(float_folder, tmp_path / "repo", name="plain")
    assert any("not danet-serve's uint8 'image'" in note for note in plain.notes)
    static = write_triton_repository(_export(tmp_path, "onnx", accept="bgr8")[0], tmp_path / "repo", name="static")
    assert any("exactly 64x64" in note and "BGR" in note for note in static.notes)


def test_danet_serve_keeps_its_rgb_contract_for_a_bgr8_artifact(tmp_path, onnx_pair, scenes):
    pytest.importorskip("pytriton")
    from danet_deploy.serve.server import make_infer

    bgr, _ = _export(tmp_path, "onnx", accept="bgr8")
    with runtime.load(bgr) as graph, runtime.load(onnx_pair[0]) as host:
        batch = np.stack(scenes)  # what a danet-serve client sends: RGB
        served = make_infer(graph, 4096).__wrapped__(image=batch)["mask"]  # the function inside PyTriton's @batch
        np.testing.assert_array_equal(served, np.stack(host.run(list(batch))))


def test_legacy_calibrator_is_refused_with_accept():
    with pytest.raises(ConfigError, match="legacy_calibrator"):
        ExportRequest(
            model="danet_demo",
            target="tensorrt",
            precision="int8",
            accept="rgb8",
            options={"legacy_calibrator": "true", "build": "false"},
        )
    with pytest.raises(ConfigError, match="--accept must be one of"):
        ExportRequest(model="danet_demo", accept="rgba8")


@pytest.mark.slow
def test_openvino_fp32_and_int8_accept_artifacts_match_host_preprocessing(tmp_path, scenes, module_cache):
    float_fp32, _ = _export(tmp_path, "openvino")
    accept_fp32, manifest = _export(tmp_path, "openvino", accept="bgr8")
    assert manifest.input["name"] == "image" and manifest.input["dtype"] == "uint8"
    # OpenVINO fuses the normalisation into its first layers: FP32-parity close, same classes
    _same_as_host(float_fp32, accept_fp32, scenes, accept="bgr8", exact=False)
    with runtime.load(accept_fp32 / "model.xml") as bare:
        assert bare.accepts == "bgr8"
    float_int8, _ = _export(tmp_path, "openvino", "int8")
    accept_int8, _ = _export(tmp_path, "openvino", "int8", accept="rgb8")
    # the wrapper is added after NNCF: the same calibration, the same quantized core
    _same_as_host(float_int8, accept_int8, scenes, precision="int8", exact=False)
    from danet_deploy.verify.perlayer_run import run_per_layer

    layers = run_per_layer(accept_int8, generated=1).layers  # the IR is fed the uint8 image, the reference floats
    assert sum(layer.matched for layer in layers) >= 0.6 * len(layers)  # as for a float-input IR (test_perlayer)


@pytest.mark.slow
def test_onnxruntime_int8_keeps_the_quantized_core_identical(tmp_path, scenes, module_cache):
    float_folder, _ = _export(tmp_path, "onnxruntime", "int8")
    accept_folder, manifest = _export(tmp_path, "onnxruntime", "int8", accept="rgb8")
    assert manifest.extra["quantization"]["ranges_from_cache"]  # calibrated the very same float-input graph
    plain, wrapped = (onnx.load(str(f / "model.onnx")).graph for f in (float_folder, accept_folder))
    core = [n for n in wrapped.node if not n.name.startswith("accept/")]
    assert [(n.name, n.op_type, list(n.input)) for n in core] == [
        (n.name, n.op_type, list(n.input)) for n in plain.node
    ]
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in plain.initializer}
    for init in wrapped.initializer:
        if init.name in scales:
            np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), scales[init.name])
    _same_as_host(float_folder, accept_folder, scenes)  # identical core, identical inputs: identical logits
    fp16_float, _ = _export(tmp_path, "onnxruntime", "fp16")
    fp16_accept, _ = _export(tmp_path, "onnxruntime", "fp16", accept="rgb8")
    _same_as_host(fp16_float, fp16_accept, scenes)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_bundle_onnx_takes_the_uint8_image(tmp_path, scenes, precision, module_cache):
    float_folder, _ = _export(tmp_path, "tensorrt", precision)
    accept_folder, manifest = _export(
        tmp_path, "tensorrt", precision, accept="rgb8", dynamic=True, max_size=(96, 96), max_batch=2
    )
    assert manifest.input["max_shape"] == [2, 96, 96, 3]  # the engine's profile, on the image input
    assert manifest.extra["tensorrt"]["profiles"][0]["input"] == "image"
    graph = onnx.load(str(accept_folder / "model.onnx"))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph.graph.node[0].op_type == "Cast"  # TensorRT takes uint8 only straight into a cast
    with runtime.load(float_folder) as host, runtime.load(accept_folder) as bundle:
        for image in scenes:
            assert (bundle.run(image) == host.run(image)).mean() >= TOLERANCES[precision].min_argmax_agreement


@pytest.mark.slow
def test_openvino_fp16_keeps_the_wrapper_in_float32(tmp_path, scenes):
    float_folder, _ = _export(tmp_path, "openvino", "fp16")
    accept_folder, _ = _export(tmp_path, "openvino", "fp16", accept="rgb8")
    sizes = [(f / "model.bin").stat().st_size for f in (float_folder, accept_folder)]
    assert abs(sizes[0] - sizes[1]) < 1024  # the network's weights are FP16 in both
    # the wrapper's mean/scale stay float32: the same FP16 network, so FP32-tight agreement between the two
    _same_as_host(float_folder, accept_folder, scenes, precision="fp32", exact=False)
