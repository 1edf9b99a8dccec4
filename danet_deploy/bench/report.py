"""Benchmark reports: the versioned JSON schema, the console/Markdown table, CSV.

JSON schema ``danet-bench``, ``schema_version`` 5 (one object per run)::

    schema           "danet-bench"
    schema_version   5  (bumped on any incompatible change; readers must check it. 2: every row
                     has every field of :class:`~danet_deploy.bench.rows.Row`, null when unknown;
                     3: rows gain gemm_note and compile_s, the INT8 yardstick is an engine's own
                     INT8 MatMul; 4: one vocabulary -- a row's runtime is ``engine`` (was
                     ``target``), the backend's describe() is ``engine_info`` (was ``engine``),
                     config ``engines`` (was ``targets``), summary entries name their ``engine``;
                     5: rows gain ``ratio_rounds``. :func:`upgrade_report` reads v3 and v4 as v5)
    created          ISO-8601 UTC time the run finished
    command          the command line that produced it (string or null)
    config           the BenchConfig: model, engines, precisions, size [H, W], batch, iters (per
                     round), warmup (per process), threads, scenes, arch, output, artifacts,
                     calib_count, rounds, timeout_s, export_options
    model            {name, source, num_classes, weights: "shipped" | "checkpoint" | "random (untrained preset)"}
    machine          {cpu: {model, arch, features{flag: bool}, logical_cores, physical_cores,
                     affinity_cores}, memory_gib, gpus[{name, memory, driver}], os, python,
                     libraries{name: version}, load_average{before, after: [1, 5, 15 min]}}
    gemm             {method, threads, repeats, sizes, dtype, gflops_peak, gflops_median, candidates[],
                     reason, runs_gflops_peak[], when}: this CPU's FP32 GEMM peak, the best of
                     torch.mm and ONNX Runtime MatMul over several sizes and runs, measured before
                     and after the rows, best kept (candidates[]: every GEMM tried, or its error);
                     int8 (when int8 rows were asked for): the same record for ONNX Runtime's own
                     INT8 MatMulInteger / QLinearMatMul (GOP/s), the yardstick of INT8 rows;
                     gflops_peak null and reason set when no INT8 GEMM could run
    flops            {size, batch, conv, linear, pam, cam, attention, total, gflops}: one forward
                     pass of one batch (multiply-add = 2 FLOPs; attention counted analytically)
    scenes           {split, count, size, labels_used}: generated val scenes for accuracy
    rows[]           one per engine x precision (:class:`~danet_deploy.bench.rows.Row`), the
                     reference engine's fp32 first:
        engine, precision, export_target (the danet-export target of its artifact; null for
                         torch), batch, threads
        status           "ok" | "failed" | "unsupported"
        reason           why it did not run (null when ok)
        artifact         artifact folder ("reference:<model>" for torch), reused_artifact (bool)
        file_size_mb     model file(s) in MiB (torch: the weights file, null if random init)
        export_s         export seconds (null when reused or torch), load_s (load/compile seconds,
                         the fastest over rounds); compile_s: just-in-time compilation on the first
                         call per input shape (torch-compile), of the first round, excluded from
                         every latency (it happens in the accuracy pass and warm-up)
        rounds           measurement rounds that completed (each a fresh process)
        p50_ms p90_ms p99_ms mean_ms min_ms max_ms std_ms iters
                         per-call latency of one batch over all timed iterations of all rounds
                         (warm-up excluded)
        latencies_ms[]   every timed iteration, round after round
        throughput_ips   images/s = batch * 1000 / mean_ms
        async_throughput_ips  images/s through the backend's async request queue (if it has one),
                         the best round; async_error: why it is missing (null if it is not)
        device_timing    {phase: statistics} or null from device-side timers (CUDA events:
                         h2d, compute, d2h, total) of the last round
        device_memory    {gpu_used_mb_after_timing, source} of the last round, or null;
                         device_timing_rounds / device_memory_rounds: every round's
        peak_rss_mb      peak resident memory (VmHWM) of the row's own process, the highest over
                         rounds; rss_before_load_mb: its
                         baseline (interpreter + numpy) before the engine was loaded
        argmax_agreement fraction of scene pixels whose argmax equals the torch fp32 reference's
        miou_vs_reference  mIoU of the row's masks scored against the reference masks
        miou_vs_labels   mIoU against the scene labels (null unless the model was trained on them)
        gflops_achieved  flops.total / p50 (FP32-equivalent FLOPs, whatever the precision)
        gemm_peak_gflops the peak it is compared with: gemm.int8.gflops_peak for int8 rows, else
                         gemm.gflops_peak; gemm_efficiency = gflops_achieved / gemm_peak_gflops,
                         a fraction <= 1, or null with gemm_note saying why (no yardstick measured,
                         or the row ran above it: the yardstick read low on that run)
        ratio_vs_torch_fp32  p50_ms / p50_ms of the torch fp32 row of the same run (< 1 = faster)
        ratio_rounds[]   the same ratio round by round: round k's p50 over the torch fp32 row's
                         round-k p50 (rounds are interleaved, so each pair ran close in time); empty
                         with fewer than two rounds. Their spread is how far rounds disagree (a slow
                         drift cancels in a pair; speed changes within a round do not)
        engine_info      the backend's describe(): providers, threads, versions
    summary          {precision: {engine, ratio_vs_torch_fp32, argmax_agreement, p50_ms}}: the
                     fastest non-reference engine per precision (by p50), and under
                     "int8_at_99" the fastest INT8 row with argmax agreement >= 0.99 (or null)
    seconds          wall time of the whole run
"""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..errors import ConfigError
from ..targets import reference_engine
from ..util.files import atomic_write_text
from .rows import CSV_FIELDS, Row
from .sections import MachineInfo, ReportConfig, Summary

