"""Open an artifact folder, a bare model file, or a reference preset as a :class:`Session`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..engine_reads import referenced_files
from ..errors import ArtifactError, ConfigError
from ..manifest import (
    MANIFEST_NAME,
    artifact_path,
    missing_artifact_message,
    read_manifest,
)
from ..targets import (
    engine_for_suffix,
    engine_names,
    engines,
    get_engine,
    get_target,
    reference_engine,
    target_names,
)
from ..util.files import not_a_file_reason
from .backends.base import backend_class
from .session import Session


def _refuse_reference_backend_in_manifest(name: str, manifest: Any, folder: Path) -> None:
    """No export writes a manifest whose backend builds the PyTorch model itself (``torch``,
    ``torch-compile``): such a backend would ignore the artifact's model file and run the
    reference in its place, a silent substitution the user never asked for. Asked for explicitly
    (``backend="torch"``), it runs the artifact's source model on purpose, as parity does."""
    if name not in engine_names() or not get_engine(name).runs_presets:
        return
    own = get_target(manifest.target).engine if manifest.target in target_names() else None
    raise ConfigError(
        f"the manifest of {folder} names backend {name!r}, which runs the PyTorch model and would "
        f"ignore the artifact's {manifest.primary!r}; no export writes that: re-export the artifact, "
        + (
            f"or load it with backend={own!r}"
            if own and own != name
            else "or pass the backend that runs its model file"
        )
        + f" (backend={name!r} to run its source model on purpose)"
    )


def load(path: str | Path, backend: str | None = None, verify: bool = True, **options: Any) -> Session:
    """Open ``path`` and return a ready :class:`Session`.

    Args:
        path: an artifact folder written by ``danet-export`` (its manifest picks the backend
            and is verified: format version and sha256 of every file), a bare model file whose
            suffix a registered engine opens (``.onnx``, ``.xml``, ``.engine`` ...), or a reference
            preset name such as ``danet_demo``.
        backend: override the backend (e.g. run an ONNX artifact with ``openvino``).
        verify: check the manifest's file hashes (default) before loading.
        **options: backend options, e.g. ``threads=2``, ``providers=[...]``, ``device="CPU"``: the
            fields of the backend's options dataclass (``OnnxRuntimeEngineOptions`` ...), parsed
            like ``danet-export --option`` values; an option the backend does not declare, or a
            value of the wrong type, is a :class:`ConfigError` naming it.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(
            f"load() takes an artifact folder, a model file or a preset name (str or path), got {path!r:.60}"
        )
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(f"backend must be an engine name (str) such as 'onnxruntime', got {backend!r:.60}")
    target = Path(path)
    preset = None
    if target.is_dir():
        manifest = read_manifest(target, verify=verify)
        model_file = artifact_path(target, manifest.primary, "model file")
        name = backend or manifest.backend
        if backend is None:
            _refuse_reference_backend_in_manifest(name, manifest, target)
    elif target.is_file():
        engine = engine_for_suffix(target.suffix)
        guessed = backend or (engine.name if engine else None)
        if guessed is None:
            known = sorted(s for e in engines() for s in e.suffixes)
            raise ArtifactError(
                f"cannot tell the backend of {target} from its suffix ({', '.join(known)} are "
                f"known); pass backend=..., or load the artifact folder (with {MANIFEST_NAME})"
            )
        name, manifest = guessed, None
        model_file = target
        for read in referenced_files(target):  # the folder of a bare file plays the artifact folder
            artifact_path(target.parent, read, f"file {target.name} reads")
    elif target.exists():  # a FIFO, /dev/stdin, a socket: there, but not a file an engine can open
        raise ArtifactError(f"{str(path)!r} {not_a_file_reason(target)}")
    else:
        # a preset name: only the reference backend knows them (the runtime's one door to ``model``)
        reference = reference_engine().name
        if str(path) not in backend_class(reference).presets():
            raise ArtifactError(
                missing_artifact_message(
                    path,
                    f"{str(path)!r} is neither an artifact folder, a model file, nor a preset name; export one "
                    "with danet-export",
                )
            )
        name = backend or reference
        direct = [e.name for e in engines() if e.runs_presets]
        if name not in direct:
            raise ConfigError(
                f"{path!r} is a reference preset: only the {', '.join(direct)} backends run it; export it first"
            )
        manifest = None
        model_file = None
        preset = str(path)
    cls = backend_class(name)
    if preset is not None:
        options = {"preset": preset, **options}
    instance = cls(model_file, manifest, **options)  # its options dataclass parses them before any work
    return Session(instance, manifest or instance.manifest)
