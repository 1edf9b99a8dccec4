"""Load test a served model: N concurrent clients, a bounded count and time, and an answer check.

Every client sends generated street scenes; each response is compared with the mask the same
artifact gives in-process (argmax agreement), so a server that is fast but wrong fails here.
Latency percentiles and throughput come from the client side; what Triton's dynamic batcher did
comes from the server's own statistics (executions per batch size, before and after the run).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .client import SegmentationClient


@dataclass
class LoadReport:
    """One load run. Latencies in milliseconds; agreement is the fraction of equal mask pixels."""

    protocol: str
    clients: int
    requests: int  # completed
    errors: list[str]
    seconds: float
    throughput: float  # completed requests / s
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    agreement_min: float | None
    agreement_mean: float | None
    exact: int  # responses equal to the in-process mask
    retries: int
    batch_counts: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch_size(self) -> float | None:
        executions = sum(self.batch_counts.values())
        return sum(k * v for k, v in self.batch_counts.items()) / executions if executions else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: a run with no completed request has no latencies, written as null
        (``NaN`` is not JSON, and strict readers such as jq refuse the whole report)."""
        data = {**asdict(self), "mean_batch_size": self.mean_batch_size}
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}

    def row(self) -> str:
        agree = "-" if self.agreement_min is None else f"{100 * self.agreement_min:.2f}%"
        batch = "-" if self.mean_batch_size is None else f"{self.mean_batch_size:.2f}"
        return (
            f"{self.protocol:5s} {self.clients:7d} {self.requests:8d} {self.throughput:10.1f} {self.p50_ms:8.1f} "
            f"{self.p90_ms:8.1f} {self.p99_ms:8.1f} {batch:>10s} {agree:>10s} {len(self.errors):6d}"
        )


HEADER = (
    f"{'proto':5s} {'clients':>7s} {'requests':>8s} {'req/s':>10s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} "
    f"{'mean batch':>10s} {'min agree':>10s} {'errors':>6s}"
)


def generated_images(count: int, size: tuple[int, int], seed: int = 1000) -> list[np.ndarray]:
    """``count`` distinct street scenes (uint8 RGB) at ``size``."""
    from ..data.scenes import generate_scene

    return [generate_scene(seed + i, *size)[0] for i in range(count)]


def _delta(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0) > 0}


def run_load(
    url: str,
    protocol: str,
    clients: int,
    requests_per_client: int,
    images: Sequence[np.ndarray],
    references: Sequence[np.ndarray] | None = None,
    duration_s: float | None = None,
    model_name: str = "danet",
    retry_s: float = 0.0,
    timeout_s: float = 60.0,
    events: dict[int, threading.Event] | None = None,
) -> LoadReport:
    """Run ``clients`` threads, each sending up to ``requests_per_client`` images (or until ``duration_s``).

    Args:
        references: in-process masks for ``images`` (same order), for the agreement columns.
        retry_s: how long a client keeps retrying a request the server did not answer.
        events: ``{n: event}`` set once ``n`` requests have completed in total (tests use it to
            kill the server mid-run).
    """
    if clients < 1 or requests_per_client < 1:
        raise ConfigError("clients and requests per client must be >= 1")
    if not images:
        raise ConfigError("the load test needs at least one image")
    lock = threading.Lock()
    latencies: list[float] = []
    agreements: list[float] = []
    errors: list[str] = []
    counters = {"done": 0, "retries": 0, "exact": 0}
    deadline = None if duration_s is None else time.monotonic() + duration_s

    def worker(index: int) -> None:
        with SegmentationClient(url, protocol, model_name=model_name, timeout_s=timeout_s, retry_s=retry_s) as client:
            for i in range(requests_per_client):
                if deadline is not None and time.monotonic() > deadline:
                    return
                k = (index * requests_per_client + i) % len(images)
                try:
                    result = client.call(images[k])
                except Exception as exc:  # recorded, reported; a load test counts failures, it does not stop
                    with lock:
                        errors.append(f"client {index} request {i}: {exc}")
                    continue
                agree = None if references is None else float(np.mean(result.mask == references[k]))
                with lock:
                    latencies.append(result.seconds)
                    counters["retries"] += result.retries
                    if agree is not None:
                        agreements.append(agree)
                        counters["exact"] += agree == 1.0
                    counters["done"] += 1
                    if events and counters["done"] in events:
                        events[counters["done"]].set()

    # built with every worker's settings, so a bad one is raised here, not inside each worker thread
    with SegmentationClient(url, protocol, model_name=model_name, timeout_s=timeout_s, retry_s=retry_s) as probe:
        before = _safe_counts(probe)
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    with SegmentationClient(url, protocol, model_name=model_name, timeout_s=timeout_s) as probe:
        after = _safe_counts(probe)
    ms = np.asarray(latencies) * 1000.0
    pct = np.percentile(ms, [50, 90, 99]) if ms.size else np.full(3, np.nan)
    return LoadReport(
        protocol=protocol,
        clients=clients,
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        throughput=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=float(pct[0]),
        p90_ms=float(pct[1]),
        p99_ms=float(pct[2]),
        mean_ms=float(ms.mean()) if ms.size else float("nan"),
        agreement_min=min(agreements) if agreements else None,
        agreement_mean=float(np.mean(agreements)) if agreements else None,
        exact=counters["exact"],
        retries=counters["retries"],
        batch_counts=_delta(after, before) if before is not None and after is not None else {},
    )


def _safe_counts(client: SegmentationClient) -> dict[int, int] | None:
    """Server batch statistics, or None where the server restricts them (a plain PyTriton does)."""
    try:
        return client.batch_counts()
    except Exception:
        return None
