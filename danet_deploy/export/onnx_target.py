"""Target ``onnx``: the FP32 ONNX graph itself, runnable by ONNX Runtime (any provider) or OpenVINO."""

from __future__ import annotations

import shutil

from .pipeline import ExportContext, TargetResult

MODEL_FILE = "model.onnx"


def build(ctx: ExportContext) -> TargetResult:
    shutil.copyfile(ctx.fp32_onnx(), ctx.workdir / MODEL_FILE)
    ctx.accept_onnx(ctx.workdir / MODEL_FILE)  # --accept rgb8|bgr8: uint8 image input in front
    return TargetResult(primary=MODEL_FILE, backend=ctx.engine, precision="fp32", input=ctx.input_spec())
