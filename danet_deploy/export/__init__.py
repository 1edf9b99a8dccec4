"""Exporters: the reference model to ONNX, OpenVINO IR, ONNX Runtime INT8/FP16 and TensorRT.

Imports torch; the runtime never imports this package. Which targets exist, and what each
accepts, is declared in :mod:`danet_deploy.targets`.
"""

from __future__ import annotations

from .command import ExportOutcome, export_and_verify, export_from
from .pipeline import ExportContext, ExportRequest, TargetResult, export

__all__ = [
    "ExportContext",
    "ExportOutcome",
    "ExportRequest",
    "TargetResult",
    "export",
    "export_and_verify",
    "export_from",
]
