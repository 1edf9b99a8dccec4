"""Position attention as each engine's fused attention kernel, rewritten on the exported ONNX graph.

Why a graph rewrite and not another torch forward: the exporters trace PAM as three nodes
(``MatMul -> Softmax -> MatMul``), and neither ONNX Runtime nor OpenVINO recognised that chain in
the full DANet graph: OpenVINO's ``PERF_COUNT`` showed ``/head/sa/MatMul``, ``MatMul_1`` and
``Softmax`` as separate nodes taking 53% of the INT8 model's time. Measured (N = 4096, query/key
dim 8, value dim 64, 2 threads, loaded machine):

* ONNX Runtime 1.32 CPU: ``com.microsoft.MultiHeadAttention`` (``num_heads=1, scale=1``) 11.6 ms
  against 16.8 ms unfused, max difference 4.8e-6; ONNX's own ``Attention`` (opset 23) ran 22.6 ms,
  slower than unfused, so the contrib operator is the one written.
* OpenVINO's ONNX frontend turns ``com.microsoft.MultiHeadAttention`` into its
  ``ScaledDotProductAttention`` op, so the same graph reaches OpenVINO's fused kernel; f32
  results equal the unfused graph's within 3e-6.
* Both accept different head sizes for query/key (C/8) and value (C): no padding is needed.

What is rewritten: every ``Softmax`` over the last axis whose input is a 4-D single-head ``MatMul``
(``q [B,1,N,C'] @ k [B,1,C',N]``) and whose only consumer is a ``MatMul`` applying it to
``v [B,1,N,C]``. Chunked attention (``--attention-chunks``) has one such chain per chunk, each
becoming one fused node over its query slice: the chunk bounds still come from the symbolic N, so
the graph stays exact and bounded at sizes larger than at export. CAM (``max - energy`` over
channels, 3-D) is left alone: it is a small share of the time and its ``max - energy`` trick is not
part of either fused kernel's maths.

TensorRT's documented fusion (``IAttention`` or ``MatMul -> Softmax -> MatMul`` on
``[B, N, S, H]`` tensors) needs one head size H for query, key *and* value; PAM's C/8 vs C does
not fit. :func:`pad_for_tensorrt` writes that pattern by zero-padding query and key to C, which
leaves every dot product unchanged (exact), at 8x the energy MatMul's arithmetic; whether a given
TensorRT version then fuses it is only known from an engine built on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ExportError

#: ``--option attention=...`` values of the ONNX Runtime and OpenVINO targets
ATTENTION_FORMS = ("fused", "unfused")
CONTRIB_DOMAIN = "com.microsoft"
FUSED_OP = "MultiHeadAttention"


@dataclass
class _Chain:
    """One ``MatMul -> Softmax -> MatMul`` position-attention chain in an ONNX graph."""

    energy: Any
    softmax: Any
    apply: Any
    query: str
    key: str
    value: str
    value_dim: int | None = None


@dataclass
class FusionReport:
    """What a rewrite did (recorded in the manifest's ``extra``)."""

    form: str
    fused_nodes: list[str] = field(default_factory=list)
    replaced_nodes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "fused": len(self.fused_nodes),
            "fused_nodes": self.fused_nodes,
            "replaced_nodes": self.replaced_nodes,
            "skipped": self.skipped,
        }


