"""One precision policy -- which nodes stay in float -- translated for every backend.

Why a policy at all: DANet's two attention modules are the part of the network that INT8 (and,
for the channel attention, FP16) handles worst. Position attention's ``softmax(QᵀK)`` over N = HW/64
positions is nearly one-hot on a trained model, so an 8-bit energy or probability matrix moves
the argmax of whole regions; channel attention's energy ``F Fᵀ`` grows with H·W (thousands at
512², tens of thousands at 1024×2048) and its ``max - energy`` trick only works at full
precision. ``onnxruntime.quantization.qdq_loss_debug`` showed the SQNR collapse exactly there.

Presets:
    ``attention-float``: keep the attention energy MatMuls, CAM's max/subtract, the Softmaxes
        and the probability x value MatMuls in float; quantize everything else.
    ``attention-bf16``: as ``attention-float``, with the float attention core computed in bf16 on CPUs
        with AMX or AVX512-BF16 (OpenVINO INT8 only; refused elsewhere, see :func:`check_attention_bf16`).
    ``quantize-all``: let each quantizer do what it does by default.
    custom: regular expressions on node names (``PrecisionPolicy.from_spec("re:/head/sa/.*")``) and
        op types (``"op:Softmax"``), optionally on top of a preset (``"attention-float+re:/head/conv8/"``).

The attention nodes are found by *structure*, not by name: every Softmax, the MatMul that
produces its input (through CAM's ReduceMax/Sub), and the MatMul that consumes its output. This
survives chunked position attention (one Softmax per chunk), other exporters and simplifiers;
module names (``/head/sa/`` = PAM, ``/head/sc/`` = CAM in the legacy exporter) only label them.
The same walk runs on an ONNX graph and on an OpenVINO model, so NNCF's ``IgnoredScope`` and
ONNX Runtime's ``nodes_to_exclude`` name the same operations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

PRESETS = ("attention-float", "attention-bf16", "quantize-all")

# ops allowed between the energy MatMul and the Softmax (CAM: ReduceMax + Sub; scaled attention: Div/Mul)
_ENERGY_PATH = {"Sub", "Subtract", "ReduceMax", "Div", "Divide", "Mul", "Multiply", "Add", "Cast", "Convert"}
# ops allowed between the Softmax and the MatMul that applies it
_PROB_PATH = {"Transpose", "Reshape", "Cast", "Convert", "Squeeze", "Unsqueeze"}
_MATMUL = {"MatMul", "Einsum"}
_SOFTMAX = {"Softmax"}
# one-node attention (export.fused_attention; OpenVINO's reading of it): the whole core in one op
_FUSED = {"MultiHeadAttention", "ScaledDotProductAttention", "Attention"}


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str]  # producer node names ("" for graph inputs / constants)
    consumers: list[str] = field(default_factory=list)


def _onnx_graph(model: Any) -> dict[str, _Node]:
    import onnx

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    producer: dict[str, str] = {}
    nodes: dict[str, _Node] = {}
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        for out in node.output:
            producer[out] = name
        nodes[name] = _Node(name, node.op_type, list(node.input))
    for node in nodes.values():
        node.inputs = [producer.get(t, "") for t in node.inputs]
        for src in node.inputs:
            if src:
                nodes[src].consumers.append(node.name)
    return nodes


def _openvino_graph(model: Any) -> dict[str, _Node]:
    nodes: dict[str, _Node] = {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        inputs = [port.get_source_output().get_node().get_friendly_name() for port in op.inputs()]
        nodes[name] = _Node(name, op.get_type_name(), inputs)
    for node in nodes.values():
        for src in node.inputs:
            if src in nodes:
                nodes[src].consumers.append(node.name)
    return nodes


def attention_nodes(nodes: dict[str, _Node]) -> list[str]:
    """Names of the attention core: energy MatMul, energy post-ops, Softmax, probability MatMul."""
    keep: list[str] = []

    def add(name: str) -> None:
        if name not in keep:
            keep.append(name)

    for node in nodes.values():
        if node.op in _FUSED:
            add(node.name)
        if node.op not in _SOFTMAX:
            continue
        # backwards to the energy MatMul (CAM: MatMul -> ReduceMax -> Sub -> Softmax)
        path: list[str] = []
        frontier, seen = [node.name], set()
        found = False
        while frontier:
            current = frontier.pop()
            for src in nodes[current].inputs:
                if not src or src in seen or src not in nodes:
                    continue
                seen.add(src)
                if nodes[src].op in _MATMUL:
                    path.append(src)
                    found = True
                elif nodes[src].op in _ENERGY_PATH and len(seen) < 8:
                    path.append(src)
                    frontier.append(src)
        if not found:  # a Softmax that is not attention (none in DANet, but custom heads may have one)
            continue
        for name in path:
            add(name)
        add(node.name)
        # forwards to the MatMul that applies the probabilities
        frontier = [node.name]
        for _ in range(4):
            nxt = []
            for current in frontier:
                for dst in nodes[current].consumers:
                    if nodes[dst].op in _MATMUL:
                        add(dst)
                    elif nodes[dst].op in _PROB_PATH:
                        nxt.append(dst)
            frontier = nxt
    return keep


def module_of(name: str) -> str:
    """``pam``/``cam``/``attention`` from a node's module path (legacy exporter: /head/sa, /head/sc)."""
    if "/sa/" in name or "head.sa" in name or "/sa_" in name or "ScaledDotProductAttention" in name:
        return "pam"
    if "/sc/" in name or "head.sc" in name or "/sc_" in name:
        return "cam"
    return "attention"


