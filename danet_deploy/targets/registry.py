"""The one place that knows what each export target and runtime engine is.

Like Ultralytics' ``export_formats()`` table, one declaration per target drives the CLI choices,
validation, ``--help``, the benchmark's rows and the runtime loader's suffix map; like timm's
``register_model``, adding one touches no central file: a module that calls
:func:`register_target` (and :func:`register_engine` for a new runtime backend) is enough.

Two kinds of entries:
    * :class:`Target`: what ``danet-export --target NAME`` writes (precisions, files, the
      packages and pip extra it needs, its typed options, the builder that does the work);
    * :class:`Engine`: a runtime backend that runs artifacts (``danet_deploy.runtime.load``),
      and the rows of ``danet-bench`` (an engine x a precision, exported by the target that
      runs on that engine at that precision).

This module imports nothing heavier than the standard library: the runtime reads it on a robot
without torch. Builders and backend classes are named as ``"module:attribute"`` strings and
imported only when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendUnavailableError, ConfigError
from .options import TargetOptions, suggest

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")
#: The calibration method each precision uses when ``--calib-method`` is not given (recorded in
#: the manifest). Min/max: deterministic, cheap, and its ranges can be merged batch by batch;
#: entropy/percentile are opt-in where a target supports them.
DEFAULT_CALIB_METHOD: dict[str, str] = {"int8": "minmax"}
#: Other spellings of the same method (ModelOpt/TensorRT say "max").
CALIB_ALIASES = {"max": "minmax"}


@dataclass(frozen=True)
class Requirement:
    """A Python package a target or engine imports (``module``) and how to install it (``pip``)."""

    module: str
    pip: str

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False


@dataclass(frozen=True)
class Target:
    """One ``danet-export --target``.

    Attributes:
        builder: ``"module:function"``; ``function(ctx: ExportContext) -> TargetResult``; ``None`` for a
            target that only turns an existing artifact into another form (``from_builder``).
        engine: the runtime engine its artifacts run on (a benchmark row (engine, precision) is
            exported by the first registered target with that engine and precision).
        suffixes: the primary file(s) it writes.
        requires / extra: packages the export needs and the pip extra that installs them.
        options: the typed options dataclass (``--option KEY=VALUE``), or ``"module:Class"`` for one
            defined in a module this floor must not import (resolved when first used).
        calib_methods: ``--calib-method`` values its INT8 path implements.
        element_limit: the engine refuses tensors above 2^31 - 1 elements (attention planning).
        emits: the ``--emit`` output sets its engine can serve.
        mask_dtype: integer type of an in-graph class mask (``--emit mask``): ``uint8``, or
            ``int32`` for engines without uint8 I/O.
        from_builder: ``"module:function"`` for ``--from SOURCE`` (a second stage that turns an
            existing artifact into this target's): ``function(source, output, options, *, force, log)``
            returning what it wrote (printed by the CLI; ``to_dict()`` for ``--json``).
        budget_method: how its INT8 path meets ``--max-accuracy-drop`` (recorded in the manifest);
            empty when it does not.
    """

    name: str
    summary: str
    builder: str | None
    engine: str
    precisions: tuple[str, ...]
    suffixes: tuple[str, ...]
    requires: tuple[Requirement, ...] = ()
    extra: str = ""
    options: type[TargetOptions] | str = TargetOptions
    calib_methods: tuple[str, ...] = ()
    element_limit: bool = False
    mask_dtype: str = "uint8"
    emits: tuple[str, ...] = ("logits", "mask", "both", "mask-lowres")
    from_builder: str | None = None
    budget_method: str = ""

    def check_buildable(self) -> None:
        """Refuse, before any work, a target that only converts an existing artifact."""
        if self.builder is None:
            raise ConfigError(f"--target {self.name} works on an existing artifact: pass --from ARTIFACT_DIR")

    def check_precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision not in self.precisions:
            others = [t.name for t in targets() if precision in t.precisions and t.builder is not None]
            raise ConfigError(
                f"--target {self.name} writes {'/'.join(self.precisions)} only; for {precision} use "
                f"--target {' or '.join(others) if others else '(none registered)'}"
            )

    def calib_method(self, precision: str, requested: str | None) -> str | None:
        """The calibration method for ``precision`` (the documented default unless ``requested``)."""
        if requested is None:
            return DEFAULT_CALIB_METHOD.get(precision) if self.calib_methods else None
        method = CALIB_ALIASES.get(requested.strip().lower(), requested.strip().lower())
        if precision != "int8":
            raise ConfigError(f"--calib-method applies to --precision int8, not {precision}")
        if method not in self.calib_methods:
            raise ConfigError(
                f"--target {self.name} calibrates with {', '.join(self.calib_methods)}, not "
                f"{requested!r}{suggest(method, self.calib_methods)}"
            )
        return method

    @property
    def options_class(self) -> type[TargetOptions]:
        if isinstance(self.options, str):
            return resolve(self.options, f"the options of target {self.name!r}")
        return self.options

    def parse_options(self, values: dict[str, Any] | None, also: tuple[str, ...] = ()) -> TargetOptions:
        return self.options_class.parse(values, self.name, also)

    def missing(self) -> list[Requirement]:
        return [r for r in self.requires if not r.installed()]

    def check_installed(self) -> None:
        """Fail before any work when a package the target needs is absent."""
        missing = self.missing()
        if missing:
            names = ", ".join(r.pip for r in missing)
            # torch goes with its pin in the same command: the extra's range alone lets pip pick a CUDA build
            pinned = "".join(f"{r.pip} " for r in missing if r.module == "torch")
            raise BackendUnavailableError(
                f"--target {self.name} needs {names}: pip install {pinned}'danet-deploy[{self.extra}]'"
                if self.extra
                else f"--target {self.name} needs {names}: pip install {names}"
            )

    def load_builder(self) -> Callable[..., Any]:
        self.check_buildable()
        assert self.builder is not None  # check_buildable refused a None builder
        return resolve(self.builder, f"target {self.name!r}")


@dataclass(frozen=True)
class TritonPlatform:
    """How NVIDIA Triton's native backend serves an engine's model file (``danet-export --target
    triton`` reads it, so a new engine that Triton can serve touches no serving code).

    Attributes:
        config_field: the ``config.pbtxt`` key that names it (``platform`` or ``backend``).
        name: Triton's name for it (``onnxruntime_onnx``, ``openvino``, ``tensorrt_plan``).
        model_file: the file name the backend loads from a version folder.
        instance_kind: ``cpu`` or ``gpu`` when its backend runs only that kind, else ``any``.
        threads_parameter / streams_parameter: backend parameter for intra-op threads / streams
            (``None``: the backend has none).
        gpu_accelerator: offers ONNX Runtime's TensorRT execution accelerator.
        needs_profile: a dynamic model must state its largest shape (TensorRT's profile).
    """

    config_field: str
    name: str
    model_file: str
    instance_kind: str = "any"
    threads_parameter: str | None = None
    streams_parameter: str | None = None
    gpu_accelerator: bool = False
    needs_profile: bool = False


@dataclass(frozen=True)
class Engine:
    """One runtime backend (``danet_deploy.runtime.load(..., backend=NAME)``) and benchmark engine.

    Attributes:
        implementation: ``"module:Class"`` of its :class:`~danet_deploy.runtime.backends.base.Backend`.
        suffixes: bare model files it opens without a manifest.
        reference: THE reference: runs presets and checkpoints directly and is the FP32 yardstick
            of parity and bench (exactly one engine).
        runs_presets: runs presets and checkpoints directly, without an exported artifact (the
            reference does; so does a peer such as ``torch-compile``, which is not the yardstick).
        needs_gpu: cannot run without an NVIDIA GPU (the bench reports it as unsupported).
        weights_suffix: a weights file its model file loads beside it without naming it (OpenVINO's
            ``.bin``): held to the manifest's rules and copied into Triton repositories with it.
        triton: how Triton's native backend serves its model files (``None``: it cannot).
    """

    name: str
    label: str
    implementation: str
    suffixes: tuple[str, ...] = ()
    requires: tuple[Requirement, ...] = ()
    extra: str = ""
    reference: bool = False
    runs_presets: bool = False
    needs_gpu: bool = False
    color: str = "#7f7f7f"
    weights_suffix: str | None = None
    triton: TritonPlatform | None = None


_TARGETS: dict[str, Target] = {}
_ENGINES: dict[str, Engine] = {}
_loaded = False


#: Entry-point group through which installed packages add targets and engines (their module
#: calls :func:`register_target` / :func:`register_engine` when imported).
PLUGIN_GROUP = "danet_deploy.targets"


def _builtin() -> None:
    """Register the built-in entries, then installed plugins, on first use (not at import time:
    they import this module)."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("danet_deploy.targets.builtin")
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGIN_GROUP):
            try:
                entry.load()
            except Exception as exc:
                import warnings

                warnings.warn(f"danet-deploy plugin {entry.name!r} ({entry.value}) failed to load: {exc}", stacklevel=2)


def _register(table: dict[str, Any], kind: str, entry: Any, replace: bool) -> Any:
    _builtin()
    if entry.name in table and not replace:
        raise ConfigError(f"{kind} {entry.name!r} is already registered")
    table[entry.name] = entry
    return entry


def register_target(target: Target, replace: bool = False) -> Target:
    """Add a target; its name appears in ``danet-export --target``, the bench and ``--help``."""
    return _register(_TARGETS, "target", target, replace)


def register_engine(engine: Engine, replace: bool = False) -> Engine:
    """Add a runtime engine; ``runtime.load`` opens its suffixes and the bench can time it."""
    return _register(_ENGINES, "engine", engine, replace)


def unregister(name: str) -> None:
    """Remove a target and/or engine of that name (tests, plugins that replace an entry)."""
    _TARGETS.pop(name, None)
    _ENGINES.pop(name, None)


def targets() -> list[Target]:
    _builtin()
    return list(_TARGETS.values())


def target_names() -> list[str]:
    return [t.name for t in targets()]


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    _builtin()
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}{suggest(name, table)}; choose one of {', '.join(table)}")
    return table[name]


