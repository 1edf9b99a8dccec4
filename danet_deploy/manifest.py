"""The artifact manifest: one versioned JSON file beside every exported model.

Lives at the package top level (not in ``export/``) because both sides need it: the exporter
writes it, and the torch-free runtime reads and verifies it before any backend touches a file.

One artifact = one folder: model file(s) + ``manifest.json``. Folders are written to a
temporary sibling and renamed into place only when complete (:func:`atomic_artifact_dir`), so a
crash never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ArtifactError, CheckpointError, ManifestError
from .manifest_sections import (
    CheckpointInfo,
    ExportInfo,
    Fail,
    InputInfo,
    ModelInfo,
    OutputInfo,
    PreprocessingInfo,
    Section,
    section_object,
)
from .util.files import atomic_write_text, sha256_file

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class Manifest:
    """What an artifact is, how to feed it, what produced it, and how well it matched the reference.

    The sections are typed records (:mod:`danet_deploy.manifest_sections`), validated when the
    manifest is read or built; a section given as a plain dict is converted (and checked) on
    construction, so ``Manifest(..., input={...})`` and ``dataclasses.replace`` keep working.

    Attributes:
        target: export target (``onnx``, ``onnxruntime``, ``openvino``, ``tensorrt``, ``torch``).
        backend: the runtime backend that executes it (``onnxruntime``, ``openvino``, ...).
        precision: ``fp32``, ``fp16`` or ``int8``.
        primary: file name of the model file the backend loads.
        model: the model configuration (name, classes, strides, ...): :class:`ModelInfo`.
        preprocessing: mean/std/colour order, as the runtime applies them: :class:`PreprocessingInfo`.
        input: the graph's input (name, shape with named dynamic dims, dtype, bounds, accept): :class:`InputInfo`.
        output: the emitted tensors (name, shape, dtype, emit, tensors): :class:`OutputInfo`.
        files: sha256 of every artifact file (relative names), verified on load.
        tools: versions of the libraries that produced it.
        export: the options used (opset, exporter, dynamic, attention chunks, memory plan, ...): :class:`ExportInfo`.
        checkpoint: the checkpoint it was exported from (:class:`CheckpointInfo`), else ``None``.
        calibration: calibration-set description and hash (INT8), else ``None``. A plain mapping: no
            code reads its keys; it describes the calibration set for people, in the calibration
            module's own words.
        parity: the parity report once measured, else ``None``. A plain mapping: the parity module's
            report, written back as it is.
        extra: target-specific facts (TensorRT version, GPU, profiles, CPU features, ...). A plain
            mapping: open-ended by design (each target and tool adds its own facts); the TensorRT
            facts the runtime trusts are checked by :func:`~danet_deploy.tensorrt.manifest_facts.check_tensorrt_facts`.
    """

    target: str
    backend: str
    precision: str
    primary: str
    model: ModelInfo
    preprocessing: PreprocessingInfo
    input: InputInfo
    output: OutputInfo
    files: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    export: ExportInfo = field(default_factory=lambda: ExportInfo.from_dict({}))
    checkpoint: CheckpointInfo | None = None
    calibration: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name, record in _SECTIONS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, record):
                setattr(self, name, record.from_dict(dict(value) if isinstance(value, Mapping) else value))

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON: every section as it was read or built, keys in the order written."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, Section) else copy.deepcopy(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(
                f"{source}: the manifest is JSON but not an object (got {type(data).__name__}); re-export the artifact"
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION or type(version) is not int:  # true and 1.0 equal 1 in Python
            raise ManifestError(
                f"{source}: manifest format version {version!r} is not supported by this danet-deploy "
                f"(expects {FORMAT_VERSION}); re-export the artifact with this version"
            )
        known = {f.name for f in fields(cls)}
        missing = [
            k
            for k in ("target", "backend", "precision", "primary", "model", "preprocessing", "input", "output")
            if k not in data
        ]
        if missing:
            raise ManifestError(f"{source}: manifest lacks {missing}; re-export the artifact")
        s = parse_sections(data, source)
        plain = {k: copy.deepcopy(v) for k, v in data.items() if k in known and k not in _SECTIONS}
        return cls(
            **plain,
            model=s.model,
            preprocessing=s.preprocessing,
            input=s.input,
            output=s.output,
            export=s.export,
            checkpoint=s.checkpoint,
        )

    def hash_files(self, directory: str | Path) -> None:
        """Record the sha256 of every file in ``directory`` except the manifest itself (and the owner
        file of a folder still being written, :data:`~danet_deploy.util.artifact_dir.OWNER_NAME`)."""
        from .util.artifact_dir import OWNER_NAME

        directory = Path(directory)
        self.files = {
            p.relative_to(directory).as_posix(): sha256_file(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST_NAME, OWNER_NAME)
        }

    def write(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` atomically (temp file + rename)."""
        path = Path(directory) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path


