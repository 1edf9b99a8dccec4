"""Write a Triton Inference Server model repository for an exported artifact, from its manifest.

The repository is for NVIDIA's Triton container and its native backends (``onnxruntime_onnx``,
``openvino``, ``tensorrt_plan``). Everything ``config.pbtxt`` says comes from the artifact's
manifest: the model is never loaded, so this runs anywhere the runtime is installed, and a
TensorRT repository can be written from a bundle prepared on a machine without a GPU (its engine
is built on the serving GPU, with the TensorRT of the Triton container)::

    REPO/<name>/config.pbtxt
    REPO/<name>/<version>/model.onnx | model.xml + model.bin | model.plan
    REPO/<name>/<version>/manifest.json      (so danet_deploy.runtime.load() reads it back)

The input contract follows the artifact. A float artifact (the default) takes ``input``: float32
NCHW, already normalised by the client as the manifest's ``preprocessing`` says, which is *not*
danet-serve's contract. An ``--accept rgb8`` artifact takes ``image``: uint8 HxWx3 per request,
the same tensor danet-serve takes (and with ``--emit mask`` returns the same ``mask``); a static
one takes exactly its export size (Triton's native backends do not resize). Each repository's
notes say which (:func:`danet_deploy.inputs.contract_note`).

Triton rules encoded here: ``max_batch_size`` is 0 unless axis 0 is a dynamic batch on the
input and the output, and then the dims leave the batch out (its value is the artifact's batch
bound, else 8); ``dynamic_batching`` only exists when batches of 2 or more can form; ``-1``
marks a dynamic dim. A model folder is written whole or not at all, and an existing one is
replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, ConfigError
from ..inputs import contract_note
from ..manifest import MANIFEST_NAME, Manifest, atomic_artifact_dir, read_manifest
from ..outputs import emit_from_names
from ..targets import TritonPlatform, engines, get_engine, get_target
from ..targets.options import TargetOptions, option
from ..tensorrt.compat import STAGE_PREPARED
from . import pbtxt
from .pbtxt import Enum

CONFIG_NAME = "config.pbtxt"
DEFAULT_MAX_BATCH = 8


def platforms() -> dict[str, TritonPlatform]:
    """Engine name -> how Triton's native backend serves it, from the registry (``Engine.triton``)."""
    return {engine.name: engine.triton for engine in engines() if engine.triton is not None}


DATA_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float64": "TYPE_FP64",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class TritonOptions(TargetOptions):
    """How the model is served; every field has a default that works for a CPU Triton, and its help
    (``danet-export --list-options --target triton``) says what it sets."""

    name: str | None = option(
        None,
        "model name in the repository (default: <model>_<target>_<precision>, then "
        "_<emit> and _dynamic when they apply)",
    )
    version: int = option(1, "version folder (a positive integer)")
    platform: str = option(
        "auto", "auto (from the manifest), or onnxruntime to serve a prepared TensorRT bundle's ONNX with ONNX Runtime"
    )
    instances: int = option(1, "model instances Triton runs in parallel (instance_group count)")
    kind: str = option(
        "auto",
        "instance kind: auto (GPU for TensorRT and ort_tensorrt, else CPU), cpu or gpu",
        choices=("auto", "cpu", "gpu"),
    )
    gpus: tuple[int, ...] = option((), "GPU indices of a GPU instance group (default: all)")
    max_batch_size: int | None = option(
        None, "largest batch Triton forms (dynamic-batch artifacts; default: the artifact's batch bound, else 8)"
    )
    dynamic_batching: bool = option(True, "let Triton merge requests into batches (dynamic-batch artifacts)")
    max_queue_delay_us: int = option(100, "how long a request may wait for others to form a batch")
    preferred_batch_sizes: tuple[int, ...] = option((), "batch sizes the scheduler aims for")
    threads: int | None = option(None, "intra-op threads per instance (ONNX Runtime, OpenVINO)")
    streams: int | None = option(None, "OpenVINO NUM_STREAMS per instance")
    ort_tensorrt: bool = option(False, "run the ONNX Runtime backend with its TensorRT accelerator (GPU)")
    ort_tensorrt_fp16: bool = option(False, "let that accelerator use FP16 kernels")

    def __post_init__(self) -> None:
        if self.name is not None and (not _NAME.fullmatch(self.name) or len(self.name) > 128):
            raise ConfigError(
                f"Triton model name {self.name!r} must be letters, digits, '_', '.', '-' (not starting "
                "with '.' or '-'), at most 128 characters"
            )
        for key in ("version", "instances"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"Triton option {key} must be a positive integer, got {getattr(self, key)!r}")
        for key in ("max_batch_size", "threads", "streams"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < (0 if key == "max_batch_size" else 1)):
                raise ConfigError(f"Triton option {key} must be a positive integer, got {value!r}")
        if not isinstance(self.max_queue_delay_us, int) or self.max_queue_delay_us < 0:
            raise ConfigError(f"Triton option max_queue_delay_us must be >= 0, got {self.max_queue_delay_us!r}")
        if self.platform not in ("auto", *platforms()):
            raise ConfigError(f"Triton platform {self.platform!r} is not one of auto, {', '.join(platforms())}")
        if self.kind not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"Triton instance kind {self.kind!r} must be auto, cpu or gpu")
        if any(not isinstance(g, int) or g < 0 for g in self.gpus):
            raise ConfigError(f"Triton gpus must be GPU indices >= 0, got {self.gpus!r}")
        if any(not isinstance(b, int) or b < 1 for b in self.preferred_batch_sizes):
            raise ConfigError(f"Triton preferred_batch_sizes must be positive, got {self.preferred_batch_sizes!r}")
        if self.ort_tensorrt_fp16 and not self.ort_tensorrt:
            raise ConfigError("ort_tensorrt_fp16 applies with ort_tensorrt=true only")

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> TritonOptions:
        """Options from ``KEY=VALUE`` strings (``danet-export --option``), typed by the fields."""
        return cls.parse(values, "triton")


