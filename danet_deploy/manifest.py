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
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .counts import MAX_CLASSES, is_count
from .errors import ArtifactError, CheckpointError, ManifestError
from .files import atomic_write_text, sha256_file, weights_name_problem

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
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: the manifest is JSON but not an object (got {type(data).__name__}); "
                                "re-export the artifact")
        version = data.get("format_version")
        if version != FORMAT_VERSION or type(version) is not int:  # true and 1.0 equal 1 in Python
            raise ManifestError(
                f"{source}: manifest format version {version!r} is not supported by this danet-deploy "
                f"(expects {FORMAT_VERSION}); re-export the artifact with this version")
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("target", "backend", "precision", "primary", "model", "preprocessing", "input", "output")
                   if k not in data]
        if missing:
            raise ManifestError(f"{source}: manifest lacks {missing}; re-export the artifact")
        check_schema(data, source)
        return cls(**{k: v for k, v in data.items() if k in known})

    def hash_files(self, directory: str | Path) -> None:
        """Record the sha256 of every file in ``directory`` except the manifest itself (and the owner
        file of a folder still being written, :data:`~danet_deploy.artifact_dir.OWNER_NAME`)."""
        from .artifact_dir import OWNER_NAME

        directory = Path(directory)
        self.files = {p.relative_to(directory).as_posix(): sha256_file(p)
                      for p in sorted(directory.rglob("*")) if p.is_file() and p.name not in (MANIFEST_NAME, OWNER_NAME)}

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


def missing_artifact_message(directory: str | Path, otherwise: str) -> str:
    """Why ``directory`` is not there: a killed export's stranded ``.NAME.old-PID`` copy if one
    exists (so the user learns where the previous artifact went), else ``otherwise``."""
    from .artifact_dir import stranded_copies

    stranded = stranded_copies(directory)
    if stranded:
        name = Path(directory).name
        return (f"artifact {str(directory)!r} does not exist, but {stranded[0]} holds the previous one (an export to "
                f"this name was killed mid-swap): the next danet-export to {name} restores it, or rename it back "
                "yourself")
    return otherwise


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read and check an artifact folder's manifest: format version, field types and that every path
    it names stays inside the folder (always), and (by default) the sha256 of every file."""
    directory = Path(directory)
    if not directory.exists():
        raise ArtifactError(missing_artifact_message(
            directory, f"artifact {str(directory)!r} does not exist; export one with danet-export"))
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is a file, not an artifact folder; pass the folder danet-export wrote")
    path = directory / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST_NAME} (or it is a symbolic link): it was not written by "
                            "danet-export or is incomplete; re-export it")
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
            raise ManifestError(f"{directory}: {name}, which the engine reads beside {manifest.primary}, has no hash in "
                                "the manifest's files; re-export the artifact")
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
    return [(folder / name).as_posix() if not name.startswith("/") else name
            for name in referenced_files(model_file)]


def artifact_path(directory: str | Path, name: Any, what: str = "file") -> Path:
    """``directory / name`` for a path an artifact's manifest names, or :class:`ManifestError` if it could
    reach outside the folder: the one containment rule for manifests, TensorRT bundles and repositories.

    A name must be a non-empty relative POSIX path without ``..`` (or ``\\``, ``:`` drive or NUL),
    and after resolving symbolic links it must still lie inside ``directory`` (resolved too).
    Checked by name first, so a hostile manifest learns nothing about files outside the folder.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name.strip():
        raise ManifestError(f"{directory}: the manifest names a {what} {name!r} that is not a file name; "
                            "re-export the artifact")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0]
            or any(part in ("", ".", "..") for part in parts)):
        raise ManifestError(f"{directory}: the manifest names {what} {name!r}, outside the artifact folder or not "
                            "a plain relative path; an artifact may reference only files inside its own folder")
    root = directory.resolve()
    try:
        resolved = (root / name).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise ManifestError(f"{directory}: {what} {name!r} cannot be resolved ({exc})") from exc
    if not resolved.is_relative_to(root) or resolved == root:
        raise ManifestError(f"{directory}: {what} {name!r} is a symbolic link leading outside the artifact folder; "
                            "an artifact may reference only files inside its own folder")
    return directory / name


#: The name of the checkpoint copy an artifact carries. Always a safetensors file: a ``.safetensors``
#: checkpoint is copied as it is, any other is carried as its weights only
#: (:func:`danet_deploy.export.pipeline.carry_weights`), so an artifact never holds a pickle, an
#: optimizer state or training logs; a fixed name can never collide with or reach beyond the model files.
CARRIED_CHECKPOINT = "checkpoint.safetensors"