def manifest_from_metadata(
    meta: dict[str, str], model_file: Path, target: str, backend: str, input: dict[str, Any], output: dict[str, Any]
) -> Manifest:
    """A manifest for a bare model file, from the ``danet.*`` metadata danet-export writes into it
    (ONNX ``metadata_props``, OpenVINO ``rt_info``)."""
    if "danet.model" not in meta:
        raise ArtifactError(
            f"{model_file} carries no danet-deploy metadata; load the artifact folder danet-export wrote"
        )
    source = f"{model_file} (its danet-deploy metadata)"
    return Manifest(
        target=target,
        backend=backend,
        precision=meta.get("danet.precision", "fp32"),
        primary=model_file.name,
        model=ModelInfo.from_dict(json.loads(meta["danet.model"]), source),
        preprocessing=PreprocessingInfo.from_dict(json.loads(meta["danet.preprocessing"]), source),
        input=InputInfo.from_dict(input, source),
        output=OutputInfo.from_dict(output, source),
    )


def missing_artifact_message(directory: str | Path, otherwise: str) -> str:
    """Why ``directory`` is not there: a killed export's stranded ``.NAME.old-PID`` copy if one
    exists (so the user learns where the previous artifact went), else ``otherwise``."""
    from .util.artifact_dir import stranded_copies

    stranded = stranded_copies(directory)
    if stranded:
        name = Path(directory).name
        return (
            f"artifact {str(directory)!r} does not exist, but {stranded[0]} holds the previous one (an export to "
            f"this name was killed mid-swap): the next danet-export to {name} restores it, or rename it back "
            "yourself"
        )
    return otherwise


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read and check an artifact folder's manifest: format version, field types and that every path
    it names stays inside the folder (always), and (by default) the sha256 of every file."""
    directory = Path(directory)
    if not directory.exists():
        raise ArtifactError(
            missing_artifact_message(
                directory, f"artifact {str(directory)!r} does not exist; export one with danet-export"
            )
        )
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is a file, not an artifact folder; pass the folder danet-export wrote")
    path = directory / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        raise ManifestError(
            f"{directory} has no {MANIFEST_NAME} (or it is a symbolic link): it was not written by "
            "danet-export or is incomplete; re-export it"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); re-export the artifact") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from exc
    manifest = Manifest.from_dict(data, source=str(path))
    for name in (manifest.primary, *manifest.files):
        artifact_path(directory, name)
    for name in companion_files(directory, manifest.primary):
        artifact_path(directory, name, f"file {manifest.primary} reads")
        if verify and name not in manifest.files:
            raise ManifestError(
                f"{directory}: {name}, which the engine reads beside {manifest.primary}, has no hash in "
                "the manifest's files; re-export the artifact"
            )
    if verify:
        verify_files(manifest, directory)
    return manifest


def companion_files(directory: str | Path, primary: str) -> list[str]:
    """Files the engine reads with the primary model file although the manifest need not name
    them, found by content (:func:`~danet_deploy.engine_reads.referenced_files`): an OpenVINO IR's
    ``.bin`` (whatever the IR is called), an ONNX file's external data. Names are relative to the
    folder; one that leaves it is refused by :func:`artifact_path` like a manifest entry.

    Why: the containment and hash rules must cover every byte the engine loads, so a ``.bin``
    swapped for a symbolic link to weights outside the folder, or an unlisted external-data file,
    is refused like a listed file would be.
    """
    from .engine_reads import referenced_files

    model_file = artifact_path(directory, primary, "model file")
    folder = PurePosixPath(primary).parent
    return [(folder / name).as_posix() if not name.startswith("/") else name for name in referenced_files(model_file)]


def artifact_path(directory: str | Path, name: Any, what: str = "file") -> Path:
    """``directory / name`` for a path an artifact's manifest names, or :class:`ManifestError` if it could
    reach outside the folder: the one containment rule for manifests, TensorRT bundles and repositories.

    A name must be a non-empty relative POSIX path without ``..`` (or ``\\``, ``:`` drive or NUL),
    and after resolving symbolic links it must still lie inside ``directory`` (resolved too).
    Checked by name first, so a hostile manifest learns nothing about files outside the folder.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name.strip():
        raise ManifestError(
            f"{directory}: the manifest names a {what} {name!r} that is not a file name; re-export the artifact"
        )
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or ":" in parts[0]
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ManifestError(
            f"{directory}: the manifest names {what} {name!r}, outside the artifact folder or not "
            "a plain relative path; an artifact may reference only files inside its own folder"
        )
    root = directory.resolve()
    try:
        resolved = (root / name).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise ManifestError(f"{directory}: {what} {name!r} cannot be resolved ({exc})") from exc
    if not resolved.is_relative_to(root) or resolved == root:
        raise ManifestError(
            f"{directory}: {what} {name!r} is a symbolic link leading outside the artifact folder; "
            "an artifact may reference only files inside its own folder"
        )
    return directory / name


