"""Target ``openvino``: OpenVINO IR (``model.xml`` + ``model.bin``) in FP32, FP16 weights or INT8 (NNCF).

Converted from the pipeline's FP32 ONNX, not from the torch module: measured on ``danet_demo`` at
256x256 (2 threads), ONNX export + ``convert_model`` took 2.9 s against 8.4 s for
``convert_model(torch_module)``, both IRs ran at the same speed (64 vs 68 ms) and matched torch
equally, and the ONNX route keeps the ONNX node names (``/head/sa/MatMul`` ...), so one
:class:`~danet_deploy.export.policy.PrecisionPolicy` names the same operations for NNCF, ONNX Runtime
and TensorRT.

Precisions:
    ``fp32``: ``save_model(compress_to_fp16=False)`` (the default would silently halve the weights).
    ``fp16``: FP16 *weights* (``compress_to_fp16=True``); the CPU plugin decompresses them and
        computes in f32 (the runtime backend asks for f32; the plugin's own default, recorded in the
        manifest's ``extra``, is f32 on AVX2-only CPUs and bf16 on CPUs with AMX).
    ``int8``: ``nncf.quantize`` over the shared calibration set (``subset_size`` = its size) with the
        precision policy's ``ignored_scope``; FP32 weights for the float parts.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExportError, summarize_exception
from ..util.cpu import cpu_features
from .metadata import stamp_openvino
from .pipeline import ExportContext, TargetResult
from .policy import PrecisionPolicy

MODEL_FILE = "model.xml"
#: manifest ``extra`` entry with the compile properties the runtime backend applies to this IR
RUNTIME_KEY = "openvino_runtime"


def _attention_onnx(ctx: ExportContext) -> tuple[Any, dict[str, Any]]:
    """The ONNX the IR is converted from: PAM split into query heads (``attention=fused``), as
    ``MultiHeadAttention`` (``attention=sdpa``, opt-in) or plain.

    ``sdpa`` gives OpenVINO the rewrite ONNX Runtime gets; its frontend reads it as
    ``ScaledDotProductAttention``. An earlier measurement saw the CPU plugin decompose that back into
    MatMul/Softmax/MatMul for PAM's head sizes; with OpenVINO 2026.4.1 here it compiles into one
    ``Subgraph`` per chunk, in dynamic exports too (where the query-heads split is skipped), and the
    INT8 ``attention-bf16`` model ran at 0.955-0.999x (median 0.966x) of the query-heads form and the
    FP32 model at 0.93-0.94x (danet_demo 512x512, shared machine). ``fused`` stays the default until
    a quiet run confirms it (the precision policies treat both forms alike: both end as one
    ``ScaledDotProductAttention`` op in the IR).
    """
    from .fused_attention import fuse_file

    form = ctx.options.attention
    source = ctx.fp32_onnx()
    if form == "unfused":
        return source, {"form": "unfused", "fused": 0}
    if form == "sdpa":  # opt-in: within the noise of the query-heads form here, and needs no static N
        fused = ctx.scratch / "model_fp32_attention_sdpa.onnx"
        report = fuse_file(source, fused, "fused")
        ctx.log(
            f"position attention as MultiHeadAttention for OpenVINO's ScaledDotProductAttention "
            f"({len(report.fused_nodes)} chain(s); {'; '.join(report.skipped) or 'none skipped'})"
        )
        return fused, {**report.to_dict(), "form": "openvino-sdpa"}
    fused = ctx.scratch / "model_fp32_attention_heads.onnx"
    report = fuse_file(source, fused, f"heads:{ctx.options.attention_heads}")
    ctx.log(
        f"position attention split into {ctx.options.attention_heads} query heads for the CPU plugin's MHA "
        f"kernel ({len(report.fused_nodes)} chain(s); {'; '.join(report.skipped) or 'none skipped'})"
    )
    return fused, report.to_dict()


def runtime_properties(
    policy: PrecisionPolicy, precision: str, budget_choice: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Compile properties an artifact needs to run as exported (recorded in its manifest).

    ``inference_precision``: ``bf16`` for the ``attention-bf16`` policy (the float parts of the
    INT8 model, i.e. the attention core, in bf16 on AMX/AVX512-BF16 CPUs), or when an accuracy
    budget measured bf16 within the budget and faster (``budget_choice``). The global
    ``SNIPPETS_MODE=IGNORE_CALLBACK`` also fuses PAM but was rejected: on an INT8 IR it retokenized
    the convolutions' quantization too (4 -> 34 Subgraphs, 9 -> 70 Reorders, 98% argmax agreement
    with the default mode on a 64x64 random input), and an IR holding ``ScaledDotProductAttention``
    failed to compile with it ("LinearIR is empty").
    """
    out: dict[str, Any] = {}
    if budget_choice is not None:  # an accuracy budget measured bf16 and decided (budget_openvino)
        if budget_choice.get("chosen"):
            out["inference_precision"] = "bf16"
    elif policy.attention_precision == "bf16" and precision == "int8":
        out["inference_precision"] = "bf16"
    return out