def carried_sha256(info: dict[str, Any]) -> Any:
    """The sha256 of the checkpoint copy an artifact carries.

    Why two digests: ``checkpoint.sha256`` is the user's original file (what danet-bench and
    danet-parity compare a checkpoint with); the copy holds its weights only, so it has its own,
    ``carried_sha256``. Artifacts written before the copy was trimmed carry the whole file, whose
    digest is ``sha256``.
    """
    return info.get("carried_sha256") or info.get("sha256")


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
    name = info.get("path")
    fix = ("re-export the artifact with this danet-export (it copies the checkpoint into the folder), or pass the "
           "checkpoint yourself (danet-parity --reference FILE)")
    try:
        path = artifact_path(directory, name, "checkpoint")
    except ManifestError as exc:
        raise ManifestError(f"{exc}. The checkpoint entry does not name a file the artifact carries: {fix}") from exc
    digest = carried_sha256(info)
    if name not in manifest.files or manifest.files[name] != digest:
        raise ManifestError(f"{directory}: checkpoint {name!r} is not listed in the manifest's files with the "
                            f"checkpoint's sha256; {fix}")
    check_listed_file(directory, path, digest, f"checkpoint {name!r}", fix)
    return path


def carry_checkpoint(source: Path, info: dict[str, Any], workdir: Path) -> None:
    """Copy the checkpoint an artifact carries (a user's ``.safetensors`` file at export, a bundle's
    copy when its engine is built) into the new artifact's (still temporary) folder, as
    ``info["path"]``, and check the copy has the sha256 recorded for it (:func:`carried_sha256`).

    Why a copy: the torch backend, danet-parity and the per-layer reference rebuild the model from
    it, and an artifact may reference only files inside its own folder; the hash check means a
    checkpoint rewritten during the export fails here rather than ship under the wrong hash.
    """
    target = workdir / info["path"]
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        raise CheckpointError(f"cannot copy checkpoint {source} into the artifact ({exc.strerror or exc}); check "
                              "that it is readable and that the output folder has room") from exc
    if sha256_file(target) != carried_sha256(info):
        raise CheckpointError(f"{source} changed while it was exported (its sha256 is no longer the one it was loaded "
                              "with); export again once nothing is writing it")


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
        raise ManifestError(f"{directory}: {label} does not match its sha256 in the manifest (swapped, modified, "
                            f"truncated or corrupt); {fix}")


def verify_files(manifest: Manifest, directory: str | Path) -> None:
    """Raise :class:`ManifestError` if any recorded file is outside the folder, missing, or its sha256 differs."""
    directory = Path(directory)
    if manifest.primary not in manifest.files:
        raise ManifestError(f"{directory}: the manifest does not list its model file {manifest.primary!r}")
    for name, digest in manifest.files.items():
        check_listed_file(directory, artifact_path(directory, name), digest, name, "re-export the artifact")


_STR_FIELDS = ("target", "backend", "precision", "primary")
_DICT_FIELDS = ("model", "preprocessing", "input", "output", "files", "tools", "export", "extra")
_OPTIONAL_DICT_FIELDS = ("checkpoint", "calibration", "parity")