#: The name of the checkpoint copy an artifact carries. Always a safetensors file: a ``.safetensors``
#: checkpoint is copied as it is, any other is carried as its weights only
#: (:func:`danet_deploy.export.pipeline.carry_weights`), so an artifact never holds a pickle, an
#: optimizer state or training logs; a fixed name can never collide with or reach beyond the model files.
CARRIED_CHECKPOINT = "checkpoint.safetensors"


def artifact_checkpoint(directory: str | Path, manifest: Manifest) -> Path | None:
    """The checkpoint an artifact carries for its torch reference (``None`` when exported from a
    preset), contained in the folder, listed in ``files`` and matching ``checkpoint.sha256``.

    Why here: the torch backend, danet-parity and the per-layer reference all rebuild a
    checkpoint-based artifact's model from this file, so the rule (never a path outside the
    folder, never a swapped file blamed on the artifact) is written once. The sha256 is checked
    even when the manifest was read with ``verify=False``.
    """
    info = manifest.checkpoint
    if not info:
        return None
    directory = Path(directory)
    name = info.path
    fix = (
        "re-export the artifact with this danet-export (it copies the checkpoint into the folder), or pass the "
        "checkpoint yourself (danet-parity --reference FILE)"
    )
    try:
        path = artifact_path(directory, name, "checkpoint")
    except ManifestError as exc:
        raise ManifestError(f"{exc}. The checkpoint entry does not name a file the artifact carries: {fix}") from exc
    digest = info.carried_digest
    if name is None or name not in manifest.files or manifest.files[name] != digest:
        raise ManifestError(
            f"{directory}: checkpoint {name!r} is not listed in the manifest's files with the "
            f"checkpoint's sha256; {fix}"
        )
    check_listed_file(directory, path, digest, f"checkpoint {name!r}", fix)
    return path


def carry_checkpoint(source: Path, info: Mapping[str, Any], workdir: Path) -> None:
    """Copy the checkpoint an artifact carries (a user's ``.safetensors`` file at export, a bundle's
    copy when its engine is built) into the new artifact's (still temporary) folder, as
    ``info``'s ``path``, and check the copy has the sha256 recorded for it
    (:attr:`CheckpointInfo.carried_digest`); ``info`` is the manifest's checkpoint entry, as a
    record or the dict the exporter is building.

    Why a copy: the torch backend, danet-parity and the per-layer reference rebuild the model from
    it, and an artifact may reference only files inside its own folder; the hash check means a
    checkpoint rewritten during the export fails here rather than ship under the wrong hash.
    """
    record = info if isinstance(info, CheckpointInfo) else CheckpointInfo.from_dict(dict(info))
    if record.path is None:
        raise CheckpointError(f"the checkpoint entry for {source} names no path to carry it as; re-export the artifact")
    target = workdir / record.path
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        raise CheckpointError(
            f"cannot copy checkpoint {source} into the artifact ({exc.strerror or exc}); check "
            "that it is readable and that the output folder has room"
        ) from exc
    if sha256_file(target) != record.carried_digest:
        raise CheckpointError(
            f"{source} changed while it was exported (its sha256 is no longer the one it was loaded "
            "with); export again once nothing is writing it"
        )


