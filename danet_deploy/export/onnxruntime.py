"""Target ``onnxruntime``: INT8 (static QDQ) and FP16 ONNX graphs for ONNX Runtime's CPU provider.

INT8: ``quant_pre_process`` (shape inference + ORT graph optimisation, run inside a temporary
folder because it leaves files in the working directory), then ``quantize_static`` in QDQ format
with per-channel weights, the shared calibration set, the precision policy's
``nodes_to_exclude``, and a calibration-range cache keyed by the calibration hash and every
setting that changes the ranges (a second export with the same set skips calibration).

Activation/weight formats follow the CPU (ONNX Runtime's own guidance, confirmed on an AVX2-only
EPYC where s8s8 was no faster than FP32 while u8s8 + ``reduce_range`` was ~1.5x faster):
    * x86 without VNNI: u8 activations, s8 weights, ``reduce_range=True`` (7-bit weights avoid
      the saturation of the AVX2 ``vpmaddubsw`` u8 x s8 pair sums);
    * x86 with AVX512-VNNI / AVX-VNNI / AMX: u8 activations, s8 weights, full range;
    * ARM: s8 activations, s8 weights.
The choice and its reason are written to the manifest; ``--option int8_format=...`` overrides it
(``u8s8``, ``u8s8-reduced``, ``s8s8``).

FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` (the same code as
onnxconverter-common, shipped inside onnxruntime) with float32 inputs/outputs and the policy's
nodes kept in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, ExportError, summarize_exception
from ..util.cpu import cpu_features
from ..util.files import atomic_output, sha256_file
from .fused_attention import apply_attention_form
from .metadata import stamp_onnx
from .ort_quant import convert_to_fp16, graph_input_name, pre_process, quantize_qdq
from .pipeline import ExportContext, TargetResult
from .policy import PrecisionPolicy

MODEL_FILE = "model.onnx"
INT8_FORMATS = ("u8s8", "u8s8-reduced", "s8s8")


def choose_int8_format(features: dict[str, Any], override: str | None = None) -> dict[str, Any]:
    """``{"format", "activation", "weight", "reduce_range", "reason"}`` for this CPU (or ``override``)."""
    formats = {
        "u8s8": ("QUInt8", "QInt8", False),
        "u8s8-reduced": ("QUInt8", "QInt8", True),
        "s8s8": ("QInt8", "QInt8", False),
    }
    if override:
        if override not in formats:
            raise ConfigError(f"int8_format {override!r} is not known; choose one of {', '.join(INT8_FORMATS)}")
        name, reason = override, "requested with --option int8_format"
    elif str(features.get("machine", "")).lower() in ("aarch64", "arm64"):
        name, reason = "s8s8", "ARM CPU: symmetric s8 activations suit ARM's int8 dot-product kernels"
    elif features.get("avx512_vnni") or features.get("avx_vnni") or features.get("amx_int8"):
        name, reason = "u8s8", "x86 CPU with VNNI/AMX: u8 x s8 accumulates without saturation, full 8-bit weights"
    else:
        name, reason = (
            "u8s8-reduced",
            (
                "x86 CPU without VNNI: u8 activations x 7-bit s8 weights avoid AVX2 "
                "saturation (s8s8 measured no faster than FP32 on AVX2)"
            ),
        )
    act, weight, reduce_range = formats[name]
    return {"format": name, "activation": act, "weight": weight, "reduce_range": reduce_range, "reason": reason}


def build(ctx: ExportContext) -> TargetResult:
    precision = ctx.request.precision
    if precision == "int8":
        return _build_int8(ctx)
    return _build_fp16(ctx)  # the registry admits int8 and fp16 only


def _build_int8(ctx: ExportContext) -> TargetResult:
    request, options = ctx.request, ctx.options
    method = request.int8_calib_method  # resolved by ExportRequest (the documented default unless given)
    features = cpu_features()
    fmt = choose_int8_format(features, options.int8_format)
    policy = PrecisionPolicy.from_spec(request.policy)
    source = ctx.fp32_onnx()
    prepared = ctx.scratch / "model_prepared.onnx"
    ctx.log("ONNX Runtime INT8: quant_pre_process (shape inference + optimisation)")
    pre_process(source, prepared, skip_symbolic_shape=request.exporter == "dynamo")
    excluded = policy.float_nodes(prepared)
    calib = ctx.calibration()
    extra_options: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra_options["CalibPercentile"] = float(options.calib_percentile)
    settings = {
        "model": sha256_file(prepared),
        "method": method,
        "format": fmt["format"],
        # the budget search quantizes several exclusion sets: its ranges must cover every tensor
        "excluded": excluded if request.budget is None else "every tensor (budget search)",
        "extra": extra_options,
    }
    cache = calib.statistics_path("ort-ranges", settings)
    hit = cache is not None and cache.is_file()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
    ctx.log(
        f"ONNX Runtime INT8: {fmt['format']} ({fmt['reason']}); {method} calibration on {len(calib)} images"
        f"{' (cached ranges)' if hit else ''}; policy {policy.name}: {len(excluded)} node(s) kept in float"
    )
    from .calib_memory import describe_plan, plan_calibration_memory

    memory = plan_calibration_memory(prepared, len(calib), request.input_size, ctx.static_batch, method)
    if not hit:
        ctx.log(describe_plan(memory))

    def quantize(float_nodes: list[str], output: Path) -> None:
        # the ranges do not depend on which nodes stay float: every search graph reuses the first one's
        quantize_qdq(
            prepared,
            output,
            calib.ort_reader(graph_input_name(prepared), batch=ctx.static_batch),
            method=method,
            activation=fmt["activation"],
            weight=fmt["weight"],
            per_channel=True,
            reduce_range=fmt["reduce_range"],
            nodes_to_exclude=float_nodes,
            extra_options=extra_options,
            cache=cache,
        )

    budget = None
    if request.budget is not None:
        from .budget import apply_onnx_budget

        output, budget = apply_onnx_budget(ctx, prepared, quantize, request.policy, excluded, MODEL_FILE)
    else:
        output = ctx.scratch / "model_int8.onnx"
        quantize(excluded, output)
    attention = _finish(output, ctx, "int8", ctx.workdir / MODEL_FILE)
    extra = {
        "attention": attention,
        "quantization": {
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "per_channel": True,
            "calib_method": method,
            **fmt,
            "extra_options": extra_options,
            "ranges_from_cache": hit,
            "policy": policy.describe(excluded),
            "calibration_memory": memory,
        },
        "cpu": features,
    }
    if budget is not None:
        extra["accuracy_budget"] = budget
        # what the artifact keeps in float is the budget's choice, not the --policy preset
        extra["quantization"]["policy"] = {
            "name": "accuracy budget",
            "spec": budget["reproduce_policy"],
            "float_nodes": [k["node"] for k in budget["layers_kept_float"]],
        }
    return TargetResult(
        primary=MODEL_FILE,
        backend=ctx.engine,
        precision="int8",
        input=ctx.input_spec(),
        extra=extra,
        calibration=calib.describe(),
    )


def _build_fp16(ctx: ExportContext) -> TargetResult:
    import onnx

    policy = PrecisionPolicy.from_spec(ctx.request.policy)
    source = ctx.fp32_onnx()
    model = onnx.load(str(source))
    kwargs = policy.ort_fp16_kwargs(model)
    ctx.log(f"ONNX Runtime FP16: policy {policy.name}, {len(kwargs['node_block_list'])} node(s) kept in float32")

    converted, removed = convert_to_fp16(model, **kwargs)
    output = ctx.scratch / "model_fp16.onnx"
    onnx.save(converted, str(output))
    attention = _finish(output, ctx, "fp16", ctx.workdir / MODEL_FILE)
    extra = {
        "attention": attention,
        "conversion": {
            "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
            "keep_io_types": True,
            "float_roundtrips_removed": removed,
            "policy": policy.describe(kwargs["node_block_list"]),
        },
        "cpu": cpu_features(),
    }
    return TargetResult(primary=MODEL_FILE, backend=ctx.engine, precision="fp16", input=ctx.input_spec(), extra=extra)


def _finish(path: Path, ctx: ExportContext, precision: str, final: Path) -> dict[str, Any]:
    """Fuse the float attention (``--option attention``), check the graph, stamp danet metadata (so a
    bare .onnx describes itself) and write it atomically; returns the fusion report.

    Why after quantization: the policy keeps the attention chain in float, so the quantizer sees the
    plain MatMul/Softmax/MatMul it knows how to exclude; the fused node then takes float inputs.
    A chain the FP16 converter turned to float16 is not fused (the CPU kernel is float32)."""
    import onnx

    model = onnx.load(str(path))
    report = apply_attention_form(model, ctx.options.attention)
    if report.fused_nodes:
        ctx.log(f"position attention as {len(report.fused_nodes)} fused MultiHeadAttention node(s) (float32)")
    stamp_onnx(model, ctx.graph_config, precision)
    model = ctx.accept_graph(model)  # --accept: after quantization/conversion, so the core is the float-input one's
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ExportError(f"the {precision} ONNX failed onnx.checker: {summarize_exception(exc)}") from exc
    with atomic_output(final) as tmp:
        onnx.save(model, str(tmp))
    return report.to_dict()