@dataclass(frozen=True)
class PrecisionPolicy:
    """Which nodes stay in float, independent of any one quantizer.

    Attributes:
        name: ``attention-float``, ``quantize-all`` or ``custom``.
        keep_attention: keep the structurally found attention core in float.
        patterns: extra regular expressions (``re.search``) on node names to keep in float.
        op_types: extra op types to keep in float everywhere (e.g. ``("Softmax",)``).
    """

    name: str = "attention-float"
    keep_attention: bool = True
    patterns: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ()
    attention_precision: str = "fp32"  # "bf16": attention-bf16 (the float core in bf16)

    @classmethod
    def from_spec(cls, spec: str | PrecisionPolicy | None) -> PrecisionPolicy:
        """Parse ``attention-float``, ``quantize-all``, ``re:PATTERN``, ``op:OPTYPE`` or ``PRESET+re:...+op:...``."""
        if isinstance(spec, PrecisionPolicy):
            return spec
        if spec is None or spec == "":
            return cls()
        keep, name, attention_precision = False, "custom", "fp32"
        patterns: list[str] = []
        op_types: list[str] = []
        for part in str(spec).split("+"):
            part = part.strip()
            if part == "attention-bf16":
                keep, attention_precision = True, "bf16"
                name = "attention-bf16" if name == "custom" and not patterns else "custom"
            elif part == "attention-float":
                keep, name = True, ("attention-float" if name == "custom" and not patterns else "custom")
            elif part == "quantize-all":
                name = "quantize-all" if not patterns else "custom"
            elif part.startswith("op:") and part[3:]:
                op_types.append(part[3:])
                name = "custom"
            elif part.startswith("re:"):
                try:
                    re.compile(part[3:])
                except re.error as exc:
                    raise ConfigError(
                        f"--policy pattern {part[3:]!r} is not a valid regular expression ({exc})"
                    ) from exc
                patterns.append(part[3:])
                name = "custom"
            else:
                raise ConfigError(
                    f"unknown precision policy {part!r}; use {' or '.join(PRESETS)}, 're:<regex on node "
                    "names>', 'op:<op type>', or combine them with '+' (e.g. attention-float+re:/head/conv8/)"
                )
        return cls(
            name=name,
            keep_attention=keep,
            patterns=tuple(patterns),
            op_types=tuple(op_types),
            attention_precision=attention_precision,
        )

    # -- graph queries -------------------------------------------------------------------------
    def _select(self, nodes: dict[str, _Node]) -> list[str]:
        keep = attention_nodes(nodes) if self.keep_attention else []
        compiled = [re.compile(p) for p in self.patterns]
        for node in nodes.values():
            if node.name in keep:
                continue
            if node.op in self.op_types or any(p.search(node.name) for p in compiled):
                keep.append(node.name)
        return keep

    def float_nodes(self, onnx_model: Any) -> list[str]:
        """ONNX node names to keep in float for ``onnx_model`` (a path or ``ModelProto``).

        Use for ONNX Runtime's ``nodes_to_exclude``, ModelOpt AutoCast's ``nodes_to_exclude`` and
        TensorRT Q/DQ placement.
        """
        return self._select(_onnx_graph(onnx_model))

    def openvino_float_nodes(self, ov_model: Any) -> list[str]:
        """OpenVINO operation (friendly) names to keep in float for ``ov_model``."""
        return self._select(_openvino_graph(ov_model))

    # -- backend translations ------------------------------------------------------------------
    def ort_quantize_kwargs(self, onnx_model: Any) -> dict[str, Any]:
        """``nodes_to_exclude`` for ``onnxruntime.quantization.quantize_static``."""
        return {"nodes_to_exclude": self.float_nodes(onnx_model)}

    def ort_fp16_kwargs(self, onnx_model: Any) -> dict[str, Any]:
        """``node_block_list`` / ``op_block_list`` for ORT's ``convert_float_to_float16``.

        Extra op types are added to ORT's default block list (ops without fp16 kernels), never
        replace it; ``None`` keeps the default.
        """
        op_block = None
        if self.op_types:
            from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

            op_block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(self.op_types))
        return {"node_block_list": self.float_nodes(onnx_model), "op_block_list": op_block}

    def nncf_kwargs(self, ov_model: Any) -> dict[str, Any]:
        """``ignored_scope`` (and ``model_type``) for ``nncf.quantize`` on an OpenVINO model.

        ``model_type`` stays ``None``: with the attention core ignored there is nothing left for
        ``ModelType.TRANSFORMER`` to protect, and its SmoothQuant pass targets Linear layers that
        DANet does not have.
        """
        import nncf

        names = self.openvino_float_nodes(ov_model)
        kwargs: dict[str, Any] = {"model_type": None}
        if names:
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, validate=True)
        return kwargs

    def describe(self, selected: Iterable[str] | None = None) -> dict[str, Any]:
        """The manifest entry: preset, patterns and (if given) the nodes kept in float, by module."""
        info: dict[str, Any] = {
            "name": self.name,
            "keep_attention": self.keep_attention,
            "attention_precision": self.attention_precision,
            "patterns": list(self.patterns),
            "op_types": list(self.op_types),
        }
        if selected is not None:
            selected = list(selected)
            by_module: dict[str, int] = {}
            for name in selected:
                by_module[module_of(name)] = by_module.get(module_of(name), 0) + 1
            info.update(float_nodes=selected, float_nodes_by_module=by_module)
        return info


