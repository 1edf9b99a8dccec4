"""Versions of Python, danet-deploy and the libraries that export or run models (for manifests and reports)."""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata

LIBRARIES = (
    "danet-deploy",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "openvino",
    "nncf",
    "nvidia-modelopt",
    "tensorrt",
)


def tool_versions(*names: str) -> dict[str, str]:
    """``{package: version}`` of the installed ones among :data:`LIBRARIES` and ``names`` (missing ones skipped)."""
    versions = {"python": platform.python_version()}
    for name in (*LIBRARIES, *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
