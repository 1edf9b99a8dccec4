"""One benchmark combination in its own process: ``python -m danet_deploy.bench.worker SPEC RESULT``.

Why a process per combination: peak RSS (``ru_maxrss``) never goes down, thread pools and
allocator arenas of one engine would otherwise leak into the next engine's numbers, and a
crash or out-of-memory kill of one engine must not take the whole benchmark down. The parent
(:mod:`danet_deploy.bench.runner`) writes a JSON spec and reads a JSON result file; stdout is
left to the engines' own chatter.

This module imports only the runtime (numpy + the one backend library): a torch-free machine
can run every non-torch combination.

The spec's fields are :class:`WorkerSpec`'s.

Optional backend capabilities used when present (duck-typed, so engines opt in):
``infer_many(list[batch]) -> list[logits]`` (asynchronous request queue, throughput mode) and
``infer_timed(batch) -> (logits, {phase: ms})`` (device-side timing, e.g. CUDA events for
``h2d``/``compute``/``d2h``/``total``). GPU memory held by the process is read with
``nvidia-smi`` when there is one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..util.files import atomic_write_text
from .memory import current_rss_mb, peak_rss_mb
from .timing import summarize, time_calls

if TYPE_CHECKING:
    from ..runtime import Session


@dataclass
class WorkerSpec:
    """What one worker process does: the JSON spec the runner writes and the worker reads."""

    model: str  # artifact folder or preset name
    scenes: str  # .npz with ``images`` uint8 [K, H, W, 3]
    load_options: dict[str, Any] = field(default_factory=dict)  # passed to runtime.load, e.g. threads
    batch: int = 1
    iters: int = 20
    warmup: int = 3
    predictions: str | None = None  # .npy to write the [K, H, W] uint8 argmax masks to
    progress: bool = False
    label: str = "iterations"  # the progress bar's
    profile_runs: int = 0  # > 0: this process only records a per-op profile (:mod:`.profile`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSpec:
        """The spec from its JSON (an unknown key is a runner bug: ``ValueError``)."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"worker spec has unknown keys {sorted(unknown)}")
        return cls(**data)


def run_spec(spec: WorkerSpec, result: dict[str, Any]) -> dict[str, Any]:
    """Load, predict the scenes, time; fills ``result`` as it goes, so a failure keeps its stage."""
    from ..runtime import load

    result.update(status="failed", stage="load", rss_before_load_mb=current_rss_mb())
    started = time.perf_counter()
    session = load(spec.model, **spec.load_options)
    result["load_s"] = round(time.perf_counter() - started, 3)
    result["rss_after_load_mb"] = current_rss_mb()
    result["engine"] = _jsonable(session.describe())
    try:
        batch = spec.batch
        scenes = np.load(spec.scenes, allow_pickle=False)["images"]

        if spec.profile_runs:  # a profiling process: nothing else, so no timing or memory is skewed
            result["stage"] = "profile"
            from .profile import profile_backend

            tensor = _input_batch(session, scenes, batch)
            result["profile"] = profile_backend(session.backend, tensor, spec.profile_runs)
            result["status"] = "ok"
            result.pop("stage")
            return result

        result["stage"] = "accuracy"
        if spec.predictions:
            masks = session.run(session.from_rgb(list(scenes)))
            np.save(spec.predictions, np.stack(masks).astype(np.uint8), allow_pickle=False)

        result["stage"] = "timing"
        tensor = _input_batch(session, scenes, batch)
        backend = session.backend
        iters, warmup = spec.iters, spec.warmup
        times = time_calls(lambda: backend.infer(tensor), iters, warmup, progress=spec.progress, label=spec.label)
        result["latencies_ms"] = [round(t, 4) for t in times]
        result["timing"] = summarize(times, batch)
        result["first_call_included_in_warmup"] = warmup > 0
        result["engine"] = _jsonable(session.describe())  # again: JIT engines know their compile time now

        if backend.device_timers:
            result["stage"] = "device timing"
            result["device_timing"] = _device_timing(backend, tensor, iters, batch)
        if backend.async_queue:
            result["stage"] = "async throughput"
            limit = max(60.0, 20 * len(times) * (result["timing"]["mean_ms"] or 0) / 1000)
            result.update(_async_throughput(backend, tensor, max(iters, 2), batch, limit))
        gpu_mb = _gpu_memory_mb(os.getpid())
        if gpu_mb is not None:
            result["device_memory"] = {"gpu_used_mb_after_timing": gpu_mb, "source": "nvidia-smi --query-compute-apps"}
        result["status"] = "ok"
        result.pop("stage")
    finally:
        result["peak_rss_mb"] = peak_rss_mb()
        # The session is deliberately not closed: main() writes the result and leaves with
        # os._exit. Engine destructors can deadlock (seen: OpenVINO's stream executor joining a
        # callback thread that waits for the GIL held by the destroying thread), and a worker
        # that hangs after measuring would lose a finished row; the OS frees everything anyway.
        result["_session"] = session
    return result


