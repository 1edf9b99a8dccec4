"""The artifact manifest: one versioned JSON file beside every exported model.

Lives at the package top level (not in ``export/``) because both sides need it: the exporter
writes it, and the torch-free runtime reads and verifies it before any backend touches a file.

One artifact = one folder: model file(s) + ``manifest.json``. Folders are written to a
temporary sibling and renamed into place only when complete (:func:`atomic_artifact_dir`), so a
crash never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError, ManifestError
from .files import atomic_write_text, sha256_file

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class Manifest:
    """What an artifact is, how to feed it, what produced it, and how well it matched the reference.

    Attributes:
        target: export target (``onnx``, ``onnxruntime``, ``openvino``, ``tensorrt``, ``torch``).
        backend: the runtime backend that executes it (``onnxruntime``, ``openvino``, ...).
        precision: ``fp32``, ``fp16`` or ``int8``.
        primary: file name of the model file the backend loads.
        model: the :class:`~danet_deploy.model.ModelConfig` as a dict (name, classes, ...).
        preprocessing: mean/std/colour order/input range/layout, as the runtime applies them.
        input: ``{"name", "shape", "dtype", "dynamic_axes", "min_shape", "opt_shape", "max_shape"}``;
            dynamic dims are strings in ``shape``.
        output: ``{"name", "shape", "dtype"}``.
        files: sha256 of every artifact file (relative names), verified on load.
        tools: versions of the libraries that produced it.
        export: the options used (opset, exporter, dynamic, attention chunks, memory plan, ...).
        calibration: calibration-set description and hash (INT8), else ``None``.
        parity: the parity report once measured, else ``None``.
        extra: target-specific facts (TensorRT version, GPU, profiles, CPU features, ...).
    """

    target: str
    backend: str
    precision: str
    primary: str
    model: dict[str, Any]
    preprocessing: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    @property
    def class_names(self) -> list[str]:
        return list(self.model.get("class_names", []))

    @property
    def num_classes(self) -> int:
        return int(self.model.get("num_classes", len(self.class_names)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> "Manifest":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ManifestError(
                f"{source}: manifest format version {version!r} is not supported by this danet-deploy "
                f"(expects {FORMAT_VERSION}); re-export the artifact with this version")
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("target", "backend", "precision", "primary", "model", "preprocessing", "input", "output")
                   if k not in data]
        if missing:
            raise ManifestError(f"{source}: manifest lacks {missing}; re-export the artifact")
        return cls(**{k: v for k, v in data.items() if k in known})

    def hash_files(self, directory: str | Path) -> None:
        """Record the sha256 of every file in ``directory`` except the manifest itself."""
        directory = Path(directory)
        self.files = {p.relative_to(directory).as_posix(): sha256_file(p)
                      for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}

    def write(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` atomically (temp file + rename)."""
        path = Path(directory) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path


def manifest_from_metadata(meta: dict[str, str], model_file: Path, target: str, backend: str,
                           input: dict[str, Any], output: dict[str, Any]) -> Manifest:
    """A manifest for a bare model file, from the ``danet.*`` metadata danet-export writes into it
    (ONNX ``metadata_props``, OpenVINO ``rt_info``)."""
    if "danet.model" not in meta:
        raise ArtifactError(f"{model_file} carries no danet-deploy metadata; load the artifact folder "
                            "danet-export wrote")
    return Manifest(target=target, backend=backend, precision=meta.get("danet.precision", "fp32"),
                    primary=model_file.name, model=json.loads(meta["danet.model"]),
                    preprocessing=json.loads(meta["danet.preprocessing"]), input=input, output=output)


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read and (by default) verify an artifact folder's manifest: format version and file hashes."""
    directory = Path(directory)
    if not directory.exists():
        raise ArtifactError(f"artifact {str(directory)!r} does not exist; export one with danet-export")
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is a file, not an artifact folder; pass the folder danet-export wrote")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST_NAME}: it was not written by danet-export or is "
                            "incomplete; re-export it")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); re-export the artifact") from exc
    manifest = Manifest.from_dict(data, source=str(path))
    if verify:
        verify_files(manifest, directory)
    return manifest


def verify_files(manifest: Manifest, directory: str | Path) -> None:
    """Raise :class:`ManifestError` if any recorded file is missing or its sha256 differs."""
    directory = Path(directory)
    if manifest.primary not in manifest.files:
        raise ManifestError(f"{directory}: the manifest does not list its model file {manifest.primary!r}")
    for name, digest in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise ManifestError(f"{directory}: {name} is missing (listed in the manifest); re-export the artifact")
        if sha256_file(path) != digest:
            raise ManifestError(
                f"{directory}: {name} does not match its sha256 in the manifest (modified, truncated or corrupt); "
                "re-export the artifact")


@contextlib.contextmanager
def atomic_artifact_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``final`` only if the block completes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise ArtifactError(f"{final} already exists; pass --force or choose another --output")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