#: CPU flags (``danet_deploy.util.cpu.cpu_features``) that give OpenVINO's CPU plugin native bf16 kernels
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def check_attention_bf16(policy: PrecisionPolicy, target: str, precision: str, features: dict[str, Any]) -> None:
    """Refuse ``attention-bf16`` where it cannot mean what it says, naming the reason and the fix.

    Why so strict: OpenVINO's CPU plugin silently runs f32 when asked for bf16 on a CPU without
    AMX/AVX512-BF16, so an artifact would claim bf16 attention it never computes; ONNX Runtime's CPU
    provider has no bf16 attention kernel; TensorRT's precision comes from the engine's types.
    """
    if policy.attention_precision != "bf16":
        return
    if target != "openvino":
        raise ConfigError(
            f"--policy attention-bf16 runs the attention core in bf16 with OpenVINO's CPU plugin; "
            f"--target {target} has no bf16 attention path here (ONNX Runtime's CPU provider has no "
            "bf16 attention kernel): use --target openvino, or --policy attention-float"
        )
    if precision != "int8":
        raise ConfigError(
            f"--policy attention-bf16 chooses the precision of the float part of an INT8 model; with "
            f"--precision {precision} use --precision int8, or drop the policy"
        )
    if not any(features.get(flag) for flag in BF16_FLAGS):
        raise ConfigError(
            "--policy attention-bf16 needs a CPU with AMX-BF16 or AVX512-BF16 (this CPU has neither: "
            "OpenVINO would silently compute in f32); export on such a CPU, or use "
            "--policy attention-float"
        )
