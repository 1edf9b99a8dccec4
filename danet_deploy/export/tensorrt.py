"""Target ``tensorrt``: prepare a TensorRT bundle anywhere, build the engine on the device.

Deployment on a Jetson works in two steps, and so does this target:

1. Prepare (any machine, no GPU): ``danet-export --target tensorrt --precision fp16|int8`` writes
   a bundle: the TensorRT-ready ONNX (mixed FP16 or calibrated Q/DQ INT8, the precision policy
   applied), the optimisation profile, the attention plan and the calibration hash. Its
   manifest says backend ``onnxruntime`` with ``extra["tensorrt"]["stage"] == "prepared"``, so
   ``danet_deploy.runtime.load(bundle)`` and ``danet-parity`` verify the exact graph TensorRT will
   get, on the CPU, before it is shipped.
2. Build (TensorRT + NVIDIA GPU): ``danet-export --target tensorrt --from BUNDLE_DIR`` (see
   :func:`build_engine_from_bundle`), or the prepare command itself with ``--option build=true``
   (default ``auto``: build when TensorRT and a GPU are present). The engine manifest says
   backend ``tensorrt`` and records TensorRT version, GPU and compute capability.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError
from ..targets.builtin import TensorRTOptions
from ..tensorrt.compat import (
    STAGE_PREPARED,
    check_attention_limit,
    check_dla_request,
    describe_profile,
    profile_from_input_spec,
)
from .pipeline import ExportContext, TargetResult
from .tensorrt_build import (
    ENGINE_FILE,
    LEGACY_CALIBRATION,
    LEGACY_ONNX,
    _print,
    build_engine,
    build_engine_from_bundle,
    calibration_batches,
    require_tensorrt,
)
from .tensorrt_prepare import prepare_fp16, prepare_int8, stamp_bundle_onnx

__all__ = ["MODEL_FILE", "build", "build_engine_from_bundle", "build_from_bundle"]

MODEL_FILE = "model.onnx"


def _build_mode(options: TensorRTOptions) -> bool:
    """Whether to build the engine now: ``build=true`` requires TensorRT + GPU, ``auto`` uses them if present."""
    if options.build == "auto":
        try:
            require_tensorrt(options.device)
        except BackendUnavailableError:
            return False
        return True
    if options.build == "true":
        require_tensorrt(options.device)  # fail fast, before the slow preparation
        return True
    return False


def build_from_bundle(
    source: str | Path,
    output: str | Path | None,
    options: TensorRTOptions,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``danet-export --target tensorrt --from BUNDLE_DIR``: the engine from a prepared bundle.

    An existing engine folder written by danet-export is replaced either way; ``force`` (``--force``)
    also replaces another folder at ``output``, as for every export."""
    return build_engine_from_bundle(source, output, options, force=force, log=log if log is not None else _print)


def _prepare_int8(
    ctx: ExportContext, src: Path, dst: Path, tensors: np.ndarray, float_nodes: list[str]
) -> dict[str, Any]:
    """The Q/DQ INT8 ONNX: the policy's float nodes, or the accuracy budget's search on top of them."""
    r = ctx.request

    facts: dict[str, Any] = {}

    def quantize(nodes: list[str], out: Path) -> None:
        facts.update(
            prepare_int8(
                src,
                out,
                tensors,
                nodes,
                method=r.int8_calib_method,
                quantizer=ctx.options.quantizer,
                scratch=ctx.scratch,
                log=ctx.log,
            )
        )

    if r.budget is None:
        quantize(float_nodes, dst)
        return facts
    from .budget import apply_onnx_budget

    chosen, budget = apply_onnx_budget(ctx, src, quantize, r.policy, float_nodes, MODEL_FILE)
    shutil.copyfile(chosen, dst)
    # the bundle's float nodes are the budget's choice, not the --policy preset's (overrides info["policy"])
    policy = {
        "name": "accuracy budget",
        "spec": budget["reproduce_policy"],
        "float_nodes": [k["node"] for k in budget["layers_kept_float"]],
    }
    return {**facts, "accuracy_budget": budget, "policy": policy}


