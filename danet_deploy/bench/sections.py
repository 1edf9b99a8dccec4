"""Typed records for the surroundings of a ``danet-bench`` report: ``machine``, ``config``, ``summary``.

Why records: the table, Markdown, plots and profile readers all read the same facts (the CPU's
features, the input size, the best engine per precision); a record validates them once, when the
report is read, so a hand-edited report is a :class:`~danet_deploy.errors.ConfigError` naming the key
path (``machine.cpu.logical_cores``) instead of a ``KeyError`` inside a reader.

Why each record also keeps the JSON it was read from (``raw``): a report's sections carry keys that
older or newer runs wrote (``config.progress``, ``config.profile``, library versions), and
:meth:`to_dict` writes them back exactly (keys, order, values), so the committed result files under
``benchmarks/results`` read back byte for byte. Every typed field may be absent (``None``/empty):
:func:`~danet_deploy.bench.report.validate` has always accepted such sections, and only a present
value of the wrong type is refused.

Why ``config`` is not :class:`~danet_deploy.bench.runner.BenchConfig`: that is a request, and
building one checks the engines against this install's registry and opens ``--data``; a report
written elsewhere (an engine not installed here, a dataset path that is gone) must still read.
``model``, ``gemm``, ``flops`` and ``scenes`` stay mappings on the report: their readers read two
or three keys each and validate them nowhere, and typing them would add refusals for nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from ..errors import ConfigError

_T = TypeVar("_T")
#: The JSON object of a section, as read.
JsonObject = Mapping[str, object]


def _fail(where: str, what: str) -> NoReturn:
    raise ConfigError(f"benchmark report {where} {what}; re-run danet-bench")


def _object(where: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        _fail(where, f"must be an object, got {type(value).__name__}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _opt_str(where: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        _fail(where, f"must be a string or null, got {value!r:.60}")
    return value


def _opt_int(where: str, value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        _fail(where, f"must be an integer or null, got {value!r:.60}")
    return value


def _opt_number(where: str, value: object) -> float | None:
    if value is not None and not _is_number(value):
        _fail(where, f"must be a number or null, got {value!r:.60}")
    return value  # type: ignore[return-value]  # int or float, both read as a number


def _numbers(where: str, value: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        _fail(where, f"must be a list of numbers or null, got {value!r:.60}")
    return tuple(value)


def _strings(where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(where, f"must be a list of strings, got {value!r:.60}")
    return tuple(value)


def _str_map(where: str, value: object, kind: type[_T], what: str) -> dict[str, _T]:
    if value is None:
        return {}
    data = _object(where, value)
    bad = [k for k, v in data.items() if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool))]
    if bad:
        _fail(f"{where}.{bad[0]}", f"must be {what}, got {data[bad[0]]!r:.60}")
    return dict(data)  # type: ignore[arg-type]  # every value checked above


@dataclass(frozen=True)
class _Section:
    """The JSON a section was read from; :meth:`to_dict` writes it back unchanged (a copy)."""

    raw: JsonObject = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        return copy.deepcopy(dict(self.raw))


@dataclass(frozen=True)
class CpuInfo:
    """``machine.cpu``: what :func:`~danet_deploy.bench.machine.cpu_info` records."""

    model: str | None = None
    arch: str | None = None
    features: Mapping[str, bool] = field(default_factory=dict)  # flag -> present (empty: unknown)
    logical_cores: int | None = None
    physical_cores: int | None = None
    affinity_cores: int | None = None

    @property
    def present_features(self) -> list[str]:
        """The flags this CPU has, in the recorded order."""
        return [name for name, present in self.features.items() if present]

    @classmethod
    def parse(cls, data: object, where: str = "machine.cpu") -> CpuInfo:
        data = _object(where, data)
        return cls(
            model=_opt_str(f"{where}.model", data.get("model")),
            arch=_opt_str(f"{where}.arch", data.get("arch")),
            features=_str_map(f"{where}.features", data.get("features"), bool, "true or false"),
            **{k: _opt_int(f"{where}.{k}", data.get(k)) for k in ("logical_cores", "physical_cores", "affinity_cores")},
        )


@dataclass(frozen=True)
class GpuInfo:
    """One of ``machine.gpus``: as ``nvidia-smi`` names it."""

    name: str
    memory: str | None = None
    driver: str | None = None

    @classmethod
    def parse(cls, data: object, where: str) -> GpuInfo:
        data = _object(where, data)
        name = data.get("name")
        if not isinstance(name, str):
            _fail(f"{where}.name", f"must be a string, got {name!r:.60}")
        return cls(
            name, _opt_str(f"{where}.memory", data.get("memory")), _opt_str(f"{where}.driver", data.get("driver"))
        )


@dataclass(frozen=True)
class LoadAverage:
    """``machine.load_average``: the 1/5/15-minute load before and after the rows (null: unknown)."""

    before: tuple[float, ...] | None = None
    after: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, data: object, where: str = "machine.load_average") -> LoadAverage:
        data = _object(where, data)
        return cls(_numbers(f"{where}.before", data.get("before")), _numbers(f"{where}.after", data.get("after")))


@dataclass(frozen=True)
class MachineInfo(_Section):
    """``machine``: what the run ran on (:func:`~danet_deploy.bench.machine.machine_info`)."""

    cpu: CpuInfo = field(default_factory=CpuInfo)
    memory_gib: float | None = None
    gpus: tuple[GpuInfo, ...] = ()
    os: str | None = None
    python: str | None = None
    libraries: Mapping[str, str] = field(default_factory=dict)  # package -> version
    load_average: LoadAverage | None = None

    @classmethod
    def from_dict(cls, data: object, where: str = "machine") -> MachineInfo:
        """The record of a ``machine`` object, or :class:`ConfigError` naming the key path."""
        data = _object(where, data)
        gpus = data.get("gpus")
        if gpus is not None and not isinstance(gpus, list):
            _fail(f"{where}.gpus", f"must be a list, got {type(gpus).__name__}")
        load = data.get("load_average")
        return cls(
            raw=copy.deepcopy(data),
            cpu=CpuInfo.parse(data.get("cpu") or {}, f"{where}.cpu"),
            memory_gib=_opt_number(f"{where}.memory_gib", data.get("memory_gib")),
            gpus=tuple(GpuInfo.parse(g, f"{where}.gpus[{i}]") for i, g in enumerate(gpus or [])),
            os=_opt_str(f"{where}.os", data.get("os")),
            python=_opt_str(f"{where}.python", data.get("python")),
            libraries=_str_map(f"{where}.libraries", data.get("libraries"), str, "a version string"),
            load_average=None if load is None else LoadAverage.parse(load, f"{where}.load_average"),
        )


@dataclass(frozen=True)
class ReportConfig(_Section):
    """``config``: the request the run was made with, as recorded (``BenchConfig.to_dict()``)."""

    model: str | None = None
    engines: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    size: tuple[int, int] | None = None  # (height, width)
    batch: int | None = None
    iters: int | None = None
    warmup: int | None = None
    threads: int | None = None
    rounds: int = 1  # absent in the first reports: one round
    profile: int = 0

    @classmethod
    def from_dict(cls, data: object, where: str = "config") -> ReportConfig:
        """The record of a ``config`` object, or :class:`ConfigError` naming the key path."""
        data = _object(where, data)
        size = data.get("size")
        if size is not None and (
            not isinstance(size, list) or len(size) != 2 or not all(_opt_int(f"{where}.size", d) for d in size)
        ):
            _fail(f"{where}.size", f"must be [height, width], got {size!r:.60}")
        ints = {k: _opt_int(f"{where}.{k}", data.get(k)) for k in ("batch", "iters", "warmup", "threads")}
        rounds = _opt_int(f"{where}.rounds", data.get("rounds"))
        profile = _opt_int(f"{where}.profile", data.get("profile"))
        return cls(
            raw=copy.deepcopy(data),
            model=_opt_str(f"{where}.model", data.get("model")),
            engines=_strings(f"{where}.engines", data.get("engines")),
            precisions=_strings(f"{where}.precisions", data.get("precisions")),
            size=None if size is None else (size[0], size[1]),
            rounds=1 if rounds is None else rounds,
            profile=profile or 0,
            **ints,
        )


@dataclass(frozen=True)
class BestEngine:
    """One entry of ``summary``: the fastest engine of a precision (see ``summarize_best``)."""

    engine: str
    precision: str
    p50_ms: float
    ratio_vs_torch_fp32: float | None = None
    argmax_agreement: float | None = None

    @classmethod
    def parse(cls, data: object, where: str) -> BestEngine:
        data = _object(where, data)
        for key in ("engine", "precision"):
            if not isinstance(data.get(key), str):
                _fail(f"{where}.{key}", f"must be a string, got {data.get(key)!r:.60}")
        p50 = data.get("p50_ms")
        if not _is_number(p50):
            _fail(f"{where}.p50_ms", f"must be a number, got {p50!r:.60}")
        return cls(
            str(data["engine"]),
            str(data["precision"]),
            p50,  # type: ignore[arg-type]  # a number, checked above
            _opt_number(f"{where}.ratio_vs_torch_fp32", data.get("ratio_vs_torch_fp32")),
            _opt_number(f"{where}.argmax_agreement", data.get("argmax_agreement")),
        )


@dataclass(frozen=True)
class Summary(_Section):
    """``summary``: per key (``fp32``, ``fp16``, ``int8``, ``int8_at_99``) the best engine, or ``None``
    when none ran."""

    best: Mapping[str, BestEngine | None] = field(default_factory=dict)

    def get(self, key: str) -> BestEngine | None:
        """The best engine under ``key``, ``None`` when none ran or the key is absent."""
        return self.best.get(key)

    @classmethod
    def from_dict(cls, data: object, where: str = "summary") -> Summary:
        """The record of a ``summary`` object, or :class:`ConfigError` naming the key path."""
        data = _object(where, data)
        return cls(
            raw=copy.deepcopy(data),
            best={k: None if v is None else BestEngine.parse(v, f"{where}.{k}") for k, v in data.items()},
        )
