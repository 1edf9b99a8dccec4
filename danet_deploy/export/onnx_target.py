"""Target ``onnx``: the FP32 ONNX graph itself, runnable by ONNX Runtime (any provider) or OpenVINO.

``--option attention=fused`` (the default) writes position attention as
``com.microsoft.MultiHeadAttention`` (ONNX Runtime's fused CPU kernel; OpenVINO reads it as
``ScaledDotProductAttention``); ``attention=unfused`` keeps the portable MatMul/Softmax/MatMul graph
for runtimes without Microsoft's contrib operators.
"""

from __future__ import annotations

from .fused_attention import fuse_file
from .pipeline import ExportContext, TargetResult

MODEL_FILE = "model.onnx"


def build(ctx: ExportContext) -> TargetResult:
    form = ctx.options.attention
    report = fuse_file(ctx.fp32_onnx(), ctx.workdir / MODEL_FILE, form)
    if report.fused_nodes:
        ctx.log(f"position attention as {len(report.fused_nodes)} fused MultiHeadAttention node(s)")
    ctx.accept_onnx(ctx.workdir / MODEL_FILE)  # --accept rgb8|bgr8: uint8 image input in front
    return TargetResult(
        primary=MODEL_FILE,
        backend=ctx.engine,
        precision="fp32",
        input=ctx.input_spec(),
        extra={"attention": report.to_dict()},
    )