def build(ctx: ExportContext) -> TargetResult:
    import openvino as ov

    request = ctx.request
    precision = request.precision
    onnx_path, attention = _attention_onnx(ctx)
    ctx.log(f"converting {onnx_path.name} to OpenVINO IR ({precision})")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ExportError(f"openvino.convert_model failed: {summarize_exception(exc)}") from exc
    stamp_openvino(model, ctx.graph_config, precision)

    extra: dict[str, Any] = {"converted_from": "onnx", "cpu": _cpu_facts(ov), "attention": attention}
    calibration = None
    if precision == "int8":
        model, calibration, quant = _quantize(ctx, model)
        extra["quantization"] = quant
    runtime = runtime_properties(
        PrecisionPolicy.from_spec(request.policy),
        precision,
        (extra.get("quantization", {}).get("accuracy_budget") or {}).get("attention_bf16"),
    )
    if runtime:
        extra[RUNTIME_KEY] = runtime
    compress = precision == "fp16"
    if compress and ctx.request.accept != "float":  # FP16 weights for the network only, not the wrapper's constants
        from .accept import compress_weights

        model, compress = compress_weights(model, ctx.scratch), False
    model = ctx.accept_graph(model)  # --accept: after NNCF, so the quantized core is the float-input one's
    extra["weights"] = "fp16" if compress else ("int8 (float parts fp32)" if precision == "int8" else "fp32")
    try:
        ov.save_model(model, str(ctx.workdir / MODEL_FILE), compress_to_fp16=compress)
    except Exception as exc:
        raise ExportError(f"openvino.save_model failed: {summarize_exception(exc)}") from exc
    return TargetResult(
        primary=MODEL_FILE,
        backend=ctx.engine,
        precision=precision,
        input=ctx.input_spec(),
        extra=extra,
        calibration=calibration,
    )


def _quantize(ctx: ExportContext, model: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """NNCF post-training quantization with the request's policy; returns (model, calib, facts)."""
    import nncf

    request = ctx.request
    policy = PrecisionPolicy.from_spec(request.policy)
    calib = ctx.calibration()
    kwargs = policy.nncf_kwargs(model)
    model_type = ctx.options.model_type
    if model_type:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    preset_name = ctx.options.nncf_preset
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    method = request.int8_calib_method  # resolved by ExportRequest (the documented default unless given)
    kwargs["advanced_parameters"] = _range_estimators(nncf, method)
    ignored = kwargs["ignored_scope"].names if "ignored_scope" in kwargs else []
    from .calib_memory import describe_plan, plan_calibration_memory

    memory = plan_calibration_memory(
        ctx.fp32_onnx(), len(calib), request.input_size, ctx.static_batch, method, tool="nncf"
    )
    ctx.log(describe_plan(memory))
    ctx.log(
        f"NNCF INT8: {len(calib)} calibration images ({method} ranges), policy {policy.name}, "
        f"{len(ignored)} node(s) kept in float"
    )
    budget = None
    if request.budget is not None:
        from .budget_openvino import quantize_with_budget

        ac_kwargs = {k: v for k, v in kwargs.items() if k != "advanced_parameters"}
        quantized, budget = quantize_with_budget(
            ctx,
            model,
            calib.nncf_dataset(batch=ctx.static_batch),
            {
                **ac_kwargs,
                "subset_size": -(-len(calib) // ctx.static_batch),
                "preset": presets[preset_name],
                "fast_bias_correction": True,
                "advanced_quantization_parameters": kwargs["advanced_parameters"],
            },
            ignored,
        )
    else:
        try:
            quantized = nncf.quantize(
                model,
                calib.nncf_dataset(batch=ctx.static_batch),
                subset_size=-(-len(calib) // ctx.static_batch),
                preset=presets[preset_name],
                fast_bias_correction=True,
                **kwargs,
            )
        except Exception as exc:
            raise ExportError(f"nncf.quantize failed: {summarize_exception(exc)}") from exc
    facts = {
        "tool": "nncf.quantize",
        "nncf": nncf.__version__,
        "preset": preset_name,
        "model_type": model_type or None,
        "calib_method": method,
        "subset_size": len(calib),
        "fast_bias_correction": True,
        "policy": policy.describe(ignored),
        "calibration_memory": memory,
        "statistics_cache": "none: NNCF 3.4 caches statistics only for weight compression, not nncf.quantize",
    }
    if budget is not None:
        facts["tool"] = "nncf.quantize_with_accuracy_control"
        facts["accuracy_budget"] = budget
    return quantized, calib.describe(), facts


def _range_estimators(nncf: Any, method: str) -> Any:
    """NNCF's activation range estimator for a ``--calib-method`` (min/max or percentile ranges)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    sets = {"minmax": RangeEstimatorParametersSet.MINMAX, "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE}
    return AdvancedQuantizationParameters(activations_range_estimator_params=sets[method])


def _cpu_facts(ov: Any) -> dict[str, Any]:
    """What this CPU does with the IR: its flags and the plugin's default inference precision."""
    facts: dict[str, Any] = {"features": cpu_features()}
    try:
        core = ov.Core()
        facts["default_inference_precision"] = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        facts["optimization_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        pass
    return facts