SCHEMA = "danet-bench"
SCHEMA_VERSION = 5
#: Versions :func:`upgrade_report` reads (the older ones lack fields v4 requires).
READABLE_VERSIONS = (3, 4, SCHEMA_VERSION)

#: (header, row key, format) of the table columns, in order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("engine", "engine", "s"),
    ("precision", "precision", "s"),
    ("size MiB", "file_size_mb", ".1f"),
    ("load s", "load_s", ".2f"),
    ("compile s", "compile_s", ".1f"),
    ("p50 ms", "p50_ms", ".1f"),
    ("p90 ms", "p90_ms", ".1f"),
    ("p99 ms", "p99_ms", ".1f"),
    ("mean ms", "mean_ms", ".1f"),
    ("img/s", "throughput_ips", ".2f"),
    ("peak RSS MiB", "peak_rss_mb", ".0f"),
    ("GFLOP/s", "gflops_achieved", ".1f"),
    ("% GEMM peak", "gemm_efficiency", "%"),  # of the peak of the row's own precision
    ("argmax agree", "argmax_agreement", "%2"),
    ("mIoU labels", "miou_vs_labels", ".4f"),
    ("vs torch fp32", "ratio_vs_torch_fp32", ".3f"),
    ("per round", "ratio_rounds", "range"),  # the paired per-round ratios, lowest to highest
    ("status", "status", "status"),
)

#: Sections of a report that are records of the run's surroundings, kept as the JSON holds them.
_SECTIONS = ("config", "model", "machine", "gemm", "flops", "scenes")


