"""One benchmark row (an engine x a precision) as a typed record.

The JSON, CSV and Markdown writers derive their fields from :class:`Row`; what a run needs only
while it measures (the masks for the accuracy columns, how to load the model) lives in
:class:`RowRun`, never in the row that is written out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

#: Row fields that hold lists or dicts: in the JSON only, not in the CSV.
_NESTED = {"latencies_ms", "engine_info", "device_timing", "device_timing_rounds", "device_memory",
           "device_memory_rounds", "profile"}


@dataclass
class Row:
    """What the report says about one combination (see :mod:`.report` for each field's meaning)."""

    engine: str                              # the runtime engine that ran it (danet-bench --engines)
    precision: str
    export_target: str | None                # the danet-export target that wrote its artifact
    batch: int
    threads: int
    status: str = "pending"                  # "ok" | "failed" | "unsupported" once written
    reason: str | None = None
    artifact: str | None = None
    reused_artifact: bool | None = None
    file_size_mb: float | None = None
    export_s: float | None = None
    load_s: float | None = None
    compile_s: float | None = None           # just-in-time compilation (torch.compile), not in any latency
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
    gemm_note: str | None = None             # why gemm_efficiency is null (no yardstick, or above it)
    ratio_vs_torch_fp32: float | None = None
    engine_info: dict[str, Any] | None = None  # the backend's describe(): providers, threads, versions
    latencies_ms: list[float] = field(default_factory=list)
    device_timing: dict[str, Any] | None = None
    device_timing_rounds: list[dict[str, Any]] = field(default_factory=list)
    device_memory: dict[str, Any] | None = None
    device_memory_rounds: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None    # per-op profile (danet-bench --profile, bench.profile)

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
        return asdict(self)


#: Scalar row fields written to CSV, in order (latency lists and engine_info dicts stay in the JSON).
CSV_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Row) if f.name not in _NESTED)


@dataclass
class RowRun:
    """A row while the benchmark runs: how to load its model, and the masks it predicted."""

    row: Row
    model_ref: str | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    masks: np.ndarray | None = None


def ok_rows(report: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """The rows of a written report that ran."""
    return [r for r in report["rows"] if r["status"] == "ok"]
