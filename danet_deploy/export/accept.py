"""``--accept rgb8|bgr8``: put the host's preprocessing in front of a finished graph.

The wrapper is added *after* every precision step (INT8 calibration, FP16 conversion, the
accuracy budget): each target builds, calibrates and checks exactly the float-input graph it
builds without ``--accept``, and only then gets a uint8 ``image`` input in front. Why this order
and not a uint8 graph from the start: the quantized core stays identical to the default
artifact's (same calibration tensors, same cached ranges keyed by the same graph hash, same node
names for the precision policy and the per-layer report), and no quantizer ever sees the
normalisation ops, whose inputs are exact bytes that need no quantization. The prefix itself
stays in float32 in every precision (it feeds the graph's float32 input).

ONNX (targets onnx, onnxruntime, tensorrt bundles): ``Transpose`` of the uint8 image to NCHW, a
``Gather`` of channels ``[2, 1, 0]`` when the image's colour order differs from the model's,
``Cast(uint8 -> float32)``, ``Div(255)``, ``Sub(mean)``, ``Div(std)`` (the same float32 operations,
in the same order, as the host's lookup tables: bit-identical inputs); the last output keeps the
old input name so no node of the core changes. The order matters for speed, not for the values:
transposing the uint8 bytes first and normalising planes with ``[1, 3, 1, 1]`` constants took
0.9-1.0 ms at 512x512 in ONNX Runtime, against 10-15 ms for normalising the interleaved float
image (a broadcast over a last axis of 3) and transposing floats last (benchmarks/accept_input.py).
TensorRT bundles cast first (``cast_first``): TensorRT takes uint8 only as a network input that is
converted to float right away (its ``IIdentityLayer``/``ICastLayer`` rules: uint8 converts to and
from float/half only), so the bytes are not transposed or gathered there. OpenVINO: the same steps through OpenVINO's own
``PrePostProcessor`` (its compiler fuses them into the first layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ExportError, summarize_exception
from ..inputs import (
    FLOAT,
    IMAGE_NAME,
    NCHW_TO_NHWC,
    check_accept,
    image_order,
    reverses_channels,
)

PREFIX = "accept/"  # node name prefix of the wrapper (never a name the torch exporter writes)
META_KEY = "danet.accept"


def wrap_onnx(model: Any, accept: str, preprocessing: dict[str, Any], cast_first: bool = False) -> Any:
    """``model`` (an ``onnx.ModelProto`` with one float32 NCHW input) taking uint8 NHWC images
    (``cast_first``: Cast the image before any other op, as TensorRT requires of uint8 inputs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if check_accept(accept) == FLOAT:
        return model
    graph = model.graph
    if len(graph.input) != 1 or graph.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ExportError(
            "--accept wraps a graph with one float32 input (not one that takes uint8 images "
            f"already); this graph has {[i.name for i in graph.input]}"
        )
    old = graph.input[0]
    dims = list(old.type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise ExportError(f"--accept wraps a 4-D NCHW input, {old.name!r} has {len(dims)} dims")

    def dim(d: Any) -> Any:
        return d.dim_param if d.HasField("dim_param") else (d.dim_value or None)

    image = helper.make_tensor_value_info(IMAGE_NAME, TensorProto.UINT8, [dim(dims[i]) for i in NCHW_TO_NHWC])
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, 3, 1, 1)
    consts = [
        numpy_helper.from_array(np.asarray(255.0, np.float32), f"{PREFIX}scale"),
        numpy_helper.from_array(mean, f"{PREFIX}mean"),
        numpy_helper.from_array(std, f"{PREFIX}std"),
    ]
    nodes: list[Any] = []
    current = IMAGE_NAME

    def add(op: str, inputs: list[str], output: str, **attrs: Any) -> None:
        nonlocal current
        nodes.append(helper.make_node(op, inputs, [f"{PREFIX}{output}"], name=f"{PREFIX}{op}", **attrs))
        current = f"{PREFIX}{output}"

    if cast_first:  # TensorRT: the uint8 input goes straight into a cast, the rest runs on float32
        add("Cast", [current], "float", to=TensorProto.FLOAT)
    add("Transpose", [current], "planar", perm=[0, 3, 1, 2])
    if reverses_channels(accept, preprocessing.get("color_order", "RGB")):
        consts.append(numpy_helper.from_array(np.asarray([2, 1, 0], np.int64), f"{PREFIX}channels"))
        add("Gather", [current, f"{PREFIX}channels"], "reordered", axis=1)
    if not cast_first:
        add("Cast", [current], "float", to=TensorProto.FLOAT)
    nodes += [
        helper.make_node("Div", [current, f"{PREFIX}scale"], [f"{PREFIX}unit"], name=f"{PREFIX}Div255"),
        helper.make_node("Sub", [f"{PREFIX}unit", f"{PREFIX}mean"], [f"{PREFIX}centred"], name=f"{PREFIX}SubMean"),
        helper.make_node("Div", [f"{PREFIX}centred", f"{PREFIX}std"], [old.name], name=f"{PREFIX}DivStd"),
    ]
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    g = wrapped.graph
    g.value_info.append(old)  # the old input is now an intermediate tensor of known type and shape
    del g.input[:]
    g.input.append(image)
    g.initializer.extend(consts)
    core = list(g.node)
    del g.node[:]
    g.node.extend([*nodes, *core])
    _set_meta(wrapped, accept)
    return wrapped


def _set_meta(model: Any, accept: str) -> None:
    """Record the accepted format in the graph, so a bare ``.onnx`` describes its input too."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in (META_KEY, "input_layout")]
    del model.metadata_props[:]
    for key, value in [
        *keep,
        (META_KEY, accept),
        ("input_layout", f"NHWC uint8 {image_order(accept)} '{IMAGE_NAME}', normalised in the graph"),
    ]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def wrap_onnx_file(path: Path, accept: str, preprocessing: dict[str, Any], cast_first: bool = False) -> None:
    """:func:`wrap_onnx` on a file, in place (checked by ``onnx.checker`` before it replaces it)."""
    import onnx

    from ..util.files import atomic_output

    if check_accept(accept) == FLOAT:
        return
    wrapped = wrap_onnx(onnx.load(str(path)), accept, preprocessing, cast_first)
    try:
        onnx.checker.check_model(wrapped)
    except Exception as exc:
        raise ExportError(f"the --accept {accept} ONNX failed onnx.checker: {summarize_exception(exc)}") from exc
    with atomic_output(Path(path)) as tmp:
        onnx.save(wrapped, str(tmp))


def compress_weights(model: Any, scratch: Path) -> Any:
    """``model`` with FP16-compressed weights, as ``save_model(compress_to_fp16=True)`` writes them,
    read back so that a wrapper added afterwards keeps float32 constants.

    Why: compression at save time also halves the wrapper's mean and scale constants (the
    ``disable FP16 compression`` runtime attribute is not settable from Python), which moved an FP16
    artifact's logits by ~5e-3 against the same artifact fed host-normalised inputs.
    """
    import openvino as ov

    path = Path(scratch) / "fp16_weights.xml"
    ov.save_model(model, str(path), compress_to_fp16=True)
    core = ov.Core()
    core.set_property({"ENABLE_MMAP": False})  # the scratch files go away before the artifact is written
    return core.read_model(str(path))


def wrap_openvino(model: Any, accept: str, preprocessing: dict[str, Any]) -> Any:
    """An ``openvino.Model`` taking uint8 NHWC images, through OpenVINO's ``PrePostProcessor``."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    if check_accept(accept) == FLOAT:
        return model
    formats = {"RGB": ColorFormat.RGB, "BGR": ColorFormat.BGR}
    model_order = str(preprocessing.get("color_order", "RGB")).upper()
    try:
        ppp = PrePostProcessor(model)
        port = ppp.input()
        tensor = port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        port.model().set_layout(ov.Layout("NCHW"))
        steps = port.preprocess().convert_element_type(ov.Type.f32)
        if reverses_channels(accept, model_order):
            tensor.set_color_format(formats[image_order(accept)])
            steps.convert_color(formats[model_order])
        steps.scale(255.0).mean([float(m) for m in preprocessing["mean"]]).scale(
            [float(s) for s in preprocessing["std"]]
        )
        wrapped = ppp.build()
        wrapped.inputs[0].get_tensor().set_names({IMAGE_NAME})
    except Exception as exc:
        raise ExportError(
            f"OpenVINO PrePostProcessor could not add the --accept {accept} input: {summarize_exception(exc)}"
        ) from exc
    wrapped.set_rt_info(accept, ["danet", "accept"])
    return wrapped
