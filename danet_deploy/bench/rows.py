"""One benchmark row (an engine x a precision) as a typed record.

The JSON, CSV and Markdown writers derive their fields from :class:`Row`; what a run needs only
while it measures (the masks for the accuracy columns, how to load the model) lives in
:class:`RowRun`, never in the row that is written out.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ConfigError

#: The status of a written row (``"pending"`` exists only while the benchmark runs).
STATUSES = ("ok", "failed", "unsupported")
#: Row fields that hold lists or dicts: in the JSON only, not in the CSV.
_NESTED = {
    "latencies_ms",
    "engine_info",
    "device_timing",
    "device_timing_rounds",
    "device_memory",
    "device_memory_rounds",
    "profile",
    "ratio_rounds",
}


@dataclass
class Row:
    """What the report says about one combination (see :mod:`.report` for each field's meaning)."""

    engine: str  # the runtime engine that ran it (danet-bench --engines)
    precision: str
    export_target: str | None  # the danet-export target that wrote its artifact
    batch: int
    threads: int
    status: str = "pending"  # "ok" | "failed" | "unsupported" once written
    reason: str | None = None
    artifact: str | None = None
    reused_artifact: bool | None = None
    file_size_mb: float | None = None
    export_s: float | None = None
    load_s: float | None = None
    compile_s: float | None = None  # just-in-time compilation (torch.compile), not in any latency
    rounds: int = 0
    iters: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    throughput_ips: float | None = None
    async_throughput_ips: float | None = None
    async_error: str | None = None
    peak_rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    argmax_agreement: float | None = None
    miou_vs_reference: float | None = None
    miou_vs_labels: float | None = None
    gflops_achieved: float | None = None
    gemm_peak_gflops: float | None = None
    gemm_efficiency: float | None = None
    gemm_note: str | None = None  # why gemm_efficiency is null (no yardstick, or above it)
    ratio_vs_torch_fp32: float | None = None
    ratio_rounds: list[float] = field(default_factory=list)  # round k's p50 / the reference's round-k p50
    engine_info: dict[str, Any] | None = None  # the backend's describe(): providers, threads, versions
    latencies_ms: list[float] = field(default_factory=list)
    device_timing: dict[str, Any] | None = None
    device_timing_rounds: list[dict[str, Any]] = field(default_factory=list)
    device_memory: dict[str, Any] | None = None
    device_memory_rounds: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None  # per-op profile (danet-bench --profile, bench.profile)

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.precision}"

    def update(self, **values: Any) -> None:
        """Set known fields (an unknown name is a bug, not data: it raises)."""
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(f"Row has no field {key!r}")
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The row as the report's JSON holds it: every field, in declaration order (null when unknown)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        """A row read back from a report (schema v5: :func:`~danet_deploy.bench.report.upgrade_report`
        renames a v3 one first).

        Why strict: a row that lacks a column, carries a key no row has or holds a value of another
        type was written by something else (or edited), and tables, plots and ratios computed from it
        would be silently wrong. Every scalar (CSV) column is required; the nested ones may be missing
        (their defaults). Any value but the row's engine, precision and status may be null ("unknown", as the schema
        says; a null list reads as empty). A problem is a :class:`~danet_deploy.errors.ConfigError`
        naming the field.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a benchmark row must be an object, got {type(data).__name__}")
        missing = [k for k in CSV_FIELDS if k not in data]
        if missing:
            raise ConfigError(f"lacks {missing}")
        unknown = sorted(set(data) - set(_HINTS))
        if unknown:
            raise ConfigError(f"has unknown field(s) {unknown}")
        for name, value in data.items():
            if not (value is None and name not in _NAMING) and not _fits(value, _HINTS[name]):
                raise ConfigError(f"field {name!r} holds {value!r}, not {_HINTS[name]}")
        if data["status"] not in STATUSES:
            raise ConfigError(f"has unknown status {data['status']!r} (one of {', '.join(STATUSES)})")
        known = {k: v for k, v in data.items() if not (v is None and typing.get_origin(_HINTS[k]) is list)}
        return cls(**copy.deepcopy(known))  # shares no list or dict with ``data``


#: The fields that say which row it is: never null in a written row.
_NAMING = ("engine", "precision", "status")
#: Each field's annotation, resolved (what :meth:`Row.from_dict` checks a value against).
_HINTS: dict[str, Any] = typing.get_type_hints(Row)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type a row field's annotation names (an int is a float; a bool
    is neither)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


#: Scalar row fields written to CSV, in order (latency lists and engine_info dicts stay in the JSON).
CSV_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Row) if f.name not in _NESTED)


@dataclass
class RowRun:
    """A row while the benchmark runs: how to load its model, and the masks it predicted."""

    row: Row
    model_ref: str | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    masks: np.ndarray | None = None