@dataclass
class TritonRepository:
    """What :func:`write_triton_repository` wrote."""

    repository: Path
    model_dir: Path
    version_dir: Path
    name: str
    platform: str
    config: str
    pending: str | None = None  # what must still happen before Triton can load it
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            "model": self.name,
            "version_dir": str(self.version_dir),
            "platform": self.platform,
            "pending": self.pending,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{self.model_dir}  platform={self.platform} version={self.version_dir.name}"]
        lines += [f"note: {note}" for note in self.notes]
        if self.pending:
            lines.append(f"pending: {self.pending}")
        return "\n".join(lines)


@dataclass
class _Plan:
    name: str
    platform: str  # the engine whose Triton backend serves it (a key of platforms())
    config: dict[str, Any]
    renames: dict[str, str]  # artifact file name -> version-folder name
    primary: str
    pending: str | None
    notes: list[str]


def _dims(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def _data_type(dtype: str | None, what: str) -> Enum:
    dtype = dtype or "float32"
    if dtype not in DATA_TYPES:
        raise ArtifactError(f"the manifest's {what} dtype {dtype!r} has no Triton data type; re-export the artifact")
    return Enum(DATA_TYPES[dtype])


def _bundle(manifest: Manifest) -> dict[str, Any]:
    """A two-stage target's own metadata (a TensorRT bundle's stage and profiles), else ``{}``."""
    value = manifest.extra.get(manifest.target) if isinstance(manifest.extra, dict) else None
    return value if isinstance(value, dict) else {}


def _platform(manifest: Manifest, options: TritonOptions) -> tuple[str, bool]:
    """(engine whose Triton backend serves it, whether it is a prepared bundle awaiting its engine)."""
    served = platforms()
    prepared = _bundle(manifest).get("stage") == STAGE_PREPARED
    natural = get_target(manifest.target).engine if prepared else manifest.backend
    if natural not in served:
        raise ConfigError(
            f"a {manifest.backend!r} artifact cannot be served by Triton's native backends; export "
            f"for {' or '.join(served)} first (danet-serve serves any artifact with PyTriton)"
        )
    wanted = natural if options.platform == "auto" else options.platform
    if wanted != natural and not (wanted == manifest.backend and prepared):
        raise ConfigError(
            f"a {manifest.target}/{manifest.backend} artifact is served by Triton's {natural} backend, "
            f"not {wanted}; export the artifact for {wanted} instead"
        )
    return wanted, prepared and wanted == natural


def _max_batch(manifest: Manifest, options: TritonOptions) -> int | None:
    """The batch limit the artifact was built or planned for, else None."""
    bounds: Any = manifest.input.max_shape
    if not bounds:
        profiles = _bundle(manifest).get("profiles") or []
        bounds = profiles[0].get("max") if profiles else None
    return int(bounds[0]) if bounds else None


def default_name(manifest: Manifest) -> str:
    """``<model>_<target>_<precision>``, then what else changes the served model's I/O: ``_<emit>``
    for in-graph masks (danet-export --emit) and ``_dynamic`` for dynamic shapes, so repositories of
    one model exported two ways do not collide on one name."""
    parts = [manifest.model.name, manifest.target, manifest.precision]
    emit = emit_from_names(list(manifest.output.names))
    if emit != "logits":  # danet-export's default --emit keeps the plain name
        parts.append(emit.replace("-", "_"))
    if not all(isinstance(d, int) and d > 0 for d in manifest.input.shape):
        parts.append("dynamic")
    return "_".join(parts)


def plan_model(manifest: Manifest, options: TritonOptions) -> _Plan:
    """The model configuration and file layout for ``manifest`` (pure: reads nothing from disk)."""
    platform, pending_engine = _platform(manifest, options)
    spec = platforms()[platform]
    engine = get_engine(platform)
    label = engine.label
    model_file = spec.model_file
    name = options.name or default_name(manifest)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"derived model name {name!r} is not a valid Triton name; pass name=...")
    notes: list[str] = [contract_note(manifest.input)]

    in_shape = list(manifest.input.shape)
    # every tensor the graph emits (logits, or an in-graph mask with or without logits: --emit)
    outputs = manifest.output.emitted_tensors
    batch_dynamic = not (isinstance(in_shape[0], int) and in_shape[0] > 0)
    if batch_dynamic:
        if any(isinstance(t.shape[0], int) and t.shape[0] > 0 for t in outputs):
            raise ArtifactError("the manifest's input batch axis is dynamic but its output's is not; re-export")
        limit = _max_batch(manifest, options)
        max_batch = options.max_batch_size or limit or DEFAULT_MAX_BATCH
        if limit is not None and max_batch > limit:
            raise ConfigError(
                f"max_batch_size {max_batch} exceeds the artifact's batch bound {limit} (its profile / "
                "attention plan); re-export with a larger --max-batch"
            )
        if spec.needs_profile and limit is None:
            raise ArtifactError(f"a dynamic {label} artifact must record its profile's max shape; re-prepare it")
        in_dims, out_dims = _dims(in_shape[1:]), [_dims(list(t.shape)[1:]) for t in outputs]
        if max_batch == 1:  # Triton's default of 8 does not apply: the artifact was bounded to batch 1
            notes.append(
                "max_batch_size 1: the artifact's batch bound is 1 (danet-export --max-batch, default 1), so "
                "Triton cannot batch requests and no dynamic_batching is written; re-export with --dynamic "
                "--max-batch 8 to let it batch"
            )
    else:
        if options.max_batch_size:
            raise ConfigError(
                f"the artifact has a static batch of {in_shape[0]}: Triton cannot batch it "
                "(max_batch_size 0); re-export with --dynamic to let Triton batch requests"
            )
        max_batch = 0
        in_dims, out_dims = _dims(in_shape), [_dims(list(t.shape)) for t in outputs]
    for size in options.preferred_batch_sizes:
        if size > max(max_batch, 1):
            raise ConfigError(f"preferred batch size {size} exceeds max_batch_size {max_batch}")

    if options.ort_tensorrt and not spec.gpu_accelerator:
        accelerated = [name for name, p in platforms().items() if p.gpu_accelerator]
        raise ConfigError(f"ort_tensorrt applies to the {' or '.join(accelerated)} platform (ONNX artifacts) only")
    kind = options.kind
    if kind == "auto":
        kind = "gpu" if spec.instance_kind == "gpu" or options.ort_tensorrt else "cpu"
    if spec.instance_kind != "any" and kind != spec.instance_kind:
        raise ConfigError(
            f"the Triton {label} backend runs {spec.instance_kind.upper()} instances only (kind={spec.instance_kind})"
        )
    if options.ort_tensorrt and kind != "gpu":
        raise ConfigError("ort_tensorrt runs on GPU instances (kind=gpu)")
    if options.gpus and kind != "gpu":
        raise ConfigError("gpus applies to GPU instances (kind=gpu)")

    parameters: dict[str, str] = {}
    if options.threads is not None:
        if spec.threads_parameter is None:
            raise ConfigError(f"threads does not apply to {label} models (their backend has no thread setting)")
        parameters[spec.threads_parameter] = str(options.threads)
    if options.streams is not None:
        if spec.streams_parameter is None:
            with_streams = [get_engine(name).label for name, p in platforms().items() if p.streams_parameter]
            raise ConfigError(f"streams applies to the {' or '.join(with_streams)} backend only")
        parameters[spec.streams_parameter] = str(options.streams)

    group: dict[str, Any] = {"count": options.instances, "kind": Enum(f"KIND_{kind.upper()}")}
    if options.gpus:
        group["gpus"] = list(options.gpus)
    config: dict[str, Any] = {
        "name": name,
        spec.config_field: spec.name,
        "max_batch_size": max_batch,
        "input": [
            {"name": manifest.input.name, "data_type": _data_type(manifest.input.dtype, "input"), "dims": in_dims}
        ],
        "output": [
            {"name": t.name, "data_type": _data_type(t.dtype, "output"), "dims": dims}
            for t, dims in zip(outputs, out_dims)
        ],
        "version_policy": {"specific": {"versions": [options.version]}},
        "instance_group": [group],
    }
    if max_batch > 1 and options.dynamic_batching:
        config["dynamic_batching"] = {
            "preferred_batch_size": list(options.preferred_batch_sizes) or None,
            "max_queue_delay_microseconds": options.max_queue_delay_us,
        }
    if parameters:
        config["parameters"] = [{"key": k, "value": {"string_value": v}} for k, v in parameters.items()]
    if options.ort_tensorrt:
        accel: dict[str, Any] = {"name": "tensorrt"}  # Triton's name for ORT's TensorRT execution provider
        accel["parameters"] = [{"key": "precision_mode", "value": "FP16" if options.ort_tensorrt_fp16 else "FP32"}]
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accel]}}

    renames = {manifest.primary: model_file}
    if engine.weights_suffix:
        renames[str(Path(manifest.primary).with_suffix(engine.weights_suffix))] = str(
            Path(model_file).with_suffix(engine.weights_suffix)
        )
    if pending_engine:
        renames = {}  # the bundle's files keep their names; model.plan is built beside them
        pending = (
            "build the engine on the serving GPU with the TensorRT version of the Triton container: "
            "danet-export --target tensorrt --from {version_dir} --output ENGINE_DIR, then write the repository "
            "again from ENGINE_DIR with force (or copy ENGINE_DIR/model.engine to {version_dir}/model.plan)"
        )
        notes.append("prepared TensorRT bundle: config written from its metadata; model.plan is not built yet")
    else:
        pending = None
    if not batch_dynamic and in_shape[0] != 1:
        notes.append(f"static batch {in_shape[0]}: every request must carry exactly {in_shape[0]} images")
    primary = renames.get(manifest.primary, manifest.primary)
    return _Plan(
        name=name, platform=platform, config=config, renames=renames, primary=primary, pending=pending, notes=notes
    )