@dataclass
class BenchReport:
    """One ``danet-bench`` run as a typed record: its :class:`~danet_deploy.bench.rows.Row` s and
    what it ran on (the schema above).

    :meth:`to_dict` writes exactly the JSON above, so result files written before this record
    existed read back with :meth:`from_dict` (which validates, and reads a v3 report as v4).
    ``config``, ``machine`` and ``summary`` are typed records (:mod:`~danet_deploy.bench.sections`,
    which says why ``model``, ``gemm``, ``flops`` and ``scenes`` stay the mappings their producers,
    ``measure_gemm_peak`` and ``count_flops``, write).
    """

    created: str
    config: ReportConfig
    model: Mapping[str, Any]  # {name, source, num_classes, weights}
    machine: MachineInfo
    gemm: Mapping[str, Any]  # measure_gemm_peak()
    flops: Mapping[str, Any]  # FlopCount.to_dict()
    scenes: Mapping[str, Any]  # {split, count, size, labels_used}
    rows: list[Row]
    command: str | None = None
    summary: Summary = field(default_factory=lambda: Summary.from_dict({}))
    # (config, machine and summary may be given as the dicts their producers write: checked and
    # converted on construction, as Manifest converts its sections)
    seconds: float | None = None

    def __post_init__(self) -> None:
        # a report built from the plain dicts the producers write gets checked records, as one read back
        if not isinstance(self.config, ReportConfig):
            self.config = ReportConfig.from_dict(self.config)
        if not isinstance(self.machine, MachineInfo):
            self.machine = MachineInfo.from_dict(self.machine)
        if not isinstance(self.summary, Summary):
            self.summary = Summary.from_dict(self.summary)

    def row(self, engine: str, precision: str) -> Row | None:
        """The row of ``engine`` at ``precision``, or ``None`` when it was not asked for."""
        return next((r for r in self.rows if (r.engine, r.precision) == (engine, precision)), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``STEM.json`` (keys in the order the schema lists them)."""
        sections = {key: _section_dict(getattr(self, key)) for key in _SECTIONS}
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "command": self.command,
            **sections,
            "rows": [r.to_dict() for r in self.rows],
            "summary": self.summary.to_dict(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchReport:
        """A report read back from its JSON (:func:`validate` first: a wrong one is a ``ConfigError``)."""
        validate(data)
        new = upgrade_report(dict(data))
        return cls(
            created=new["created"],
            command=new.get("command"),
            config=ReportConfig.from_dict(new["config"]),
            machine=MachineInfo.from_dict(new["machine"]),
            rows=[Row.from_dict(r) for r in new["rows"]],
            summary=Summary.from_dict(new.get("summary") or {}),
            seconds=new.get("seconds"),
            **{key: copy.deepcopy(new[key]) for key in ("model", "gemm", "flops", "scenes")},
        )


def _section_dict(section: MachineInfo | ReportConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A section's JSON object: a record's own, or a copy of a mapping."""
    return section.to_dict() if isinstance(section, (MachineInfo, ReportConfig)) else copy.deepcopy(dict(section))


def report_data(report: BenchReport | Mapping[str, Any]) -> dict[str, Any]:
    """A report as its JSON holds it, in the current schema: from a :class:`BenchReport` or a loaded dict."""
    return report.to_dict() if isinstance(report, BenchReport) else upgrade_report(dict(report))


def as_report(report: BenchReport | Mapping[str, Any]) -> BenchReport:
    """The record of a report: itself, or a loaded dict read (validated, v3 as v4) with :meth:`BenchReport.from_dict`."""
    return report if isinstance(report, BenchReport) else BenchReport.from_dict(report)


def _cell(row: Row, key: str, fmt: str) -> str:
    value = getattr(row, key)
    if fmt == "status":
        return "ok" if row.status == "ok" else f"{row.status}: {row.reason or ''}".strip()
    if value is None or (fmt == "range" and not value):
        return "-"
    if fmt == "range":
        return f"{min(value):.3f}-{max(value):.3f}"
    if fmt == "s":
        return str(value)
    if fmt == "%":
        return f"{100 * value:.0f}%"
    if fmt == "%2":
        return f"{100 * value:.2f}%"
    return format(value, fmt)


def upgrade_report(report: dict[str, Any]) -> dict[str, Any]:
    """A loaded report in the current schema: a v3 report is returned renamed, a v4 one relabelled
    (v5 only added the optional ``ratio_rounds`` a v4 row lacks), anything else as given.

    Why: v3 called a row's engine ``target`` and its describe() ``engine``; reports written by
    earlier releases (``benchmarks/results``) must still render and validate. The input is not
    modified; :func:`validate` rejects what this leaves alone.
    """
    if report.get("schema") != SCHEMA or report.get("schema_version") not in (3, 4):
        return report
    new = {**report, "schema_version": SCHEMA_VERSION}
    if report.get("schema_version") == 4:
        return new
    if isinstance(report.get("config"), dict):
        new["config"] = {("engines" if k == "targets" else k): v for k, v in report["config"].items()}
    new["rows"] = [_rename_row(r) for r in report.get("rows") or []]
    if isinstance(report.get("summary"), dict):
        new["summary"] = {
            k: (_rename(v, {"target": "engine"}) if isinstance(v, dict) else v) for k, v in report["summary"].items()
        }
    return new


def _rename_row(row: Any) -> Any:
    return _rename(row, {"engine": "engine_info", "target": "engine"}) if isinstance(row, dict) else row


def _rename(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in data.items()}


def table_rows(report: BenchReport | Mapping[str, Any]) -> list[list[str]]:
    return [[_cell(row, key, fmt) for _, key, fmt in COLUMNS] for row in as_report(report).rows]


def format_table(report: BenchReport | Mapping[str, Any]) -> str:
    """A fixed-width text table for the console."""
    headers = [h for h, _, _ in COLUMNS]
    body = table_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def header_lines(report: BenchReport | Mapping[str, Any]) -> list[str]:
    """Who/what/where of a run, one fact a line (used by Markdown and the console)."""
    rec = as_report(report)
    cfg, machine, cpu, flops, gemm = rec.config, rec.machine, rec.machine.cpu, rec.flops, rec.gemm
    model, scenes = rec.model, rec.scenes  # open mappings: a partial section shows "?", not a KeyError
    size = cfg.size or ("?", "?")
    libs = ", ".join(f"{k} {v}" for k, v in machine.libraries.items())
    load = machine.load_average
    return [
        f"model: {model.get('name', '?')} ({model.get('weights', '?')} weights), input {size[0]}x{size[1]}, "
        f"batch {cfg.batch}, {cfg.threads} threads, {cfg.rounds} interleaved round(s) x {cfg.iters} "
        f"timed iterations per combination, each after {cfg.warmup} warm-up",
        f"date: {rec.created}",
        f"machine: {cpu.model} ({cpu.logical_cores} logical cores), {machine.memory_gib} GiB, "
        f"{machine.os}; features: {' '.join(cpu.present_features) or 'unknown'}"
        + (f"; GPUs: {', '.join(g.name for g in machine.gpus)}" if machine.gpus else "; no GPU")
        + (f"; load average before/after {_listed(load.before)} / {_listed(load.after)}" if load else ""),
        f"compute: {flops.get('gflops', '?')} GFLOP per batch ({_gflop(flops.get('attention'))} GFLOP in PAM+CAM "
        f"attention); measured GEMM peak {gemm.get('gflops_peak', '?')} GFLOP/s ({gemm.get('method', '?')}, "
        f"{gemm.get('threads', '?')} threads)" + _int8_peak_text(gemm.get("int8")),
        *_fp32_floor_lines(rec),
        f"accuracy: {scenes.get('count', '?')} generated val scenes; argmax agreement vs torch fp32"
        + ("; mIoU vs scene labels" if scenes.get("labels_used") else "; no labels (model not trained on scenes)"),
        f"libraries: {libs}",
    ]


def fp32_floor(report: BenchReport | Mapping[str, Any]) -> dict[str, float | None] | None:
    """The least time any engine needs to do this model's multiply-adds in FP32 on this CPU:
    ``flops.total`` at the best FP32 GEMM peak measured in the run (before and after the rows),
    and that as a ratio of the torch fp32 row's fastest round (its p50 when it ran one round).

    Why: an FP32 goal phrased as a ratio to torch ("<= 0.45x") is only reachable if it lies above
    this floor; when it lies below, no engine setting, layout or fusion reaches it without doing
    less arithmetic (another precision, or another algorithm such as Winograd that none of the
    CPU engines here uses). Why both at their best: on a VM whose speed drifts, a fast moment's
    peak over a slow moment's torch time reads a floor lower than any state the machine was in;
    the best peak and torch's fastest round are the machine at its fastest twice over. ``None``
    when the report lacks the FLOPs or the peak; the ratio is ``None`` without a timed reference row.
    """
    from .timing import round_p50s

    rec = as_report(report)
    total, peak = rec.flops.get("total"), rec.gemm.get("gflops_peak")
    if not isinstance(total, (int, float)) or not isinstance(peak, (int, float)) or peak <= 0:
        return None
    floor_ms = total / (peak * 1e9) * 1e3
    ref = next((r for r in rec.rows if r.engine == reference_engine().name and r.precision == "fp32"), None)
    ratio = None
    if ref is not None and ref.status == "ok" and ref.p50_ms:
        rounds = round_p50s(ref.latencies_ms, rec.config.iters or 0) if ref.rounds > 1 else []
        fastest = min([t for t in rounds if t > 0] or [ref.p50_ms])
        ratio = floor_ms / fastest
    return {"floor_ms": round(floor_ms, 3), "ratio_vs_torch_fp32": None if ratio is None else round(ratio, 4)}


def _fp32_floor_lines(rec: BenchReport) -> list[str]:
    floor = fp32_floor(rec)
    if floor is None or not any(r.precision == "fp32" for r in rec.rows):
        return []
    ratio = floor["ratio_vs_torch_fp32"]
    return [
        f"FP32 floor: {floor['floor_ms']:.1f} ms per batch at the best FP32 GEMM peak"
        + (f" = {ratio:.3f}x torch fp32's fastest round" if ratio is not None else "")
        + "; no engine computing these FLOPs in FP32 runs faster on this CPU"
    ]


def _gflop(value: Any) -> str:
    """FLOPs as GFLOP with two decimals, ``?`` when the report does not say."""
    return f"{value / 1e9:.2f}" if isinstance(value, (int, float)) else "?"


def _listed(values: Sequence[float] | None) -> str:
    """Load averages as the JSON shows them (``[0.5, 0.6, 0.7]``, ``None``)."""
    return str(None if values is None else list(values))


def _int8_peak_text(int8: Mapping[str, Any] | None) -> str:
    """The INT8 yardstick for the header line, or why INT8 rows have no efficiency."""
    if not int8:
        return ""
    if int8.get("gflops_peak"):
        return f", INT8 {int8['gflops_peak']} GOP/s ({int8['method']}; the yardstick of INT8 rows)"
    return f", no INT8 yardstick ({int8.get('reason')}): INT8 rows have no % GEMM peak"


class BestJson(TypedDict):
    """One ``summary`` entry as written (read back as :class:`~danet_deploy.bench.sections.BestEngine`)."""

    engine: str
    precision: str
    p50_ms: float
    ratio_vs_torch_fp32: float | None
    argmax_agreement: float | None


def summarize_best(rows: Sequence[Mapping[str, Any]]) -> dict[str, BestJson | None]:
    """Fastest engine per precision (torch reference excluded), and the fastest INT8 at >= 99% agreement."""

    def pick(candidates: list[Mapping[str, Any]]) -> BestJson | None:
        best = min(candidates, key=lambda r: r["p50_ms"], default=None)
        if best is None:
            return None
        return BestJson(  # the filters below read engine, precision and p50_ms: every candidate has them
            engine=best["engine"],
            precision=best["precision"],
            p50_ms=best["p50_ms"],
            ratio_vs_torch_fp32=best.get("ratio_vs_torch_fp32"),
            argmax_agreement=best.get("argmax_agreement"),
        )

    reference = reference_engine().name
    done = [r for r in rows if r["status"] == "ok" and r.get("p50_ms") and r["engine"] != reference]
    summary: dict[str, BestJson | None] = {
        p: pick([r for r in done if r["precision"] == p]) for p in ("fp32", "fp16", "int8")
    }
    summary["int8_at_99"] = pick(
        [r for r in done if r["precision"] == "int8" and (r.get("argmax_agreement") or 0) >= 0.99]
    )
    return summary


def summary_lines(report: BenchReport | Mapping[str, Any]) -> list[str]:
    summary = (
        report.summary
        if isinstance(report, BenchReport)
        else Summary.from_dict(upgrade_report(dict(report)).get("summary") or {})
    )
    lines = []
    for key, text in (
        ("fp32", "best FP32 engine"),
        ("fp16", "best FP16 engine"),
        ("int8", "best INT8 engine"),
        ("int8_at_99", "best INT8 engine at >= 99% argmax agreement"),
    ):
        best = summary.get(key)
        if best is None:
            lines.append(f"{text}: none ran")
            continue
        ratio, agree = best.ratio_vs_torch_fp32, best.argmax_agreement
        lines.append(
            f"{text}: {best.engine} {best.precision}, p50 {best.p50_ms:.1f} ms"
            + (f", {ratio:.3f} x torch fp32" if ratio is not None else "")
            + (f", argmax agreement {100 * agree:.2f}%" if agree is not None else "")
        )
    return lines


def to_markdown(report: BenchReport | Mapping[str, Any]) -> str:
    rec = as_report(report)
    headers = [h for h, _, _ in COLUMNS]
    size = rec.config.size or ("?", "?")
    lines = [f"# danet-bench: {rec.model.get('name', '?')} at {size[0]}x{size[1]}", ""]
    lines += [f"- {_md_escape(line)}" for line in header_lines(rec)]
    if rec.command:
        lines += ["", "Command:", "", "```", rec.command, "```"]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in table_rows(rec)]
    lines += [
        "",
        "Latency is per batch; `vs torch fp32` is p50 / p50 of PyTorch eager FP32 in the same run "
        "(below 1 is faster). Each row ran in its own process (peak RSS is that process's).",
        "",
    ]
    lines += [f"- {line}" for line in summary_lines(rec)] + [""]
    return "\n".join(lines)