def _opset(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def _shapes(model: Any) -> dict[str, tuple[int, list[Any]]]:
    """``{tensor: (elem_type, dims)}`` from shape inference (dims: int, name, or None)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    out: dict[str, tuple[int, list[Any]]] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        out[info.name] = (tensor.elem_type, dims)
    return out


def find_chains(model: Any) -> tuple[list[_Chain], list[str]]:
    """The position-attention chains of ``model`` that can be fused, and why others cannot."""
    from onnx import TensorProto

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    shapes = _shapes(model)
    chains, skipped = [], []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        energy = producer.get(node.input[0])
        users = consumers.get(node.output[0], [])
        if energy is None or energy.op_type != "MatMul":
            continue  # CAM (ReduceMax/Sub in between) or a non-attention softmax
        if (
            len(users) != 1
            or users[0].op_type != "MatMul"
            or users[0].input[0] != node.output[0]
            or node.output[0] in outputs
            or energy.output[0] in outputs
        ):
            skipped.append(f"{node.name}: its probabilities feed more than one MatMul")
            continue
        apply = users[0]
        if len(consumers.get(energy.output[0], [])) != 1:
            skipped.append(f"{node.name}: the energy is used elsewhere")
            continue
        q, k, v = energy.input[0], energy.input[1], apply.input[1]
        info = [shapes.get(t) for t in (q, k, v, apply.output[0])]
        if any(i is None or len(i[1]) != 4 or i[0] != TensorProto.FLOAT for i in info):
            skipped.append(f"{node.name}: not a float32 4-D attention (shapes unknown or another layout)")
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if _opset(model) < 13 or axis not in (-1, 3):
            skipped.append(f"{node.name}: softmax not over the last axis in opset >= 13")
            continue
        if any(i[1][1] != 1 for i in info):  # type: ignore[index]
            skipped.append(f"{node.name}: more than one head (dim 1 is not 1)")
            continue
        chains.append(_Chain(energy, node, apply, q, k, v, info[2][1][3]))  # type: ignore[index]
    return chains, skipped


def fuse_attention(model: Any) -> FusionReport:
    """Rewrite PAM chains of ``model`` (an ``onnx.ModelProto``, in place) as ``com.microsoft.MultiHeadAttention``.

    ``q [B,1,N,C']``, ``k [B,1,C',N]``, ``v [B,1,N,C]`` become ``Squeeze(q)``, ``Squeeze(Transpose(k))``,
    ``Squeeze(v)`` (``[B, N, .]``, one head), the fused node (``scale=1``: PAM has none), and
    ``Unsqueeze`` back to ``[B,1,N,C]`` under the replaced MatMul's output name.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    chains, skipped = find_chains(model)
    report = FusionReport("fused", skipped=skipped)
    if not chains:
        return report
    graph = model.graph
    axes_as_input = _opset(model) >= 13
    axes_name = "danet_fused_attention_axis1"
    if axes_as_input and not any(i.name == axes_name for i in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axes_name))
    removed = set()
    inserts: dict[int, list[Any]] = {}
    index = {id(n): i for i, n in enumerate(graph.node)}
    for n, chain in enumerate(chains):
        base = chain.energy.name.rsplit("/", 1)[0] if "/" in chain.energy.name else ""
        name = f"{base}/FusedAttention{'_' + str(n) if len(chains) > 1 else ''}"

        t = f"{name}/"
        axis = axes_name if axes_as_input else None
        nodes = [
            _axis1("Squeeze", chain.query, t + "q3", t + "SqueezeQuery", axis),
            helper.make_node("Transpose", [chain.key], [t + "k_t"], perm=[0, 1, 3, 2], name=t + "TransposeKey"),
            _axis1("Squeeze", t + "k_t", t + "k3", t + "SqueezeKey", axis),
            _axis1("Squeeze", chain.value, t + "v3", t + "SqueezeValue", axis),
            helper.make_node(
                FUSED_OP,
                [t + "q3", t + "k3", t + "v3"],
                [t + "o3"],
                domain=CONTRIB_DOMAIN,
                num_heads=1,
                scale=1.0,
                name=name,
            ),
            _axis1("Unsqueeze", t + "o3", chain.apply.output[0], t + "Unsqueeze", axis),
        ]
        inserts[index[id(chain.apply)]] = nodes
        for old in (chain.energy, chain.softmax, chain.apply):
            removed.add(id(old))
            report.replaced_nodes.append(old.name)
        report.fused_nodes.append(name)
    new_nodes = []
    for i, node in enumerate(graph.node):
        if i in inserts:
            new_nodes.extend(inserts[i])
        if id(node) not in removed:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    _drop_stale_value_info(model, report)
    return report


