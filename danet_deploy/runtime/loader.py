"""Open an artifact folder, a bare model file, or a reference preset as a :class:`Session`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ArtifactError, ConfigError
from ..manifest import MANIFEST_NAME, artifact_path, read_manifest
from .backends.base import backend_class
from .session import Session

# bare model files (no manifest) -> backend
_SUFFIX_BACKEND = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt",
                   ".pt": "torch", ".pth": "torch", ".safetensors": "torch"}


def load(path: str | Path, backend: str | None = None, verify: bool = True, **options: Any) -> Session:
    """Open ``path`` and return a ready :class:`Session`.

    Args:
        path: an artifact folder written by ``danet-export`` (its manifest picks the backend
            and is verified: format version and sha256 of every file), a bare ``.onnx`` /
            ``.xml`` / ``.engine`` file, or a reference preset name such as ``danet_demo``.
        backend: override the backend (e.g. run an ONNX artifact with ``openvino``).
        verify: check the manifest's file hashes (default) before loading.
        **options: backend options, e.g. ``threads=2``, ``providers=[...]``, ``device="CPU"``.
    """
    target = Path(path)
    if target.is_dir():
        manifest = read_manifest(target, verify=verify)
        model_file = artifact_path(target, manifest.primary, "model file")
        name = backend or manifest.backend
    elif target.is_file():
        name = backend or _SUFFIX_BACKEND.get(target.suffix.lower())
        if name is None:
            raise ArtifactError(f"cannot tell the backend of {target} from its suffix; pass backend=..., or load the "
                                f"artifact folder (with {MANIFEST_NAME})")
        manifest = None
        model_file = target
    else:
        from ..model.registry import list_models

        if str(path) in list_models():
            name = backend or "torch"
            if name != "torch":
                raise ConfigError(f"{path!r} is a reference preset: only the torch backend runs it; export it first")
            manifest = None
            model_file = None
        else:
            raise ArtifactError(f"{str(path)!r} is neither an artifact folder, a model file, nor a preset name; "
                                "export one with danet-export")
    cls = backend_class(name)
    instance = cls(model_file, manifest, preset=str(path) if model_file is None else None, **options)
    return Session(instance, manifest or instance.manifest)