def _input_batch(session: Session, scenes: np.ndarray, batch: int) -> np.ndarray:
    """The engine's input tensor of ``batch`` scenes (cycling through them), as ``Session.run`` would
    build it: an ``--accept`` artifact gets its uint8 batch. Built once per process, under the stage
    (timing or profile) that uses it, so a failure here is reported as that stage's."""
    size = (int(scenes.shape[1]), int(scenes.shape[2]))
    picks = session.from_rgb([scenes[i % len(scenes)] for i in range(batch)])
    return session.check_tensor(session.prepare(picks, size))


def _async_throughput(backend: Any, tensor: np.ndarray, count: int, batch: int, limit_s: float) -> dict[str, Any]:
    """Images/s through ``backend.infer_many`` (an async request queue), under a watchdog.

    The queue runs in a daemon thread: if it never returns (a request queue that deadlocks is
    an engine bug, seen once with an FP16 OpenVINO model), the row keeps its latency results
    and records why throughput is missing instead of hanging the whole benchmark.
    """
    import threading

    out: dict[str, Any] = {}

    def work() -> None:
        try:
            batches = [tensor] * count
            backend.infer_many(batches[:2])
            start = time.perf_counter_ns()
            backend.infer_many(batches)
            out["seconds"] = (time.perf_counter_ns() - start) / 1e9
        except Exception as exc:
            from ..errors import summarize_exception

            out["error"] = summarize_exception(exc, lines=4)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        return {
            "async_throughput_ips": None,
            "async_error": f"infer_many did not return within {limit_s:.0f} s",
            "_abandoned_thread": True,
        }
    if "error" in out:
        return {"async_throughput_ips": None, "async_error": out["error"]}
    return {"async_throughput_ips": round(count * batch / out["seconds"], 3)}


def _device_timing(backend: Any, tensor: np.ndarray, iters: int, batch: int) -> dict[str, Any]:
    """Statistics of device-side phase times (``infer_timed`` -> ``(logits, {phase: ms})``, CUDA events)."""
    phases: dict[str, list[float]] = {}
    for _ in range(iters):
        for name, ms in backend.infer_timed(tensor)[1].items():
            phases.setdefault(name, []).append(float(ms))
    return {name: summarize(values, batch) for name, values in phases.items()}


def _gpu_memory_mb(pid: int) -> float | None:
    """GPU memory this process holds (nvidia-smi), or ``None`` without an NVIDIA GPU."""
    from .machine import nvidia_smi

    out = nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    if out is None:
        return None
    used = [
        float(parts[1])
        for parts in (line.split(",") for line in out.splitlines())
        if len(parts) == 2 and parts[0].strip() == str(pid) and parts[1].strip().replace(".", "").isdigit()
    ]
    return sum(used) if used else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write(path: Path, data: Mapping[str, object]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m danet_deploy.bench.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result: dict[str, Any] = {}
    try:
        run_spec(WorkerSpec.from_dict(json.loads(spec_path.read_text())), result)
    except Exception as exc:
        from ..errors import DanetDeployError, summarize_exception

        result.update(status="failed", error=summarize_exception(exc, lines=4), peak_rss_mb=peak_rss_mb())
        if not isinstance(exc, DanetDeployError):
            result["traceback"] = traceback.format_exc(limit=6)
    result.pop("_abandoned_thread", None)
    session = result.pop("_session", None)  # noqa: F841 - kept referenced: os._exit below skips engine teardown
    _write(result_path, result)
    code = 0 if result.get("status") == "ok" else 1
    # Leave without running engine destructors or joining engine threads (see run_spec): the
    # result is on disk, and a stuck teardown must not turn a measured row into a timeout.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
