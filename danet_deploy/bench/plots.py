"""PNG plots of a benchmark report (matplotlib, Agg backend: no display needed).

Two views: per-row latency as a p50 bar with a p90..p99 whisker (what a frame usually costs
and how bad the tail gets), and the latency CDF of every timed iteration (shape of the
distribution: bimodal engines, warm-up leftovers and outliers show up here, not in a bar).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..targets import engines
from ..util.files import atomic_output
from .rows import Row
from .sections import ReportConfig

if TYPE_CHECKING:  # the report imports this module to draw its plots
    from .report import BenchReport

_PRECISION_COLORS = {"fp32": "#4C72B0", "fp16": "#55A868", "int8": "#DD8452"}


def missing_plot_library() -> str | None:
    """``None`` if the plots can be drawn, else a note naming the extra that installs matplotlib."""
    try:
        import matplotlib  # noqa: F401 imported only to see that it is installed
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install 'danet-deploy[bench]')"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: Row) -> str:
    return f"{row.engine}\n{row.precision}"


def _title(model: Mapping[str, object], config: ReportConfig, what: str) -> str:
    """``<model> HxW, batch B, T threads: <what>`` (``model`` and ``config`` of a report)."""
    size = config.size or ("?", "?")
    return f"{model['name']} {size[0]}x{size[1]}, batch {config.batch}, {config.threads} threads: {what}"


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def plot_latency(report: BenchReport, path: str | Path) -> Path:
    """Bar = p50 latency per row; whisker from p90 (tick) to p99 (cap); failed rows listed below."""
    plt = _pyplot()
    rows = [r for r in report.rows if r.status == "ok"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.6))
    x = np.arange(len(rows))
    p50 = np.array([r.p50_ms for r in rows], dtype=float)
    p90 = np.array([r.p90_ms for r in rows], dtype=float)
    p99 = np.array([r.p99_ms for r in rows], dtype=float)
    colors = [_PRECISION_COLORS.get(r.precision, "#8172B2") for r in rows]
    ax.bar(x, p50, color=colors, width=0.6)
    if rows:
        ax.vlines(x, p50, p99, color="black", linewidth=1.2)
        ax.scatter(x, p90, marker="_", s=200, color="black", zorder=3, label="p90 tick")
        ax.scatter(x, p99, marker="_", s=400, color="firebrick", zorder=3, label="p99 cap")
        top = float(p99.max())
        for xi, r in zip(x, rows):
            ratio = r.ratio_vs_torch_fp32
            text = f"{r.p50_ms:.0f} ms" + (f"\n×{ratio:.2f}" if ratio is not None else "")
            ax.text(xi, (r.p99_ms or 0.0) + 0.02 * top, text, ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, top * 1.18)
    ax.set_xticks(x, [_label(r) for r in rows], fontsize=9)
    ax.set_ylabel("latency per batch (ms)")
    ax.set_title(_title(report.model, report.config, "p50 bar, p90/p99 whiskers, ×ratio vs torch fp32"), fontsize=10)
    # legends outside the axes, so they never cover a bar's annotation
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _PRECISION_COLORS.values()]
    legend = ax.legend(
        handles,
        list(_PRECISION_COLORS),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="p50 bar",
        title_fontsize=8,
    )
    ax.add_artist(legend)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 0.62), fontsize=8, title="markers", title_fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    skipped = [r for r in report.rows if r.status != "ok"]
    if skipped:
        note = "not run: " + "; ".join(f"{r.engine} {r.precision} ({r.status})" for r in skipped)
        fig.text(0.01, -0.02, note, fontsize=7, ha="left", va="top", wrap=True)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_cdf(report: BenchReport, path: str | Path) -> Path:
    """Empirical CDF of every timed iteration per row: colour = engine, line style = precision
    (log-scaled x when the rows' ranges differ a lot)."""
    plt = _pyplot()
    rows = [r for r in report.rows if r.status == "ok" and r.latencies_ms]
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    styles = {"fp32": "-", "fp16": "--", "int8": ":"}
    colors = {e.name: e.color for e in engines()}
    lo, hi = np.inf, 0.0
    for r in rows:
        lat = np.sort(np.asarray(r.latencies_ms, dtype=float))
        y = np.arange(1, lat.size + 1) / lat.size
        ax.step(
            lat,
            y,
            where="post",
            linestyle=styles.get(r.precision, "-"),
            linewidth=1.8,
            color=colors.get(r.engine),
            label=f"{r.engine} {r.precision} (p50 {r.p50_ms:.0f} ms)",
        )
        lo, hi = min(lo, float(lat[0])), max(hi, float(lat[-1]))
    if rows and hi / max(lo, 1e-9) > 8:
        ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms)")
    ax.set_ylabel("fraction of iterations ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(_title(report.model, report.config, "latency CDF"), fontsize=10)
    if rows:  # outside the axes: inside it covers the slowest engine's curve
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