def to_csv(report: BenchReport | Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in as_report(report).rows:
        writer.writerow({k: ("" if getattr(row, k) is None else getattr(row, k)) for k in CSV_FIELDS})
    return buffer.getvalue()


def validate(report: Mapping[str, Any]) -> None:
    """Check a loaded report against the schema above (version, sections, every row:
    :meth:`Row.from_dict <danet_deploy.bench.rows.Row.from_dict>`; v3 and v4 are read as v5)."""
    if not isinstance(report, Mapping):
        raise ConfigError(f"a benchmark report must be a JSON object, got {type(report).__name__}")
    report = upgrade_report(dict(report))
    if report.get("schema") != SCHEMA or report.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"not a {SCHEMA} v{'/v'.join(map(str, READABLE_VERSIONS))} report (got {report.get('schema')!r} "
            f"v{report.get('schema_version')!r}); re-run danet-bench with this version"
        )
    for key in ("created", "config", "model", "machine", "gemm", "flops", "scenes", "rows"):
        if key not in report:
            raise ConfigError(f"benchmark report lacks {key!r}; re-run danet-bench")
    wrong = (
        [k for k in _SECTIONS if not isinstance(report[k], dict)]
        + [k for k, kind in (("created", str), ("rows", list)) if not isinstance(report[k], kind)]
        + [
            k
            for k, kind in (("command", str), ("summary", dict), ("seconds", (int, float)))
            if report.get(k) is not None and (not isinstance(report[k], kind) or isinstance(report[k], bool))
        ]
    )
    if wrong:
        raise ConfigError(f"benchmark report has malformed {wrong}; re-run danet-bench")
    for i, row in enumerate(report["rows"]):
        try:
            Row.from_dict(row)
        except ConfigError as exc:
            raise ConfigError(f"benchmark report row {i} {exc}; re-run danet-bench") from None
    ReportConfig.from_dict(report["config"])  # each names the key path of a mistyped value
    MachineInfo.from_dict(report["machine"])
    Summary.from_dict(report.get("summary") or {})


