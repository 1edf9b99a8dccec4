"""Latency measurement: warm-up, one ``perf_counter_ns`` reading per iteration, percentiles.

Why per-iteration timestamps and not ``total / iters``: tail latency (p90/p99) is what a robot's
control loop feels, and a mean hides the occasional slow frame (allocator growth, a background
process, an OpenVINO recompile). Percentiles use numpy's default linear interpolation over
*all* timed iterations; warm-up iterations are run and discarded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..util.progress import progress_bar


def time_calls(
    fn: Callable[[], Any], iters: int, warmup: int, progress: bool = False, label: str = "iterations"
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``iters`` times; return each call's milliseconds."""
    for _ in range(warmup):
        fn()
    bar = progress_bar(total=iters, desc=label, unit="it", leave=False, enabled=progress)
    times: list[float] = []
    try:
        for _ in range(iters):
            start = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - start) / 1e6)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return times


def summarize(times_ms: list[float], batch: int = 1) -> dict[str, float | int | None]:
    """p50/p90/p99/mean/min/max/std of per-call milliseconds, and images per second from the mean."""
    if not times_ms:
        return {
            "iters": 0,
            "p50_ms": None,
            "p90_ms": None,
            "p99_ms": None,
            "mean_ms": None,
            "min_ms": None,
            "max_ms": None,
            "std_ms": None,
            "throughput_ips": None,
        }
    arr = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    mean = float(arr.mean())
    return {
        "iters": int(arr.size),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "mean_ms": round(mean, 3),
        "min_ms": round(float(arr.min()), 3),
        "max_ms": round(float(arr.max()), 3),
        "std_ms": round(float(arr.std()), 3),
        "throughput_ips": round(batch * 1000.0 / mean, 3) if mean > 0 else None,
    }


def round_p50s(times_ms: list[float], iters: int) -> list[float]:
    """The p50 of each round of ``iters`` consecutive timings (``times_ms`` as a row pools them,
    round after round); a short last chunk (an incomplete round) is left out."""
    if iters <= 0:
        return []
    arr = np.asarray(times_ms, dtype=np.float64)
    whole = arr.size // iters
    return [float(np.median(arr[i * iters : (i + 1) * iters])) for i in range(whole)]


def paired_round_ratios(times_ms: list[float], reference_ms: list[float], iters: int) -> list[float]:
    """Round k's p50 over the reference's round-k p50, for every round both completed.

    Why pair by round: rounds are interleaved, so round k of two rows ran close in time, and a slow
    drift of the machine (20% within one run was seen) cancels in the pair, where a ratio of pooled
    p50s mixes one row's fast rounds with the other's slow ones. It cancels nothing when the speed
    changes faster than a round (this VM also switches phase every few seconds): then the spread of
    the pairs is only how far rounds disagree, and the figure to read is a median over many rounds.
    """
    return pair_rounds(round_p50s(times_ms, iters), round_p50s(reference_ms, iters))


def pair_rounds(rounds: list[float], reference_rounds: list[float]) -> list[float]:
    """Round k over the reference's round k (per-round p50s), for every round both completed."""
    return [round(a / b, 4) for a, b in zip(rounds, reference_rounds) if b > 0 and not math.isnan(a)]


def ratio_spread(ratios: list[float]) -> dict[str, float | int] | None:
    """Median, min and max of per-round ratios (``None`` for none): the figure and how far rounds disagree."""
    if not ratios:
        return None
    return {
        "median": round(float(np.median(ratios)), 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "rounds": len(ratios),
    }
