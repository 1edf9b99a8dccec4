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

import json
from typing import Any

from ..errors import ConfigError, ExportError
from .pipeline import ExportContext, TargetResult
from .policy import PrecisionPolicy

MODEL_FILE = "model.xml"


def build(ctx: ExportContext) -> TargetResult:
    import openvino as ov

    request = ctx.request
    precision = request.precision
    onnx_path = ctx.fp32_onnx()
    ctx.log(f"converting {onnx_path.name} to OpenVINO IR ({precision})")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ExportError(f"openvino.convert_model failed: {str(exc).splitlines()[0]}") from exc
    model.set_rt_info(json.dumps(ctx.config.to_dict() | {"attention_chunks": ctx.plan.chunks}), ["danet", "model"])
    model.set_rt_info(json.dumps(ctx.config.preprocessing.to_dict()), ["danet", "preprocessing"])
    model.set_rt_info(precision, ["danet", "precision"])

    extra: dict[str, Any] = {"converted_from": "onnx", "cpu": _cpu_facts(ov)}
    calibration = None
    if precision == "int8":
        model, calibration, quant = _quantize(ctx, model)
        extra["quantization"] = quant
    elif precision not in ("fp32", "fp16"):
        raise ConfigError(f"--target openvino supports fp32, fp16 and int8, not {precision!r}")
    compress = precision == "fp16"
    extra["weights"] = "fp16" if compress else ("int8 (float parts fp32)" if precision == "int8" else "fp32")
    try:
        ov.save_model(model, str(ctx.workdir / MODEL_FILE), compress_to_fp16=compress)
    except Exception as exc:
        raise ExportError(f"openvino.save_model failed: {str(exc).splitlines()[0]}") from exc
    return TargetResult(primary=MODEL_FILE, backend="openvino", precision=precision, input=ctx.input_spec(),
                        extra=extra, calibration=calibration)


def _quantize(ctx: ExportContext, model: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """NNCF post-training quantization with the request's policy; returns (model, calib, facts)."""
    import nncf

    request = ctx.request
    policy = PrecisionPolicy.from_spec(request.policy)
    calib = ctx.calibration()
    kwargs = policy.nncf_kwargs(model)
    model_type = request.options.get("model_type")
    if model_type:
        if model_type != "transformer":
            raise ConfigError(f"model_type {model_type!r} is not known; use 'transformer' or leave it unset")
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    preset_name = str(request.options.get("nncf_preset", "performance")).lower()
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset_name not in presets:
        raise ConfigError(f"nncf_preset {preset_name!r} is not known; use 'performance' (symmetric activations) "
                          "or 'mixed' (asymmetric activations)")
    ignored = kwargs["ignored_scope"].names if "ignored_scope" in kwargs else []
    ctx.log(f"NNCF INT8: {len(calib)} calibration images, policy {policy.name}, {len(ignored)} node(s) kept in float")
    try:
        quantized = nncf.quantize(model, calib.nncf_dataset(batch=ctx.static_batch), subset_size=-(-len(calib) // ctx.static_batch), preset=presets[preset_name],
                                  fast_bias_correction=True, **kwargs)
    except Exception as exc:
        raise ExportError(f"nncf.quantize failed: {str(exc).splitlines()[0]}") from exc
    facts = {"tool": "nncf.quantize", "nncf": nncf.__version__, "preset": preset_name,
             "model_type": model_type or None, "subset_size": len(calib), "fast_bias_correction": True,
             "policy": policy.describe(ignored),
             "statistics_cache": "none: NNCF 3.4 caches statistics only for weight compression, not nncf.quantize"}
    return quantized, calib.describe(), facts


def _cpu_facts(ov: Any) -> dict[str, Any]:
    """What this CPU does with the IR: its flags and the plugin's default inference precision."""
    from .onnxruntime import cpu_features

    facts: dict[str, Any] = {"features": cpu_features()}
    try:
        core = ov.Core()
        facts["default_inference_precision"] = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        facts["optimization_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - facts for the manifest, never a reason to fail an export
        pass
    return facts