def report_file_names(stem: str = "bench", plots: bool = True) -> list[str]:
    """Every file name :func:`write_reports` may write, so callers can refuse to replace them up front."""
    names = [f"{stem}.json", f"{stem}.csv", f"{stem}.md"]
    return names + ([f"{stem}-latency.png", f"{stem}-cdf.png", f"{stem}-profile.png"] if plots else [])


def write_reports(
    report: BenchReport | Mapping[str, Any], directory: str | Path, stem: str = "bench", plots: bool = True
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``.csv``, ``.md`` (and PNG plots) atomically; return the paths."""
    from .checks import check_report_stem

    check_report_stem(stem)  # a stem with a path in it would write outside ``directory``
    data = report_data(report)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / f"{stem}.json", "csv": directory / f"{stem}.csv", "markdown": directory / f"{stem}.md"}
    atomic_write_text(paths["json"], json.dumps(data, indent=1) + "\n")
    atomic_write_text(paths["csv"], to_csv(report))
    from .profile import plot_profile, profile_markdown, profiled_rows

    markdown = to_markdown(report) + profile_markdown(data)  # plots and profiles read the rows' JSON
    from .plots import missing_plot_library

    note = missing_plot_library() if plots else None
    if note:  # every table is still written; only the PNGs are skipped
        print(f"note: {note}", file=sys.stderr)
        markdown += f"\n_{note}_\n"
    if plots and not note:
        from .plots import plot_cdf, plot_latency

        paths["latency_png"] = plot_latency(as_report(report), directory / f"{stem}-latency.png")
        paths["cdf_png"] = plot_cdf(as_report(report), directory / f"{stem}-cdf.png")
        markdown += f"\n![latency]({paths['latency_png'].name})\n\n![latency CDF]({paths['cdf_png'].name})\n"
        if any("error" not in r["profile"] for r in profiled_rows(data)):
            paths["profile_png"] = plot_profile(data, directory / f"{stem}-profile.png")
            markdown += f"\n![per-op profile]({paths['profile_png'].name})\n"
    atomic_write_text(paths["markdown"], markdown)
    return paths
