"""The backend contract (:class:`Backend`): load / infer / close. Everything else lives once, in ``Session``.

Which backends exist is declared in :mod:`danet_deploy.targets` (``register_engine``).

A backend receives an already validated, contiguous float32 NCHW array that fits its input
spec (the uint8 NHWC image batch of an ``--accept`` artifact, whose graph normalises it), and returns float32
NCHW logits. It must not import torch unless it *is* the torch backend.
Backend modules import their library lazily (inside ``__init__``) and raise
:class:`~danet_deploy.errors.BackendUnavailableError` naming the pip package when it is missing.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import BackendUnavailableError, ConfigError
from ...extras import PACKAGES, install_hint
from ...manifest import Manifest
from ...manifest_sections import InputInfo
from ...outputs import emit_from_names
from ...targets import engine_names, get_engine, resolve
from ...targets.options import Options, option
from ...util.counts import is_count

MAX_THREADS = 256


def _check_threads(threads: int) -> None:
    # each engine reads 0 or a negative count its own way (ONNX Runtime: "all cores"; torch: an error),
    # and thousands of threads took minutes to start on a 2-core machine
    if not is_count(threads, 1, MAX_THREADS):
        raise ConfigError(
            f"threads must be a whole number in 1..{MAX_THREADS} (or None for the engine's default), "
            f"got {threads!r:.40}"
        )


@dataclass(frozen=True)
class EngineOptions(Options):
    """Base of every runtime engine's options (``runtime.load(path, **options)``), parsed like target options.

    Each backend declares its own subclass beside it (``OpenVINOEngineOptions`` ...) and names it
    as :attr:`Backend.options_class`; :meth:`~danet_deploy.targets.options.Options.parse` types
    the keyword arguments (``"2"`` from a command line and ``2`` from Python alike), checks
    allowed values, and refuses an option the engine does not declare, naming the valid ones.

    ``threads`` is here because one option set fits every engine (the benchmark, serving and
    ``danet-run --threads`` pass it to whichever engine runs): an engine that computes on a GPU
    accepts it and ignores it.
    """

    threads: int | None = option(None, "intra-op CPU threads (default: the engine's own)", check=_check_threads)

    where_text = "the {owner} backend's option {key}"
    unknown_text = "the {owner} backend has no option {key!r}{hint}; valid: {valid}"


@dataclass(frozen=True)
class InputSpec:
    """The network input: name, shape (``None`` for a dynamic dim), dtype and profile bounds.

    ``min_shape``/``max_shape`` bound dynamic dims where the engine has limits (TensorRT
    optimisation profiles); ``None`` means unbounded. ``layout`` is ``NCHW`` (float tensors) or
    ``NHWC`` (the uint8 image of an ``--accept`` graph).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = "NCHW"

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """The fixed (H, W) if height and width are static, else ``None``."""
        h, w = (self.shape[1], self.shape[2]) if self.layout == "NHWC" else (self.shape[2], self.shape[3])
        return (h, w) if h is not None and w is not None else None

    @property
    def static_batch(self) -> int | None:
        return self.shape[0]

    @classmethod
    def from_manifest(
        cls, info: InputInfo, name: str | None = None, shape: Sequence[object] | None = None
    ) -> InputSpec:
        """The spec of a manifest's ``input`` record; ``name`` and ``shape`` are what the loaded graph
        says (they win over the manifest's); a dim that is not a positive integer is dynamic (``None``)."""
        dims = info.shape if shape is None else shape
        return cls(
            name=info.name if name is None else name,
            shape=tuple(d if isinstance(d, int) and d > 0 else None for d in dims),
            dtype=info.dtype,
            min_shape=info.min_shape,
            max_shape=info.max_shape,
            opt_shape=info.opt_shape,
            layout=info.layout,
        )