def _axis1(op: str, src: str, out: str, name: str, axes_input: str | None) -> Any:
    """``Squeeze``/``Unsqueeze`` of axis 1: axes as an input (opset >= 13) or an attribute."""
    from onnx import helper

    if axes_input is not None:
        return helper.make_node(op, [src, axes_input], [out], name=name)
    return helper.make_node(op, [src], [out], axes=[1], name=name)


def _drop_stale_value_info(model: Any, report: FusionReport) -> None:
    """Shape facts of tensors that no longer exist would mislead the next shape inference."""
    alive = {t for node in model.graph.node for t in (*node.input, *node.output)}
    keep = [v for v in model.graph.value_info if v.name in alive]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)


def apply_attention_form(model: Any, form: str) -> FusionReport:
    """``fused``: :func:`fuse_attention`; ``heads:N``: :func:`split_query_heads`; ``tensorrt``:
    :func:`pad_for_tensorrt`; ``unfused``: as is."""
    if form == "tensorrt":
        return pad_for_tensorrt(model)
    if form.startswith("heads:") and form[6:].isdigit():
        return split_query_heads(model, int(form[6:]))
    if form not in ATTENTION_FORMS:
        raise ExportError(f"attention form {form!r} is not known; choose {' or '.join(ATTENTION_FORMS)}")
    if form == "unfused":
        return FusionReport("unfused")
    return fuse_attention(model)


def fuse_file(src: Any, dst: Any, form: str) -> FusionReport:
    """Read ``src``, apply ``form``, write ``dst`` (both paths); the report says what changed."""
    import onnx

    model = onnx.load(str(src))
    report = apply_attention_form(model, form)
    onnx.save(model, str(dst))
    return report