def check_listed_file(directory: Path, path: Path, digest: str, label: str, fix: str) -> None:
    """A file the manifest lists is there, readable, and has its recorded sha256; else a
    :class:`ManifestError` naming ``label`` and ending in ``fix``."""
    if not path.is_file():
        raise ManifestError(f"{directory}: {label} is missing (listed in the manifest); {fix}")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ManifestError(f"{directory}: cannot read {label} ({exc.strerror or exc}); check its permissions") from exc
    if actual != digest:
        raise ManifestError(
            f"{directory}: {label} does not match its sha256 in the manifest (swapped, modified, "
            f"truncated or corrupt); {fix}"
        )


def verify_files(manifest: Manifest, directory: str | Path) -> None:
    """Raise :class:`ManifestError` if any recorded file is outside the folder, missing, or its sha256 differs."""
    directory = Path(directory)
    if manifest.primary not in manifest.files:
        raise ManifestError(f"{directory}: the manifest does not list its model file {manifest.primary!r}")
    for name, digest in manifest.files.items():
        check_listed_file(directory, artifact_path(directory, name), digest, name, "re-export the artifact")


_STR_FIELDS = ("target", "backend", "precision", "primary")
_DICT_FIELDS = ("files", "tools", "extra")
_OPTIONAL_DICT_FIELDS = ("calibration", "parity")
#: the sections read as typed records (a Manifest built from plain dicts converts them with these)
_SECTIONS: dict[str, type[Section]] = {
    "model": ModelInfo,
    "preprocessing": PreprocessingInfo,
    "input": InputInfo,
    "output": OutputInfo,
    "export": ExportInfo,
    "checkpoint": CheckpointInfo,
}
_REQUIRED_SECTIONS = ("model", "preprocessing", "input", "output")


@dataclass(frozen=True)
class ManifestSections:
    """The typed records of one manifest's sections, as :func:`parse_sections` reads them."""

    model: ModelInfo
    preprocessing: PreprocessingInfo
    input: InputInfo
    output: OutputInfo
    export: ExportInfo
    checkpoint: CheckpointInfo | None


def parse_sections(data: dict[str, Any], source: str = "manifest") -> ManifestSections:
    """Check the fields the runtime reads and return the typed section records, so a hand-edited or
    hostile manifest is a :class:`ManifestError` naming the key and the fix rather than an
    ``AttributeError``/``TypeError`` deep inside a backend."""
    fail = Fail(source)
    for key in _STR_FIELDS:
        if not isinstance(data.get(key), str) or not data[key]:
            fail(f"{key!r} must be a non-empty string, got {data.get(key)!r:.80}")
    for key in _DICT_FIELDS:
        if key in data and not isinstance(data[key], dict):
            fail(f"{key!r} must be an object, got {type(data[key]).__name__}")
    for key in _OPTIONAL_DICT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            fail(f"{key!r} must be an object or null, got {type(data[key]).__name__}")
    for key in _REQUIRED_SECTIONS:
        section_object(data.get(key), key, fail)
    for name, digest in data.get("files", {}).items():
        if not isinstance(digest, str) or len(digest) != 64:
            fail(f"files[{name!r}] must be a sha256 hex string")
    checkpoint = data.get("checkpoint")
    sections = ManifestSections(
        model=ModelInfo.parse(data["model"], "model", fail),
        preprocessing=PreprocessingInfo.parse(data["preprocessing"], "preprocessing", fail),
        input=InputInfo.parse(data["input"], "input", fail),
        output=OutputInfo.parse(data["output"], "output", fail),
        export=ExportInfo.parse(data.get("export", {}), "export", fail),
        checkpoint=None if checkpoint is None else CheckpointInfo.parse(checkpoint, "checkpoint", fail),
    )
    if "tensorrt" in data.get("extra", {}):  # a bundle's or engine's profile, attention plan and build facts
        from .tensorrt.manifest_facts import check_tensorrt_facts

        check_tensorrt_facts(data["extra"]["tensorrt"], fail)
    return sections


def check_schema(data: dict[str, Any], source: str = "manifest") -> None:
    """Raise :class:`ManifestError` if ``data`` is not a manifest the runtime can read: the
    composition of the sections' ``from_dict`` checks (:func:`parse_sections`)."""
    parse_sections(data, source)


def atomic_artifact_dir(
    final: str | Path, force: bool = False, log: Callable[[str], None] | None = None
) -> contextlib.AbstractContextManager[Path]:
    """A temporary folder that becomes ``final`` only if the block completes; an existing ``final``
    is replaced only if it is an artifact (or ``force``). See :mod:`danet_deploy.util.artifact_dir`."""
    from .util.artifact_dir import artifact_dir

    return artifact_dir(final, force=force, log=log)