class Backend(abc.ABC):
    """One inference engine: the contract every runtime backend implements.

    A backend is constructed as ``Backend(model_file, manifest, **options)``: ``model_file`` is
    the artifact's primary file (``None`` for a reference preset), ``manifest`` its verified
    manifest (``None`` for a bare file: the backend builds one from the file's own metadata).
    Options are the fields of its :attr:`options_class`; ``__init__`` turns the keywords into
    that dataclass with :meth:`parse_options` before any work, so an unknown or badly typed one
    is a :class:`ConfigError` naming it (no ``**kwargs`` that swallow typos).

    After construction ``manifest`` and ``input_spec`` are set. ``infer`` and ``close`` are
    required; ``infer_many`` (an asynchronous request queue) and ``infer_timed`` (device-side
    timers) have plain defaults, and ``async_queue`` / ``device_timers`` say whether a backend
    has the real thing (the benchmark reports them only then).
    """

    name: str = "backend"
    #: the typed options this backend takes, declared beside it
    options_class: ClassVar[type[EngineOptions]] = EngineOptions
    #: what ``__init__`` parsed (an instance of :attr:`options_class`)
    options: EngineOptions
    manifest: Manifest
    input_spec: InputSpec
    #: ``infer_many`` overlaps requests on the engine (OpenVINO async infer requests ...)
    async_queue: bool = False
    #: ``infer_timed`` measures phases on the device (CUDA events ...)
    device_timers: bool = False

    @abc.abstractmethod
    def __init__(self, model_file: Path | None, manifest: Manifest | None, **options: Any) -> None:
        """Load the engine; set :attr:`manifest` and :attr:`input_spec`."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW -> the graph's first output (float32 logits ``[N, classes, H, W]``, or the
        integer mask ``[N, H, W]`` of a ``--emit mask`` artifact)."""

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name (``logits``, ``mask``, ``logits_lowres``: see
        :mod:`danet_deploy.outputs`); the default is the one output ``infer`` returns."""
        return {self.manifest.output.names[0]: self.infer(batch)}

    def infer_many(self, batches: Sequence[np.ndarray], jobs: int | None = None) -> list[np.ndarray]:
        """Logits for several batches; the default runs them one after another."""
        return [self.infer(b) for b in batches]

    def parallel_requests(self) -> int:
        """How many calls may usefully run on the engine at once (OpenVINO: its optimal number of
        infer requests, 1 under the latency hint); ``Session.stream`` runs that many engine workers.
        The default, 1, suits engines whose one call already uses every core (ONNX Runtime, torch)."""
        return 1

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """``(logits, {phase: ms})``; the default times the whole call on the host."""
        start = time.perf_counter()
        out = self.infer(batch)
        return out, {"total": (time.perf_counter() - start) * 1000.0}

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release engine memory; the default holds nothing."""

    def describe(self) -> dict[str, Any]:
        """Facts for reports (device, threads, providers...)."""
        return {"backend": self.name}

    @classmethod
    def presets(cls) -> list[str]:
        """Names this backend runs without an artifact (the reference model presets); none by default."""
        return []

    @classmethod
    def option_names(cls) -> list[str]:
        """The keyword options ``__init__`` accepts (the fields of :attr:`options_class`)."""
        return cls.options_class.names()

    @classmethod
    def parse_options(cls, values: Mapping[str, Any] | None) -> EngineOptions:
        """``values`` as this backend's typed options (a :class:`ConfigError` naming a bad one)."""
        return cls.options_class.parse(values, cls.name)


def bare_output_entry(names: Sequence[str], shapes: Sequence[Sequence[Any]], dtypes: Sequence[str]) -> dict[str, Any]:
    """The manifest ``output`` entry of a bare model file, from its graph's outputs."""
    tensors = [{"name": n, "shape": list(s), "dtype": d} for n, s, d in zip(names, shapes, dtypes)]
    return {**tensors[0], "emit": emit_from_names(list(names)), "tensors": tensors}


def as_output(array: np.ndarray) -> np.ndarray:
    """An engine output as the runtime hands it on: float outputs as float32, integer masks as they are."""
    return array.astype(np.float32, copy=False) if np.issubdtype(array.dtype, np.floating) else array


def available_backends() -> list[str]:
    return engine_names()


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (imported only now, so missing libraries fail late and clearly)."""
    return resolve(get_engine(name).implementation, f"backend {name!r}")


def require(module: str, pip_name: str, backend: str) -> Any:
    """Import a backend library or raise a clear :class:`BackendUnavailableError` (naming the
    danet-deploy extra that installs it when one does: :mod:`danet_deploy.extras`)."""
    try:
        return import_module(module)
    except ImportError as exc:
        hint = install_hint(module) if module.partition(".")[0] in PACKAGES else f"pip install {pip_name}"
        raise BackendUnavailableError(f"the {backend} backend needs the '{pip_name}' package: {hint} ({exc})") from exc