def pad_for_tensorrt(model: Any) -> FusionReport:
    """Rewrite PAM chains in the layout TensorRT's attention fusion documents (one head size H).

    ``softmax(q k) v`` with ``q [B,1,N,C']``, ``k [B,1,C',N]`` becomes
    ``softmax(pad(q) @ Transpose(pad(kᵀ))) v`` with query and key zero-padded from C' to C (the
    value's head size): BMM1 over ``[B,1,N,C]`` tensors with the key transposed into it, Softmax,
    BMM2. Zeros add nothing to a dot product, so the maths is unchanged.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    chains, skipped = find_chains(model)
    report = FusionReport("tensorrt-mha-pattern", skipped=skipped)
    graph = model.graph
    if _opset(model) < 11:
        raise ExportError("padding for TensorRT's attention pattern needs opset >= 11 (Pad with a pads input)")
    index = {id(n): i for i, n in enumerate(graph.node)}
    inserts: dict[int, list[Any]] = {}
    for chain in chains:
        if chain.value_dim is None or not isinstance(chain.value_dim, int):
            report.skipped.append(f"{chain.softmax.name}: value head size unknown")
            continue
        prefix = f"{chain.energy.name}_trt/"
        q_dim = _shapes(model).get(chain.query, (0, [None] * 4))[1][3]
        if not isinstance(q_dim, int):
            report.skipped.append(f"{chain.softmax.name}: query head size unknown")
            continue
        extra = chain.value_dim - q_dim
        pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 0, max(extra, 0)], dtype=np.int64), prefix + "pads")
        graph.initializer.append(pads)
        nodes = [
            helper.make_node("Pad", [chain.query, pads.name], [prefix + "q_padded"], name=prefix + "PadQuery"),
            helper.make_node(
                "Transpose", [chain.key], [prefix + "k_bnsh"], perm=[0, 1, 3, 2], name=prefix + "KeyToBNSH"
            ),
            helper.make_node("Pad", [prefix + "k_bnsh", pads.name], [prefix + "k_padded"], name=prefix + "PadKey"),
            helper.make_node(
                "Transpose", [prefix + "k_padded"], [prefix + "k_t"], perm=[0, 1, 3, 2], name=prefix + "TransposeKey"
            ),
        ]
        inserts[index[id(chain.energy)]] = nodes
        chain.energy.input[0] = prefix + "q_padded"
        chain.energy.input[1] = prefix + "k_t"
        report.fused_nodes.append(chain.energy.name)
    new_nodes = []
    for i, node in enumerate(graph.node):
        new_nodes.extend(inserts.get(i, []))
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_stale_value_info(model, report)
    return report


def split_query_heads(model: Any, heads: int = 2) -> FusionReport:
    """Rewrite PAM chains so OpenVINO's CPU plugin compiles each into one fused MHA kernel.

    The plugin's MHA tokenizer recognises ``MatMul -> Softmax -> MatMul`` but refuses it when the
    batch x heads dims give less parallel work than threads: DANet's PAM is one head at batch 1,
    so it ran as three nodes (53% of INT8 time). Here the queries are split into ``heads`` groups
    (``q [B,1,N,C'] -> [B,heads,N/heads,C']``) and key and value are tiled to ``heads``, which
    is the same maths (each query row's softmax still spans every key), then reshaped back to
    ``[B,1,N,C]``. Measured (danet_demo 512x512, OpenVINO 2026.4, 2 threads): the runtime graph
    shows one ``Subgraph`` for the core, f32 within 2e-6 of the unfused graph. A chain whose query
    count is not known at export or not divisible by ``heads`` is left as it is (named in
    ``skipped``), since a Reshape into heads would fail at run time for other sizes.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    chains, skipped = find_chains(model)
    report = FusionReport(f"openvino-mha-{heads}-heads", skipped=skipped)
    if heads < 2:
        return report
    shapes = _shapes(model)
    graph = model.graph
    index = {id(n): i for i, n in enumerate(graph.node)}
    before: dict[int, list[Any]] = {}
    after: dict[int, list[Any]] = {}
    for chain in chains:
        queries = shapes.get(chain.query, (0, [None] * 4))[1][2]
        if not isinstance(queries, int) or queries % heads:
            report.skipped.append(f"{chain.softmax.name}: {queries} queries (symbolic or not divisible by {heads})")
            continue
        p = f"{chain.energy.name}_heads/"
        tensors = [
            numpy_helper.from_array(np.array(v, dtype=np.int64), p + n)
            for n, v in (("split", [0, heads, -1, 0]), ("join", [0, 1, -1, 0]), ("tile", [1, heads, 1, 1]))
        ]
        graph.initializer.extend(tensors)
        out = chain.apply.output[0]
        before[index[id(chain.energy)]] = [
            helper.make_node("Reshape", [chain.query, p + "split"], [p + "q"], name=p + "SplitQuery"),
            helper.make_node("Tile", [chain.key, p + "tile"], [p + "k"], name=p + "TileKey"),
            helper.make_node("Tile", [chain.value, p + "tile"], [p + "v"], name=p + "TileValue"),
        ]
        chain.energy.input[0], chain.energy.input[1], chain.apply.input[1] = p + "q", p + "k", p + "v"
        chain.apply.output[0] = p + "out"
        after[index[id(chain.apply)]] = [helper.make_node("Reshape", [p + "out", p + "join"], [out], name=p + "Join")]
        report.fused_nodes.append(chain.energy.name)
        report.replaced_nodes.append(chain.apply.name)
    new_nodes = []
    for i, node in enumerate(graph.node):
        new_nodes.extend(before.get(i, []))
        new_nodes.append(node)
        new_nodes.extend(after.get(i, []))
    del graph.node[:]
    graph.node.extend(new_nodes)
    if report.fused_nodes:  # the energy and probability shapes changed: old shape facts would contradict them
        del graph.value_info[:]
    return report
