"""The built-in targets and runtime engines: the only module that names them.

A new target is one module with a ``build(ctx)`` function and one :func:`register_target` call
(here for built-ins, or in a plugin module for third-party targets); nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..planner import parse_bytes
from .options import TargetOptions, option
from .registry import Engine, Requirement, Target, TritonPlatform, register_engine, register_target

# every export starts from the PyTorch model: torch is in each target's requirements, and the
# extras named here are those of pyproject.toml (held to it by tests/test_packaging.py)
TORCH = Requirement("torch", "torch==2.13.0")
ONNX = Requirement("onnx", "onnx")
ONNXSLIM = Requirement("onnxslim", "onnxslim")
ONNXRUNTIME = Requirement("onnxruntime", "onnxruntime")
OPENVINO = Requirement("openvino", "openvino")
NNCF = Requirement("nncf", "nncf")


#: help of the ``attention`` option (ONNX and ONNX Runtime targets)
ATTENTION_HELP = (
    "position attention as ONNX Runtime's fused kernel (fused: com.microsoft.MultiHeadAttention; "
    "OpenVINO reads it as ScaledDotProductAttention) or the portable MatMul/Softmax/MatMul graph (unfused)"
)


@dataclass(frozen=True)
class OnnxOptions(TargetOptions):
    attention: str = option("fused", ATTENTION_HELP, choices=("fused", "unfused"))


@dataclass(frozen=True)
class OnnxRuntimeOptions(TargetOptions):
    attention: str = option("fused", ATTENTION_HELP, choices=("fused", "unfused"))
    int8_format: str | None = option(
        None,
        "INT8 activation/weight format; default: chosen from the CPU's features "
        "(u8s8 with VNNI/AMX, u8s8-reduced on AVX2, s8s8 on ARM)",
        choices=("u8s8", "u8s8-reduced", "s8s8"),
    )
    calib_percentile: float = option(99.999, "percentile kept by --calib-method percentile")


def _at_least_one(value: int) -> int:
    from ..errors import ConfigError

    if int(value) < 1:
        raise ConfigError(f"attention_heads must be >= 1 (1: no split), got {value}")
    return value


@dataclass(frozen=True)
class OpenVINOOptions(TargetOptions):
    attention: str = option(
        "fused",
        "position attention: fused (queries split into attention_heads groups, which "
        "the CPU plugin compiles into one MHA kernel; static shapes), sdpa (ONNX Runtime's "
        "MultiHeadAttention rewrite, read by OpenVINO as ScaledDotProductAttention) or unfused "
        "(three nodes)",
        choices=("fused", "sdpa", "unfused"),
    )
    attention_heads: int = option(
        2,
        "query groups of the fused attention: at least the inference thread count "
        "(the plugin fuses only with enough parallel work); key and value are tiled "
        "this many times",
        check=_at_least_one,
    )
    nncf_preset: str = option(
        "performance",
        "NNCF preset: symmetric (performance) or asymmetric (mixed) activations",
        choices=("performance", "mixed"),
    )
    model_type: str | None = option(
        None, "NNCF model type (transformer: attention-aware quantizer placement)", choices=("transformer",)
    )


#: tools that write the FP16 / Q/DQ INT8 ONNX a TensorRT engine is built from ("auto": ModelOpt if installed)
GRAPH_TOOLS = ("auto", "modelopt", "onnxruntime")


@dataclass(frozen=True)
class TensorRTOptions(TargetOptions):
    build: str = option(
        "auto",
        "build the engine now: auto (when TensorRT and a GPU are present), true, false",
        choices=("auto", "true", "false"),
    )
    device: int = option(0, "CUDA device that builds the engine")
    legacy_calibrator: bool = option(False, "TensorRT <= 10: implicit INT8 with the entropy calibrator, not Q/DQ")
    autocast_calibration: bool = option(
        True, "FP16: let AutoCast keep nodes whose reference output exceeds data_max in FP32 (uses calibration images)"
    )
    autocast_samples: int = option(4, "FP16: calibration images AutoCast runs")
    data_max: float = option(512.0, "FP16: largest magnitude AutoCast allows in an FP16 node")
    converter: str = option("auto", "FP16 converter", choices=GRAPH_TOOLS)
    quantizer: str = option("auto", "INT8 Q/DQ quantizer", choices=GRAPH_TOOLS)
    strongly_typed: bool | None = option(None, "strongly typed network (default: TensorRT >= 10 Q/DQ/FP16 graphs)")
    workspace: str | None = option(None, "builder workspace limit, e.g. 2GB", check=parse_bytes)
    dla_core: int | None = option(None, "build for this Jetson DLA core (FP16/INT8, static shapes)")
    timing_cache: str | None = option(None, "timing cache file, read and updated")
    hardware_compatible: bool = option(False, "Ampere+ hardware-compatible engine")
    attention: str = option(
        "unfused",
        "position attention: unfused, or mha-pattern (query/key zero-padded to the "
        "value's head size, the one-H layout NVIDIA documents for its attention fusion; "
        "exact, 8x the energy MatMul's arithmetic; whether it fuses is seen on a GPU)",
        choices=("unfused", "mha-pattern"),
    )


register_engine(
    Engine(
        "torch",
        "PyTorch eager",
        "danet_deploy.runtime.backends.torch:TorchBackend",
        suffixes=(".pt", ".pth", ".safetensors"),
        requires=(TORCH,),
        extra="export",
        reference=True,
        runs_presets=True,
        color="#333333",
    )
)
register_engine(
    Engine(
        "torch-compile",
        "PyTorch torch.compile (Inductor)",
        "danet_deploy.runtime.backends.torch_compile:TorchCompileBackend",
        requires=(TORCH,),
        extra="export",
        runs_presets=True,
        color="#8c564b",
    )
)
register_engine(
    Engine(
        "onnxruntime",
        "ONNX Runtime",
        "danet_deploy.runtime.backends.onnxruntime:OnnxRuntimeBackend",
        suffixes=(".onnx",),
        requires=(ONNXRUNTIME,),
        extra="onnxruntime",
        color="#1f77b4",
        triton=TritonPlatform(
            "platform",
            "onnxruntime_onnx",
            "model.onnx",
            threads_parameter="intra_op_thread_count",
            gpu_accelerator=True,
        ),
    )
)
register_engine(
    Engine(
        "openvino",
        "OpenVINO",
        "danet_deploy.runtime.backends.openvino:OpenVINOBackend",
        suffixes=(".xml",),
        requires=(OPENVINO,),
        extra="openvino",
        color="#9467bd",
        weights_suffix=".bin",
        triton=TritonPlatform(
            "backend",
            "openvino",
            "model.xml",
            instance_kind="cpu",
            threads_parameter="INFERENCE_NUM_THREADS",
            streams_parameter="NUM_STREAMS",
        ),
    )
)
register_engine(
    Engine(
        "tensorrt",
        "TensorRT",
        "danet_deploy.runtime.backends.tensorrt:TensorRTBackend",
        suffixes=(".engine", ".plan"),
        requires=(Requirement("tensorrt", "tensorrt"), Requirement("cuda", "cuda-python")),
        extra="tensorrt",
        needs_gpu=True,
        color="#2ca02c",
        triton=TritonPlatform("platform", "tensorrt_plan", "model.plan", instance_kind="gpu", needs_profile=True),
    )
)

SENSITIVITY_SEARCH = "sensitivity search (per-layer ranking, doubling + bisection)"
register_target(
    Target(
        "onnx",
        "the FP32 ONNX graph (torch.onnx.export, checked, simplified, self-describing metadata)",
        builder="danet_deploy.export.onnx_target:build",
        engine="onnxruntime",
        precisions=("fp32",),
        suffixes=(".onnx",),
        requires=(TORCH, ONNX, ONNXSLIM),
        extra="export",
        options=OnnxOptions,
    )
)
register_target(
    Target(
        "onnxruntime",
        "INT8 (static QDQ, CPU-tuned format) and FP16 ONNX graphs for ONNX Runtime",
        builder="danet_deploy.export.onnxruntime:build",
        engine="onnxruntime",
        precisions=("int8", "fp16"),
        suffixes=(".onnx",),
        requires=(TORCH, ONNX, ONNXSLIM, ONNXRUNTIME),
        extra="export",
        options=OnnxRuntimeOptions,
        calib_methods=("minmax", "entropy", "percentile"),
        budget_method=SENSITIVITY_SEARCH,
    )
)
register_target(
    Target(
        "openvino",
        "OpenVINO IR in FP32, FP16 weights or INT8 (NNCF)",
        builder="danet_deploy.export.openvino:build",
        engine="openvino",
        precisions=("fp32", "fp16", "int8"),
        suffixes=(".xml", ".bin"),
        requires=(TORCH, ONNX, ONNXSLIM, OPENVINO, NNCF),
        extra="export,openvino",
        options=OpenVINOOptions,
        calib_methods=("minmax", "percentile"),
        budget_method="nncf.quantize_with_accuracy_control",
    )
)
register_target(
    Target(
        "tensorrt",
        "TensorRT bundle (FP16 AutoCast / Q/DQ INT8 ONNX, verified on CPU); engine built on the GPU",
        builder="danet_deploy.export.tensorrt:build",
        engine="tensorrt",
        precisions=("fp32", "fp16", "int8"),
        suffixes=(".onnx", ".engine"),
        requires=(TORCH, ONNX, ONNXSLIM, ONNXRUNTIME),
        extra="export,tensorrt-prepare",
        options=TensorRTOptions,
        calib_methods=("minmax", "entropy"),
        element_limit=True,
        mask_dtype="int32",
        emits=("logits", "mask"),
        budget_method=SENSITIVITY_SEARCH,
        from_builder="danet_deploy.export.tensorrt:build_from_bundle",
    )
)
register_target(
    Target(
        "triton",
        "Triton Inference Server model repository for an existing artifact (--from ARTIFACT)",
        builder=None,
        engine="triton",
        precisions=("fp32", "fp16", "int8"),
        suffixes=(".pbtxt",),
        extra="serve",
        options="danet_deploy.serve.repository:TritonOptions",
        from_builder="danet_deploy.serve.repository:export_repository",
    )
)
