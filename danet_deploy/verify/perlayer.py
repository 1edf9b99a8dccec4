"""Per-layer diagnostics: where an FP16/INT8 graph loses precision, layer by layer.

Like ONNX Runtime's ``qdq_loss_debug`` and Polygraphy's ``--onnx-outputs mark all``: the FP32
reference ONNX (re-exported from the artifact's own manifest: same model, checkpoint, opset,
exporter and attention chunking, so tensor names match) and the artifact's ONNX run on the same
preprocessed inputs with every intermediate tensor exposed as a graph output; tensors are
matched by name (the exporters keep the reference's names; the FP16 converter's ``_cast_to_fp16``
/ ``_cast_to_fp32`` renames are followed). Per layer, streamed over the inputs so memory stays at
one image's activations:

* ``sqnr_db``, ``cosine``, ``max_abs_error`` of the artifact's tensor against the reference's
  (accumulated error: everything upstream contributes);
* ``added_nsr``: the noise-to-signal ratio this layer adds over the worst of its inputs (the
  error it *introduces*; the ranking key, because accumulated SQNR only falls with depth);
* ``nonfinite``: NaN/Inf count in the artifact's tensor;
* ``ref_abs_max`` against FP16's largest finite value (65504): ``fp16_overflow`` flags tensors
  that cannot be represented in FP16 at this resolution (CAM's energy grows with H*W);
* ``precision``: what the artifact computes the layer in (``int8`` when a DequantizeLinear feeds
  it, ``fp16`` when its output is half, else ``fp32``), and the artifact's ``node`` name (what
  ``nodes_to_exclude`` takes).

Artifacts: ONNX Runtime (any precision), TensorRT bundles (their prepared ONNX, run in ONNX
Runtime on the CPU: the Q/DQ or AutoCast graph TensorRT would build) and OpenVINO IRs (their
per-node outputs: ``convert_model`` keeps the ONNX tensor names; NNCF's FakeQuantize outputs are
compared like Q/DQ pairs; run with ``INFERENCE_PRECISION_HINT=f32``). Exposing a tensor as an
output stops ONNX Runtime from fusing its producer into an integer kernel, so INT8 layers run as
simulated quantization (float maths on dequantized values), the standard way these tools
measure it; the error is the quantization's, not a kernel's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FP16_MAX = 65504.0
#: Ops that only move or relabel data: never a "layer" of their own.
LAYOUT_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
        "Cast",
        "Constant",
        "Shape",
        "Gather",
        "Slice",
        "Concat",
        "ConstantOfShape",
        "Range",
        "Expand",
        "Split",
    }
)
_RENAMES = ("", "_cast_to_fp16", "_cast_to_fp32")


@dataclass
class LayerStats:
    """One layer (a reference tensor) compared across all inputs."""

    index: int  # position along the reference graph (topological order = depth)
    tensor: str
    op: str
    node: str | None  # the artifact node that produces it (None when not exposed)
    precision: str  # int8 | fp16 | fp32 | "-" (not in the artifact)
    matched: bool
    sqnr_db: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    added_nsr: float | None = None
    nonfinite: int = 0
    ref_abs_max: float = 0.0
    art_abs_max: float | None = None
    fp16_overflow: bool = False
    quantized_output: bool = False  # the compared tensor is a DequantizeLinear output (activation Q/DQ)
    readers: list[str] = field(default_factory=list)  # artifact nodes that read the compared tensor
    note: str | None = None

    @property
    def nsr(self) -> float | None:
        if self.sqnr_db is None:
            return None
        return 0.0 if math.isinf(self.sqnr_db) else 10 ** (-self.sqnr_db / 10)


@dataclass
class _Acc:
    signal: float = 0.0
    noise: float = 0.0
    dot: float = 0.0
    art_sq: float = 0.0
    max_err: float = 0.0
    nonfinite: int = 0
    ref_max: float = 0.0
    art_max: float = 0.0
    shape_mismatch: str | None = None

    def update(self, ref: np.ndarray, art: np.ndarray | None) -> None:
        ref = ref.astype(np.float64)
        self.ref_max = max(self.ref_max, float(np.abs(ref).max(initial=0.0)))
        if art is None:
            return
        art = art.astype(np.float64)
        if art.shape != ref.shape:
            if art.size != ref.size:
                self.shape_mismatch = f"shape {list(art.shape)} vs reference {list(ref.shape)}"
                return
            art = art.reshape(ref.shape)
        finite = np.isfinite(art)
        self.nonfinite += int(art.size - finite.sum())
        art = np.where(finite, art, 0.0)
        diff = art - ref
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum(diff * diff))
        self.dot += float(np.sum(ref * art))
        self.art_sq += float(np.sum(art * art))
        self.max_err = max(self.max_err, float(np.abs(diff).max(initial=0.0)))
        self.art_max = max(self.art_max, float(np.abs(art).max(initial=0.0)))


@dataclass
class PerLayerReport:
    """Every layer of one artifact against the FP32 reference; ``worst()`` ranks them."""

    artifact: str
    precision: str
    images: int
    size: list[int]
    layers: list[LayerStats] = field(default_factory=list)
    reference_onnx: str | None = None

    def worst(self, precision: str | None = None) -> list[LayerStats]:
        """Matched layers by the noise they add, most first (optionally only those in ``precision``)."""
        chosen = [
            l
            for l in self.layers
            if l.matched and l.added_nsr is not None and (precision is None or l.precision == precision)
        ]
        return sorted(chosen, key=lambda l: (-(l.added_nsr or 0.0), l.index))

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst()
        return _json_safe(
            {
                "artifact": self.artifact,
                "precision": self.precision,
                "images": self.images,
                "size": self.size,
                "reference_onnx": self.reference_onnx,
                "fp16_max": FP16_MAX,
                "matched": sum(l.matched for l in self.layers),
                "layers_total": len(self.layers),
                "fp16_overflow": [l.tensor for l in self.layers if l.fp16_overflow],
                "nonfinite": [l.tensor for l in self.layers if l.nonfinite],
                "worst": [l.tensor for l in worst[:10]],
                "layers": [asdict(l) for l in self.layers],
            }
        )

    def table(self, limit: int | None = 25) -> str:
        """Worst first: layers ranked by the noise they add; then overflow and unmatched notes."""
        rows = [
            ("#", "layer (tensor)", "op", "prec", "SQNR dB", "cosine", "max err", "added NSR", "|ref| max", "flags")
        ]
        for l in self.worst()[:limit]:
            flags = [f for f, on in (("FP16-OVERFLOW", l.fp16_overflow), (f"{l.nonfinite} NaN/Inf", l.nonfinite)) if on]
            rows.append(
                (
                    str(l.index),
                    l.tensor,
                    l.op,
                    l.precision,
                    _f(l.sqnr_db, ".1f"),
                    _f(l.cosine, ".5f"),
                    _f(l.max_abs_error, ".3g"),
                    _f(l.added_nsr, ".2e"),
                    _f(l.ref_abs_max, ".3g"),
                    " ".join(flags),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            f"per-layer: {self.artifact} ({self.precision}) vs FP32 reference, {self.images} image(s) at "
            f"{self.size[0]}x{self.size[1]}; {sum(l.matched for l in self.layers)}/{len(self.layers)} "
            "layers matched; ranked by the noise each layer adds (worst first)"
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        over = [l for l in self.layers if l.fp16_overflow]
        if over:
            lines.append(
                f"FP16 overflow: {len(over)} tensor(s) exceed {FP16_MAX:g} in the reference "
                f"(keep them in FP32): {', '.join(l.tensor for l in over[:8])}"
            )
        bad = [l for l in self.layers if l.nonfinite]
        if bad:
            lines.append(f"NaN/Inf in the artifact: {', '.join(l.tensor for l in bad[:8])}")
        missing = [l for l in self.layers if not l.matched]
        if missing:
            lines.append(
                f"{len(missing)} layer(s) not exposed by the artifact (fused or renamed), e.g. "
                f"{', '.join(l.tensor for l in missing[:4])}"
            )
        return "\n".join(lines)


def _f(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("inf" if obj > 0 else "-inf") if math.isinf(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# -- graphs ---------------------------------------------------------------------------------------
def layer_nodes(model: Any) -> list[tuple[int, str, str, list[str]]]:
    """(index, output tensor, op type, input tensors) of every non-layout node, in graph order."""
    out = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in LAYOUT_OPS or not node.output:
            continue
        out.append((i, node.output[0], node.op_type, list(node.input)))
    return out


def _elem_types(model: Any) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def expose(model: Any, tensors: Iterable[str]) -> Any:
    """A copy of ``model`` with ``tensors`` added as graph outputs (types from shape inference)."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    types = _elem_types(copy)
    existing = {o.name for o in copy.graph.output}
    for name in tensors:
        if name not in existing:
            copy.graph.output.append(helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    return copy


def _session(model: Any, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _match(art_model: Any, ref_layers: list[tuple[int, str, str, list[str]]]) -> dict[str, str]:
    """Reference tensor -> artifact tensor of the same name (following the FP16 converter's renames).

    Where the artifact quantizes that tensor (``T -> QuantizeLinear -> DequantizeLinear``), the
    dequantized tensor is what every consumer sees, so it is the one compared: the activation's
    own rounding belongs to the layer, and ONNX Runtime's quantizer drops a Relu after a Conv
    (the u8 range clips negatives instead), so before the Q/DQ pair the tensor is not yet rectified.
    """
    produced = {o for n in art_model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in art_model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def dequantized(name: str) -> str:
        for q in consumers.get(name, []):
            if q.op_type == "QuantizeLinear" and q.input[0] == name:
                dq = next((d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"), None)
                if dq is not None:
                    return dq.output[0]
        return name

    out = {}
    for _, tensor, _, _ in ref_layers:
        for suffix in _RENAMES:
            if tensor + suffix in produced:
                out[tensor] = dequantized(tensor + suffix)
                break
    return out


def _readers(art_model: Any, tensors: dict[str, str]) -> dict[str, list[str]]:
    """Reference tensor -> names of the artifact's compute nodes reading its compared tensor."""
    consumers: dict[str, list[str]] = {}
    for node in art_model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            for name in node.input:
                consumers.setdefault(name, []).append(node.name or node.op_type)
    return {ref: consumers.get(art, []) for ref, art in tensors.items()}


def _precision_of(art_model: Any, tensors: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Reference tensor -> (artifact node name, precision it computes in)."""
    import onnx

    producer = {o: n for n in art_model.graph.node for o in n.output}
    types = _elem_types(art_model)
    out = {}
    for ref_name, art_name in tensors.items():
        node = producer[art_name]
        if node.op_type == "DequantizeLinear":  # the dequantized output of a layer: name the layer itself
            node = producer.get(producer[node.input[0]].input[0], node) if node.input[0] in producer else node
        if any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input):
            prec = "int8"
        elif types.get(art_name) == onnx.TensorProto.FLOAT16:
            prec = "fp16"
        else:
            prec = "fp32"
        out[ref_name] = (node.name or node.op_type, prec)
    return out


@dataclass
class _Side:
    """The artifact side of a comparison: which tensor stands for each reference layer, and how to run it."""

    matched: dict[str, str]  # reference tensor -> key of the artifact's value
    where: dict[str, tuple[str, str]]  # reference tensor -> (artifact node, precision)
    readers: dict[str, list[str]]
    quantized: set[str]  # artifact keys that are dequantized / fake-quantized values
    run: Callable[[np.ndarray], dict[str, np.ndarray]]


def _onnx_side(artifact: Any, layers: list[tuple[int, str, str, list[str]]], threads: int | None) -> _Side:
    matched = _match(artifact, layers)
    names = list(dict.fromkeys(matched.values()))
    sess = _session(expose(artifact, names), threads)
    feed = sess.get_inputs()[0].name
    return _Side(
        matched,
        _precision_of(artifact, matched),
        _readers(artifact, matched),
        {n.output[0] for n in artifact.graph.node if n.op_type == "DequantizeLinear"},
        lambda x: dict(zip(names, sess.run(names, {feed: x}))),
    )


def _openvino_side(xml: Path, layers: list[tuple[int, str, str, list[str]]], threads: int | None) -> _Side:
    """An OpenVINO IR with the reference's tensors (kept by name through conversion) added as outputs.

    A tensor that feeds a FakeQuantize (NNCF INT8) is compared after it, as ONNX Q/DQ pairs are.
    """
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    by_name: dict[str, Any] = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            for name in out.get_names():
                by_name.setdefault(name, out)

    def fed_by_fq(node: Any, hops: int = 2) -> bool:
        for port in node.inputs():
            src = port.get_source_output().get_node()
            if src.get_type_name() == "FakeQuantize" or (
                hops > 1
                and src.get_type_name() in ("Convolution", "GroupConvolution", "MatMul", "MaxPool")
                and fed_by_fq(src, hops - 1)
            ):
                return True
        return False

    matched: dict[str, str] = {}
    where: dict[str, tuple[str, str]] = {}
    readers: dict[str, list[str]] = {}
    targets: list[tuple[str, Any]] = []
    quantized: set[str] = set()
    for _, tensor, _, _ in layers:
        out = by_name.get(tensor)
        if out is None:
            continue
        node = out.get_node()
        fq = [t.get_node() for t in out.get_target_inputs() if t.get_node().get_type_name() == "FakeQuantize"]
        target = fq[0].output(0) if fq else out
        key = f"{tensor}#{len(targets)}"
        matched[tensor] = key
        if fq:
            quantized.add(key)
        precision = "int8" if fed_by_fq(node) else ("fp16" if str(out.get_element_type()) == "f16" else "fp32")
        where[tensor] = (node.get_friendly_name(), precision)
        readers[tensor] = [t.get_node().get_friendly_name() for t in target.get_target_inputs()]
        targets.append((key, target))
    added = model.add_outputs([t for _, t in targets])  # one Result per target, in order
    # the compiled outputs follow model.outputs; find each target's Result there by name
    position = {o.get_node().get_friendly_name(): i for i, o in enumerate(model.outputs)}
    index = {k: position[r.get_node().get_friendly_name()] for (k, _), r in zip(targets, added)}
    config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(model, "CPU", config)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        result = compiled(x)
        return {k: np.asarray(result[compiled.outputs[i]]) for k, i in index.items()}

    return _Side(matched, where, readers, quantized, run)


def compare_layers(
    reference: Any,
    artifact: Any,
    inputs: Sequence[np.ndarray],
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    artifact_inputs: Sequence[np.ndarray] | None = None,
) -> list[LayerStats]:
    """Per-layer statistics of ``artifact`` (an ONNX model, or the path of an OpenVINO ``.xml``)
    against ONNX ``reference`` on ``inputs`` (NCHW float32). ``artifact_inputs``: what the artifact
    takes instead, one per input (the uint8 NHWC images of an ``--accept`` graph)."""
    layers = layer_nodes(reference)
    if isinstance(artifact, (str, Path)) and str(artifact).endswith(".xml"):
        side = _openvino_side(Path(artifact), layers, threads)
    else:
        side = _onnx_side(artifact, layers, threads)
    ref_names = [t for _, t, _, _ in layers]
    ref_sess = _session(expose(reference, ref_names), threads)
    ref_in = ref_sess.get_inputs()[0].name
    accs = {t: _Acc() for t in ref_names}
    for k, batch in enumerate(inputs):
        ref_out = dict(zip(ref_names, ref_sess.run(ref_names, {ref_in: batch})))
        art_out = side.run(batch if artifact_inputs is None else artifact_inputs[k])
        for name in ref_names:
            accs[name].update(ref_out[name], art_out.get(side.matched[name]) if name in side.matched else None)
        del ref_out, art_out
        if progress:
            progress(f"per-layer {k + 1}/{len(inputs)}")
    stats: dict[str, LayerStats] = {}
    for index, tensor, op, _ in layers:
        acc = accs[tensor]
        node, prec = side.where.get(tensor, (None, "-"))
        layer = LayerStats(
            index=index,
            tensor=tensor,
            op=op,
            node=node,
            precision=prec,
            matched=tensor in side.matched and acc.shape_mismatch is None,
            ref_abs_max=acc.ref_max,
            fp16_overflow=acc.ref_max > FP16_MAX,
            note=acc.shape_mismatch,
            quantized_output=side.matched.get(tensor) in side.quantized,
            readers=side.readers.get(tensor, []),
        )
        if layer.matched:
            layer.sqnr_db = math.inf if acc.noise == 0 else 10 * math.log10(max(acc.signal, 1e-30) / acc.noise)
            denom = math.sqrt(acc.signal * acc.art_sq)
            layer.cosine = acc.dot / denom if denom > 0 else (1.0 if acc.noise == 0 else 0.0)
            layer.max_abs_error, layer.nonfinite, layer.art_abs_max = acc.max_err, acc.nonfinite, acc.art_max
        stats[tensor] = layer
    _added_noise(stats, reference, layers)
    return list(stats.values())


def _added_noise(stats: dict[str, LayerStats], reference: Any, layers: list[tuple[int, str, str, list[str]]]) -> None:
    """``added_nsr``: a layer's NSR minus the worst NSR of the nearest layers feeding it."""
    producer = {o: n for n in reference.graph.node for o in n.output}
    cache: dict[str, float] = {}

    def input_nsr(tensor: str, depth: int = 0) -> float:
        """Worst NSR reaching ``tensor`` (walking back through layout ops and unmatched layers)."""
        if tensor in cache:
            return cache[tensor]
        layer = stats.get(tensor)
        if layer is not None and layer.nsr is not None:
            value = layer.nsr
        else:
            node = producer.get(tensor)
            value = (
                0.0
                if node is None or depth > 64
                else max((input_nsr(i, depth + 1) for i in node.input if i), default=0.0)
            )
        cache[tensor] = value
        return value

    for _, tensor, _, inputs in layers:
        layer = stats[tensor]
        if layer.nsr is not None:
            worst_in = max((input_nsr(i) for i in inputs if i), default=0.0)
            layer.added_nsr = max(0.0, layer.nsr - worst_in)


# -- the command ----------------------------------------------------------------------------------
def write_json(report: PerLayerReport, path: str | Path) -> Path:
    from ..util.files import atomic_write_text

    atomic_write_text(path, json.dumps(report.to_dict(), indent=1) + "\n")
    return Path(path)


def plot_sqnr(report: PerLayerReport, path: str | Path) -> Path:
    """SQNR (dB) of every matched layer along network depth, coloured by the precision it runs in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..util.files import atomic_output

    layers = [l for l in report.layers if l.matched and l.sqnr_db is not None]
    sqnr = {l.index: float(l.sqnr_db or 0.0) for l in layers}  # every sqnr_db here is set (filtered above)
    finite = [v for v in sqnr.values() if not math.isinf(v)]
    cap = (max(finite) + 10) if finite else 100.0
    fig, ax = plt.subplots(figsize=(11, 4.5))
    depth = {l.index: i for i, l in enumerate(report.layers)}
    for prec, color in (("int8", "#d62728"), ("fp16", "#ff7f0e"), ("fp32", "#1f77b4")):
        chosen = [l for l in layers if l.precision == prec]
        if chosen:
            ax.scatter(
                [depth[l.index] for l in chosen],
                [min(sqnr[l.index], cap) for l in chosen],
                s=18,
                color=color,
                label=f"computed in {prec} ({len(chosen)})",
            )
    ax.plot(
        [depth[l.index] for l in layers],
        [min(sqnr[l.index], cap) for l in layers],
        color="#999999",
        lw=0.8,
        zorder=0,
        label="SQNR along depth",
    )
    over = [l for l in report.layers if l.fp16_overflow]
    for i, l in enumerate(over):
        ax.axvline(depth[l.index], color="#9467bd", ls="--", lw=0.8, label="exceeds FP16 range" if i == 0 else None)
    for l in report.worst()[:3]:
        ax.annotate(
            l.tensor.strip("/").replace("_output_0", ""),
            (depth[l.index], min(l.sqnr_db or 0, cap)),
            fontsize=7,
            xytext=(3, -10),
            textcoords="offset points",
        )
    ax.set_xlabel("layer (reference graph order = depth)")
    ax.set_ylabel("SQNR vs FP32 reference (dB)")
    ax.set_title(
        f"{Path(report.artifact).name}: {report.precision} per-layer SQNR, {report.images} image(s) "
        f"at {report.size[0]}x{report.size[1]}"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