def check_schema(data: dict[str, Any], source: str = "manifest") -> None:
    """Types of the fields the runtime reads, so a hand-edited or hostile manifest is a
    :class:`ManifestError` rather than an ``AttributeError``/``TypeError`` deep inside a backend."""

    def fail(what: str) -> None:
        raise ManifestError(f"{source}: {what}; re-export the artifact")

    for key in _STR_FIELDS:
        if not isinstance(data.get(key), str) or not data[key]:
            fail(f"{key!r} must be a non-empty string, got {data.get(key)!r:.80}")
    for key in _DICT_FIELDS:
        if key in data and not isinstance(data[key], dict):
            fail(f"{key!r} must be an object, got {type(data[key]).__name__}")
    for key in _OPTIONAL_DICT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            fail(f"{key!r} must be an object or null, got {type(data[key]).__name__}")
    for name, digest in data.get("files", {}).items():
        if not isinstance(digest, str) or len(digest) != 64:
            fail(f"files[{name!r}] must be a sha256 hex string")
    model, prep = data["model"], data["preprocessing"]
    weights = model.get("weights")
    if weights is not None:
        problem = weights_name_problem(weights)
        if problem:
            fail(f"model.weights {weights!r:.80} {problem}: it may only name a file shipped in danet_deploy/weights "
                 "(such as 'danet_demo.safetensors'), or be null")
    classes = model.get("num_classes", 1)
    if not is_count(classes, 1, MAX_CLASSES):
        fail(f"model.num_classes must be an integer in 1..{MAX_CLASSES}, got {classes!r:.80}")
    chunks = model.get("attention_chunks", 1)
    if chunks is not None and not is_count(chunks, 1, 2**20):
        fail(f"model.attention_chunks must be an integer in 1..1048576, got {chunks!r:.80}")
    stride = model.get("output_stride", 8)
    if stride not in (4, 8, 16, 32) or isinstance(stride, bool):
        fail(f"model.output_stride must be 4, 8, 16 or 32, got {stride!r:.80}")
    names = model.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        fail("model.class_names must be a list of strings")
    for key in ("mean", "std"):
        values = prep.get(key)
        if (not isinstance(values, list) or len(values) != 3
                or not all(_is_number(v) and abs(v) <= 1e4 for v in values)):
            fail(f"preprocessing.{key} must be a list of 3 numbers within +-1e4, got {values!r:.80}")
    if not all(abs(v) >= 1e-6 for v in prep["std"]):
        fail("preprocessing.std must not be 0 (values on the 0..1 scale)")
    order = prep.get("color_order", "RGB")
    if not isinstance(order, str) or order.upper() not in ("RGB", "BGR"):
        fail(f"preprocessing.color_order must be 'RGB' or 'BGR', got {order!r:.40}")
    # the runtime feeds 0..255 pixels in NCHW and nothing else: another value would be silently ignored
    if prep.get("layout", "NCHW") != "NCHW":
        fail(f"preprocessing.layout must be 'NCHW' (the only layout the runtime feeds), got {prep.get('layout')!r:.40}")
    if prep.get("input_range", [0.0, 255.0]) not in ([0, 255], [0.0, 255.0], (0.0, 255.0)):
        fail(f"preprocessing.input_range must be [0, 255] (the runtime scales uint8 pixels), got "
             f"{prep.get('input_range')!r:.40}")
    def check_shape(where: str, shape: Any, ranks: tuple[int, ...]) -> None:
        if (not isinstance(shape, list) or len(shape) not in ranks
                or not all((isinstance(d, str) and d) or is_count(d, 1, 2**31 - 1) for d in shape)):
            fail(f"{where} must be {' or '.join(map(str, ranks))} dims, each a positive integer or a name, "
                 f"got {shape!r:.80}")

    check_shape("input.shape", data["input"].get("shape"), (4,))
    _check_accept(data["input"], fail)
    # outputs: NCHW logits, or an NHW mask (--emit mask); every emitted tensor is listed under "tensors"
    check_shape("output.shape", data["output"].get("shape"), (3, 4))
    tensors = data["output"].get("tensors", [])
    if not isinstance(tensors, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tensors):
        fail("output.tensors must be a list of {name, shape, dtype} objects")
    for i, tensor in enumerate(tensors):
        check_shape(f"output.tensors[{i}].shape", tensor.get("shape"), (3, 4))
    for key in ("input", "output"):
        if not isinstance(data[key].get("name", ""), str):
            fail(f"{key}.name must be a string")
    for key in ("min_shape", "opt_shape", "max_shape"):
        bound = data["input"].get(key)
        if bound is not None and (not isinstance(bound, list) or len(bound) != 4
                                  or not all(is_count(d, 1, 2**31 - 1) for d in bound)):
            fail(f"input.{key} must be 4 positive integers, got {bound!r:.80}")
    if "tensorrt" in data.get("extra", {}):  # a bundle's or engine's profile, attention plan and build facts
        from .tensorrt.manifest_facts import check_tensorrt_facts

        check_tensorrt_facts(data["extra"]["tensorrt"], fail)


def _check_accept(entry: dict[str, Any], fail: Any) -> None:
    """An ``--accept`` input (absent in float artifacts and in every manifest older than it) must be
    the uint8 NHWC 3-channel image the runtime hands over unprocessed: anything else would be fed
    the wrong bytes."""
    from .inputs import ACCEPTS, FLOAT

    accept = entry.get("accept")
    if accept is None or accept == FLOAT:
        if entry.get("layout", "NCHW") != "NCHW":
            fail(f"input.layout {entry.get('layout')!r:.20} needs input.accept (rgb8 or bgr8)")
        return
    if accept not in ACCEPTS:
        fail(f"input.accept must be one of {', '.join(ACCEPTS)}, got {accept!r:.40}")
    shape = entry["shape"]
    if entry.get("dtype") != "uint8" or entry.get("layout") != "NHWC" or shape[3] != 3:
        fail(f"an --accept {accept} input must be uint8 NHWC with 3 channels, got {entry.get('dtype')!r:.20} "
             f"{entry.get('layout')!r:.20} {shape!r:.60}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def atomic_artifact_dir(final: str | Path, force: bool = False,
                        log: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[Path]:
    """A temporary folder that becomes ``final`` only if the block completes; an existing ``final``
    is replaced only if it is an artifact (or ``force``). See :mod:`danet_deploy.artifact_dir`."""
    from .artifact_dir import artifact_dir

    return artifact_dir(final, force=force, log=log)