def render_config(manifest: Manifest, options: TritonOptions | None = None) -> str:
    """``config.pbtxt`` text for ``manifest`` (pure; useful to preview)."""
    return pbtxt.dumps(plan_model(manifest, options or TritonOptions()).config)


def parse_config(text: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's own schema (``tritonclient``'s ``model_config_pb2``).

    Raises :class:`ArtifactError` on a field the schema does not know; needs the ``serve`` extra.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(
            "checking config.pbtxt needs tritonclient: pip install 'danet-deploy[serve]'"
        ) from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"config.pbtxt does not parse with Triton's ModelConfig schema: {exc}") from exc


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refusing names that leave ``root`` (absolute, ``..``, or through a symlink)."""
    path = root / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ArtifactError(f"the manifest names {name!r}, which is outside its artifact folder; re-export it")
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ArtifactError(f"{name!r} in {root} resolves outside the folder (a symlink?); re-export it") from None
    return path


def write_triton_repository(
    artifact: str | Path,
    output: str | Path,
    options: TritonOptions | None = None,
    *,
    force: bool = False,
    **fields: Any,
) -> TritonRepository:
    """Write ``output/<name>/config.pbtxt`` and ``output/<name>/<version>/`` for ``artifact``.

    Args:
        artifact: an artifact folder written by danet-export (its manifest and hashes are verified).
        output: the model repository; other models in it are left alone.
        options: a :class:`TritonOptions`; keyword ``fields`` override or replace it.
        force: replace an existing ``output/<name>`` folder (otherwise an error).
    Returns:
        a :class:`TritonRepository` with the paths, the config text and what is still pending.
    """
    opts = dataclasses.replace(options or TritonOptions(), **fields) if fields else (options or TritonOptions())
    source = Path(artifact)
    manifest = read_manifest(source)
    plan = plan_model(manifest, opts)
    text = pbtxt.dumps(plan.config)
    with contextlib.suppress(ImportError):  # the serve extra is absent: the tests check the schema
        parse_config(text)
    repo = Path(output)
    if repo.exists() and not repo.is_dir():
        raise ArtifactError(f"{repo} is a file; pass a folder for the model repository")
    final = repo / plan.name
    if final.exists() and not force:
        raise ArtifactError(
            f"{final} already exists; pass --force (force=True in Python) to replace it, or choose another name="
        )
    for name in manifest.files:
        _inside(source, name)
    version_final = final / str(opts.version)
    pending = plan.pending.format(version_dir=version_final) if plan.pending else None
    with atomic_artifact_dir(final, force=force) as tmp:
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
        version_dir = tmp / str(opts.version)
        version_dir.mkdir()
        for name in manifest.files:
            target = _inside(version_dir, plan.renames.get(name, name))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_inside(source, name), target)
        served = dataclasses.replace(
            manifest,
            primary=plan.primary,
            files={},
            extra={
                **manifest.extra,
                "triton": {
                    "model": plan.name,
                    "version": opts.version,
                    "platform": plan.config.get("platform") or plan.config.get("backend"),
                    "source": str(source),
                    "pending": pending,
                },
            },
        )
        served.hash_files(version_dir)
        served.write(version_dir)
    return TritonRepository(
        repository=repo,
        model_dir=final,
        version_dir=version_final,
        name=plan.name,
        platform=plan.platform,
        config=text,
        pending=pending,
        notes=plan.notes,
    )


@dataclass
class RepositoryModel:
    """One model of a repository: its config text and the version folders danet_deploy can load."""

    name: str
    path: Path
    config: str
    versions: dict[int, Path]

    def latest(self) -> Path:
        if not self.versions:
            raise ArtifactError(f"{self.path} has no version folder with a {MANIFEST_NAME}")
        return self.versions[max(self.versions)]


def read_triton_repository(repository: str | Path) -> dict[str, RepositoryModel]:
    """The models of a repository written by :func:`write_triton_repository`, by name.

    Each version folder holds the artifact's files and manifest, so ``runtime.load(model.latest())``
    runs the served model in-process (e.g. to compare a server's answers with).
    """
    repo = Path(repository)
    if not repo.is_dir():
        raise ArtifactError(f"model repository {repo} does not exist or is not a folder")
    models: dict[str, RepositoryModel] = {}
    for config in sorted(repo.glob(f"*/{CONFIG_NAME}")):
        model_dir = config.parent
        versions = {
            int(d.name): d
            for d in model_dir.iterdir()
            if d.is_dir() and d.name.isdigit() and not d.name.startswith("0") and (d / MANIFEST_NAME).is_file()
        }
        models[model_dir.name] = RepositoryModel(
            name=model_dir.name, path=model_dir, config=config.read_text(encoding="utf-8"), versions=versions
        )
    if not models:
        raise ArtifactError(f"{repo} holds no model folder with a {CONFIG_NAME}")
    return models


def export_repository(
    artifact: str | Path, output: str | Path | None, options: TritonOptions, *, force: bool = False, log: Any = None
) -> TritonRepository:
    """``danet-export --target triton --from ARTIFACT -o REPO`` (the registry's ``from_builder``)."""
    if not output:
        raise ConfigError("--target triton writes a model repository: pass --output REPO_DIR")
    result = write_triton_repository(artifact, output, options, force=force)
    if log is not None:
        log(f"wrote {result.model_dir} ({result.platform})")
    return result