def get_target(name: str) -> Target:
    return _lookup(_TARGETS, name, "target")


def engines() -> list[Engine]:
    _builtin()
    return list(_ENGINES.values())


def engine_names() -> list[str]:
    return [e.name for e in engines()]


def get_engine(name: str) -> Engine:
    return _lookup(_ENGINES, name, "backend")


def reference_engine() -> Engine:
    """The engine that runs presets/checkpoints directly (the FP32 yardstick)."""
    return next(e for e in engines() if e.reference)


def engine_for_suffix(suffix: str) -> Engine | None:
    """The engine that opens a bare model file with this suffix (``.onnx``, ``.xml`` ...)."""
    suffix = suffix.lower()
    return next((e for e in engines() if suffix in e.suffixes), None)


def target_for(engine: str, precision: str) -> Target | None:
    """The export target whose artifacts run on ``engine`` at ``precision`` (``None``: none does)."""
    return next((t for t in targets() if t.engine == engine and precision in t.precisions), None)


def resolve(spec: str, what: str) -> Any:
    """Import ``"module:attribute"`` (a builder or backend class) with a clear error when it cannot."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("danet_deploy"):
            raise ConfigError(f"{what} is not available in this danet-deploy build ({module_name})") from exc
        raise BackendUnavailableError(f"{what} needs {exc.name!r}, which is not installed") from exc
    return getattr(module, attr)


@dataclass
class TargetTable:
    """The registry as rows, for ``danet-export --list-targets`` and the README."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def current(cls) -> TargetTable:
        return cls(
            [
                {
                    "target": t.name,
                    "precisions": ",".join(t.precisions),
                    "engine": t.engine,
                    "files": ",".join(t.suffixes),
                    "extra": t.extra,
                    "installed": not t.missing(),
                    "summary": t.summary,
                }
                for t in targets()
            ]
        )

    def text(self) -> str:
        lines = []
        for r in self.rows:
            state = "" if r["installed"] else f"  [needs pip install 'danet-deploy[{r['extra']}]']"
            lines.append(f"{r['target']:12s} {r['precisions']:15s} -> {r['engine']:12s} {r['summary']}{state}")
        return "\n".join(lines)
