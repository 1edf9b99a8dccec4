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
The choice and its reason are written to the manifest; ``options["int8_format"]`` overrides it
(``u8s8``, ``u8s8-reduced``, ``s8s8``).

FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` (the same code as
onnxconverter-common, shipped inside onnxruntime) with float32 inputs/outputs and the policy's
nodes kept in float32.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Any

from ..cpu import read_cpuinfo
from ..errors import ConfigError, ExportError
from ..files import atomic_output, sha256_file, working_directory
from .pipeline import ExportContext, TargetResult
from .policy import PrecisionPolicy

MODEL_FILE = "model.onnx"
CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_FORMATS = ("u8s8", "u8s8-reduced", "s8s8")


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU facts that decide INT8 formats: architecture and the dot-product extensions."""
    _, flags = read_cpuinfo(cpuinfo)
    return {"machine": platform.machine(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags,
            "amx_int8": "amx_int8" in flags, "asimddp": "asimddp" in flags}


def choose_int8_format(features: dict[str, Any], override: str | None = None) -> dict[str, Any]:
    """``{"format", "activation", "weight", "reduce_range", "reason"}`` for this CPU (or ``override``)."""
    formats = {"u8s8": ("QUInt8", "QInt8", False), "u8s8-reduced": ("QUInt8", "QInt8", True),
               "s8s8": ("QInt8", "QInt8", False)}
    if override:
        if override not in formats:
            raise ConfigError(f"int8_format {override!r} is not known; choose one of {', '.join(INT8_FORMATS)}")
        name, reason = override, "requested with options['int8_format']"
    elif str(features.get("machine", "")).lower() in ("aarch64", "arm64"):
        name, reason = "s8s8", "ARM CPU: symmetric s8 activations suit ARM's int8 dot-product kernels"
    elif features.get("avx512_vnni") or features.get("avx_vnni") or features.get("amx_int8"):
        name, reason = "u8s8", "x86 CPU with VNNI/AMX: u8 x s8 accumulates without saturation, full 8-bit weights"
    else:
        name, reason = "u8s8-reduced", ("x86 CPU without VNNI: u8 activations x 7-bit s8 weights avoid AVX2 "
                                        "saturation (s8s8 measured no faster than FP32 on AVX2)")
    act, weight, reduce_range = formats[name]
    return {"format": name, "activation": act, "weight": weight, "reduce_range": reduce_range, "reason": reason}


def build(ctx: ExportContext) -> TargetResult:
    precision = ctx.request.precision
    if precision == "int8":
        return _build_int8(ctx)
    if precision == "fp16":
        return _build_fp16(ctx)
    raise ConfigError("--target onnxruntime writes int8 or fp16 graphs; for fp32 use --target onnx")


def _build_int8(ctx: ExportContext) -> TargetResult:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    request = ctx.request
    method = str(request.options.get("calib_method") or "minmax").lower()
    method = {"max": "minmax"}.get(method, method)  # ModelOpt/TensorRT spelling of the same method
    if method not in CALIB_METHODS:
        raise ConfigError(f"calib_method {method!r} is not known; choose one of {', '.join(CALIB_METHODS)}")
    features = cpu_features()
    fmt = choose_int8_format(features, request.options.get("int8_format"))
    policy = PrecisionPolicy.from_spec(request.policy)
    source = ctx.fp32_onnx()
    prepared = ctx.scratch / "model_prepared.onnx"
    ctx.log("ONNX Runtime INT8: quant_pre_process (shape inference + optimisation)")
    with tempfile.TemporaryDirectory(prefix="ort-prep-") as tmp, working_directory(tmp):
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=request.exporter == "dynamo")
        except Exception as exc:
            raise ExportError(f"onnxruntime quant_pre_process failed: {str(exc).splitlines()[0]}") from exc
    excluded = policy.float_nodes(prepared)
    calib = ctx.calibration()
    extra_options: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra_options["CalibPercentile"] = float(request.options.get("calib_percentile", 99.999))
    settings = {"model": sha256_file(prepared), "method": method, "format": fmt["format"],
                "excluded": excluded, "extra": extra_options}
    cache = calib.statistics_path("ort-ranges", settings)
    hit = cache is not None and cache.is_file()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
    ctx.log(f"ONNX Runtime INT8: {fmt['format']} ({fmt['reason']}); {method} calibration on {len(calib)} images"
            f"{' (cached ranges)' if hit else ''}; policy {policy.name}: {len(excluded)} node(s) kept in float")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    output = ctx.scratch / "model_int8.onnx"
    with tempfile.TemporaryDirectory(prefix="ort-quant-") as tmp, working_directory(tmp):
        try:
            quantize_static(str(prepared), str(output), calib.ort_reader(_input_name(prepared), batch=ctx.static_batch),
                            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=fmt["reduce_range"],
                            activation_type=getattr(QuantType, fmt["activation"]),
                            weight_type=getattr(QuantType, fmt["weight"]), nodes_to_exclude=excluded or None,
                            calibrate_method=methods[method], extra_options=extra_options,
                            calibration_cache_path=str(cache) if cache is not None else None)
        except Exception as exc:
            raise ExportError(f"onnxruntime quantize_static failed: {str(exc).splitlines()[0]}") from exc
    _finish(output, ctx, "int8", ctx.workdir / MODEL_FILE)
    extra = {"quantization": {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                              "per_channel": True, "calib_method": method, **fmt, "extra_options": extra_options,
                              "ranges_from_cache": hit, "policy": policy.describe(excluded)},
             "cpu": features}
    return TargetResult(primary=MODEL_FILE, backend="onnxruntime", precision="int8", input=ctx.input_spec(),
                        extra=extra, calibration=calib.describe())


def convert_to_fp16(model: Any, **kwargs: Any) -> tuple[Any, int]:
    """FP16 graph with float32 I/O, the ``node_block_list`` kept in FP32 with no FP16 hops between them.

    Shared by the ONNX Runtime FP16 target and the TensorRT FP16 fallback. Returns (model, number
    of FP16 round-trips removed).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        converted = convert_float_to_float16(model, keep_io_types=True, **kwargs)
    except Exception as exc:
        raise ExportError(f"float16 conversion failed: {str(exc).splitlines()[0]}") from exc
    removed = drop_float_roundtrips(converted)
    wrapper = OnnxModel(converted)  # keep_io_types appends the input Casts last: restore topological order
    wrapper.topological_sort(is_deterministic=True)
    return wrapper.model, removed


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
    _finish(output, ctx, "fp16", ctx.workdir / MODEL_FILE)
    extra = {"conversion": {"tool": "onnxruntime.transformers.float16.convert_float_to_float16",
                            "keep_io_types": True, "float_roundtrips_removed": removed,
                            "policy": policy.describe(kwargs["node_block_list"])},
             "cpu": cpu_features()}
    return TargetResult(primary=MODEL_FILE, backend="onnxruntime", precision="fp16", input=ctx.input_spec(), extra=extra)


def drop_float_roundtrips(model: Any) -> int:
    """Remove ``fp32 -> Cast(fp16) -> Cast(fp32)`` pairs between two nodes kept in float32.

    ``convert_float_to_float16`` casts every blocked node's output back to fp16, even when the
    next node is blocked too, so a float32 chain (CAM: MatMul -> ReduceMax -> Sub -> Softmax) still
    round-trips through fp16 and its energy overflows to inf at larger inputs (NaN logits at 128x128
    on a test model). Consumers of the second Cast read the float32 tensor directly instead.
    """
    import onnx

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}

    def cast_to(node: Any) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    rename: dict[str, str] = {}
    dead = []
    for node in graph.node:
        if cast_to(node) != onnx.TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or cast_to(first) != onnx.TensorProto.FLOAT16 or node.output[0] in outputs:
            continue
        rename[node.output[0]] = first.input[0]
        dead.append(node)
    for node in dead:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {name for node in graph.node for name in node.input} | outputs
    for node in [n for n in graph.node if cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in used]:
        graph.node.remove(node)
    return len(dead)


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers)


def _finish(path: Path, ctx: ExportContext, precision: str, final: Path) -> None:
    """Check the graph, stamp danet metadata (so a bare .onnx describes itself) and write it atomically."""
    import onnx

    from .onnx import model_metadata

    model = onnx.load(str(path))
    meta = model_metadata(ctx.config.to_dict() | {"attention_chunks": ctx.plan.chunks}, precision)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ExportError(f"the {precision} ONNX failed onnx.checker: {str(exc).splitlines()[0]}") from exc
    with atomic_output(final) as tmp:
        onnx.save(model, str(tmp))

