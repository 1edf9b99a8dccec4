"""Exporters: the reference model to ONNX, OpenVINO IR, ONNX Runtime INT8/FP16 and TensorRT.

Imports torch; the runtime never imports this package.
"""

from __future__ import annotations

from .pipeline import PRECISIONS, TARGETS, ExportContext, ExportRequest, TargetResult, export

__all__ = ["PRECISIONS", "TARGETS", "ExportContext", "ExportRequest", "TargetResult", "export"]