def build(ctx: ExportContext) -> TargetResult:
    from .policy import PrecisionPolicy

    r = ctx.request
    options: TensorRTOptions = ctx.options  # parsed by the registry: TensorRTOptions
    precision = r.precision
    spec = ctx.input_spec(bounded=True)  # the engine's input: float NCHW, or --accept's uint8 NHWC image
    profile = profile_from_input_spec(spec)
    attention: dict[str, Any] = {
        "chunks": ctx.plan.chunks,
        "output_stride": int(ctx.config.output_stride),
        "feature_channels": int(ctx.model.backbone.out_channels // 4),
    }
    check_attention_limit(
        profile_from_input_spec(ctx.float_input_spec(bounded=True))["max"],
        attention["chunks"],
        attention["output_stride"],
        attention["feature_channels"],
    )
    check_dla_request(options.dla_core, precision, profile, hardware_compatible=options.hardware_compatible)
    build_now = _build_mode(options)
    legacy = options.legacy_calibrator
    if legacy and precision != "int8":
        raise ConfigError("--legacy-calibrator applies to --precision int8 only")
    ctx.log(f"TensorRT profile: {describe_profile(profile)}")

    src = ctx.fp32_onnx()
    if options.attention == "mha-pattern":  # NVIDIA's fused attention takes one head size for Q, K and V
        from .fused_attention import fuse_file

        padded = ctx.scratch / "model_fp32_trt_attention.onnx"
        report = fuse_file(src, padded, "tensorrt")
        attention.update(form="mha-pattern", padded_chains=report.fused_nodes, skipped=report.skipped)
        ctx.log(
            f"position attention in TensorRT's fused-attention layout ({len(report.fused_nodes)} chain(s), "
            "query/key zero-padded to the value's head size)"
        )
        src = padded
    dst = ctx.workdir / MODEL_FILE
    policy = PrecisionPolicy.from_spec(r.policy)
    float_nodes = policy.float_nodes(src) if precision != "fp32" else []
    facts: dict[str, Any] = {}
    calibration = None
    calib_hash = None
    if precision == "fp32":
        shutil.copyfile(src, dst)
    elif precision == "fp16":
        samples = None
        if options.autocast_calibration:
            samples = ctx.calibration().tensors[: options.autocast_samples]
        facts = prepare_fp16(
            src,
            dst,
            float_nodes,
            calibration=samples,
            data_max=options.data_max,
            converter=options.converter,
            scratch=ctx.scratch,
            log=ctx.log,
        )
    else:
        calib = ctx.calibration()
        tensors = np.ascontiguousarray(calib.tensors, dtype=np.float32)
        if legacy:  # TensorRT reads whole batches of the profile's opt shape: refuse before the slow work
            calibration_batches(tensors, profile["opt"])
        facts = _prepare_int8(ctx, src, dst, tensors, float_nodes)
        calibration, calib_hash = calib.describe(), calib.hash
        if legacy:  # TensorRT <= 10 implicit calibration needs the FP32 graph and the tensors on the device
            shutil.copyfile(src, ctx.workdir / LEGACY_ONNX)
            np.save(ctx.workdir / LEGACY_CALIBRATION, tensors, allow_pickle=False)
    opset = stamp_bundle_onnx(dst, ctx.graph_config, precision) if precision != "fp32" else ctx.onnx_info.get("opset")
    ctx.accept_onnx(dst, cast_first=True)  # --accept: after FP16/Q/DQ; TensorRT casts its uint8 input first
    info: dict[str, Any] = {
        "stage": STAGE_PREPARED,
        "precision": precision,
        "onnx": MODEL_FILE,
        "opset": opset,
        "profiles": [{"input": spec["name"], **profile}],
        "attention": attention,
        "strongly_typed": True,
        "calibration_hash": calib_hash,
        "legacy_calibrator": legacy,
        "policy": policy.describe(float_nodes) if precision != "fp32" else None,
        **facts,
        "build": "danet-export --target tensorrt --from BUNDLE_DIR --output ENGINE_DIR (on the device)",
    }
    if not build_now:
        ctx.log(
            "prepared the TensorRT bundle (verify it here with danet-parity; build the engine on the device "
            "with danet-export --target tensorrt --from BUNDLE_DIR)"
        )
        return TargetResult(
            primary=MODEL_FILE,
            backend="onnxruntime",
            precision=precision,
            input=spec,
            extra={"tensorrt": info},
            calibration=calibration,
        )
    engine = build_engine(
        dst if not legacy else ctx.workdir / LEGACY_ONNX,
        ctx.workdir / ENGINE_FILE,
        profile,
        precision,
        options,
        input_name=spec["name"],
        calibrator_tensors=np.load(ctx.workdir / LEGACY_CALIBRATION) if legacy else None,
        calibration_cache=ctx.scratch / "calibration.cache" if legacy else None,
        log=ctx.log,
    )
    engine.update(
        calibration_hash=calib_hash,
        attention=attention,
        policy=info["policy"],
        bundle={"onnx": MODEL_FILE, "prepared": {k: v for k, v in info.items() if k != "build"}},
    )
    return TargetResult(
        primary=ENGINE_FILE,
        backend="tensorrt",
        precision=precision,
        input=spec,
        extra={"tensorrt": engine},
        calibration=calibration,
    )
