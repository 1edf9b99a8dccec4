"""Served (danet-serve on PyTriton's Triton) vs in-process: latency and throughput with 1, 2, 4 clients.

One run, one machine, one thread budget: the in-process session gets ``instances x threads``
threads, the server ``--instances`` sessions of ``--threads`` threads each. Every served mask is
compared with the in-process one. Prints and writes a Markdown table with the two ratios the
serving goals are stated in: served 1-client p50 / in-process p50 (goal <= 1.15 at 512x512) and
4-client / 1-client throughput with dynamic batching (goal >= 1).

Method, as perf_analyzer and benchmark_app: the server is warmed up at every client count (so
every batch shape the dynamic batcher forms has run once) before anything is timed, and the
latency ratio is measured in ``--rounds`` alternating blocks (in-process, HTTP, gRPC, repeated)
(and the most-clients / 1-client throughput in blocks of each protocol, back to back),
whose per-round ratios are reported as a median with their range: a shared VM's speed drifts by
tens of percent within minutes, and a ratio of two blocks measured minutes apart mostly
measures that drift.

    .venv-serve/bin/python benchmarks/serve.py --size 512 512          # the stated goals
    .venv-serve/bin/python benchmarks/serve.py --size 256 256 --requests 10   # quick look

Needs the ``serve`` extra. Exports danet_demo (ONNX, fp32, dynamic batch) unless ``--artifact``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from danet_deploy import runtime  # noqa: E402 after the sys.path insert above
from danet_deploy.serve.client import SegmentationClient  # noqa: E402 after the sys.path insert above
from danet_deploy.serve.loadtest import HEADER, generated_images, run_load  # noqa: E402 after the sys.path insert above
from danet_deploy.util.files import atomic_write_text  # noqa: E402 after the sys.path insert above
from danet_deploy.util.result_files import benchmark_result_paths  # noqa: E402 after the sys.path insert above


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> str:
    name = platform.processor() or platform.machine()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        present = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f in present)
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} logical CPUs visible ({flags})"


def export_artifact(size: tuple[int, int], root: Path) -> Path:
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    path, _ = export(
        ExportRequest(
            model="danet_demo",
            target="onnx",
            precision="fp32",
            input_size=size,
            dynamic=True,
            max_size=size,
            max_batch=8,
            output=str(root / "danet_demo-onnx-dyn"),
        ),
        log=lambda _m: None,
    )
    return path


def in_process(
    artifact: Path, images: list[np.ndarray], threads: int, runs: int, session: runtime.Session | None = None
) -> tuple[list, float, float]:
    """(masks, p50 ms, images/s) of one session with ``threads`` threads, images one at a time
    (a new session, or ``session`` kept open between the alternating blocks)."""
    own = session is None
    session = runtime.load(artifact, threads=threads) if own else session
    try:
        masks = [session.run(img) for img in images]  # also the warm-up
        times = []
        for i in range(runs):
            start = time.perf_counter()
            session.run(images[i % len(images)])
            times.append(time.perf_counter() - start)
    finally:
        if own:
            session.close()
    p50 = float(np.median(times)) * 1000
    return masks, p50, len(times) / sum(times)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--artifact", help="artifact to serve (default: export danet_demo ONNX fp32, dynamic batch)")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1), help="threads per instance")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--requests", type=int, default=20, help="requests per client")
    p.add_argument("--scenes", type=int, default=6)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--duration", type=float, default=300.0, help="bound per load run, seconds")
    p.add_argument("--rounds", type=int, default=3, help="alternating in-process / served 1-client latency blocks")
    p.add_argument("--warmup", type=int, default=2, help="untimed requests per client at each client count")
    p.add_argument(
        "--out",
        help="Markdown report; default: a fresh folder under runs/benchmarks/ (the committed "
        "benchmarks/results/serve.md is replaced only when named, with --force)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # checked before minutes of measuring: the default never lands on the committed results
    (out,) = benchmark_result_paths(args.out, ["serve.md"], ROOT, args.force)
    size = tuple(args.size)
    budget = args.instances * args.threads
    command = "python benchmarks/serve.py " + " ".join(sys.argv[1:])

    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.artifact) if args.artifact else export_artifact(size, Path(tmp))
        images = generated_images(args.scenes, size)
        references, base_p50, base_rate = in_process(artifact, images, budget, runs=max(10, args.requests))
        session = runtime.load(artifact, threads=budget)  # idle while the server runs
        http_port, grpc_port = free_port(), free_port()
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 open for the server's lifetime
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "danet_deploy.cli.serve",
                str(artifact),
                "--http-port",
                str(http_port),
                "--grpc-port",
                str(grpc_port),
                "--instances",
                str(args.instances),
                "--threads",
                str(args.threads),
                "--max-queue-delay-us",
                str(args.max_queue_delay_us),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        reports = []
        ratios: dict[str, list[float]] = {"http": [], "grpc": []}  # served 1-client p50 / in-process p50
        scaling: dict[str, list[float]] = {"http": [], "grpc": []}  # most-clients / 1-client throughput
        in_process_p50: list[float] = []
        urls = {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}
        try:
            with SegmentationClient(urls["http"], "http") as client:
                client.wait_ready(180)
            for proto, url in urls.items():  # warm-up: every client count, so every batch shape has run
                for clients in args.clients:
                    run_load(
                        url, proto, clients, args.warmup, images, references, duration_s=args.duration, timeout_s=120
                    )
            for _ in range(args.rounds):  # alternating latency blocks: in-process, then each protocol
                _, p50, _ = in_process(artifact, images, budget, runs=args.requests, session=session)
                in_process_p50.append(p50)
                for proto, url in urls.items():
                    one = run_load(
                        url, proto, 1, args.requests, images, references, duration_s=args.duration, timeout_s=120
                    )
                    ratios[proto].append(one.p50_ms / p50)
                    many = run_load(
                        url,
                        proto,
                        max(args.clients),
                        args.requests,
                        images,
                        references,
                        duration_s=args.duration,
                        timeout_s=120,
                    )
                    scaling[proto].append(many.throughput / one.throughput)
            for proto, url in urls.items():
                for clients in args.clients:
                    report = run_load(
                        url, proto, clients, args.requests, images, references, duration_s=args.duration, timeout_s=120
                    )
                    print(report.row(), flush=True)
                    reports.append(report)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            log.close()
            session.close()
        # in-process again after the served runs: on a shared machine the load drifts, and the
        # two measurements bracket the served ones
        _, after_p50, after_rate = in_process(artifact, images, budget, runs=max(10, args.requests))

    lines = [
        f"# Serving: danet-serve (PyTriton) vs in-process, danet_demo {size[0]}x{size[1]}",
        "",
        f"- measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}",
        f"- command: `{command}`",
        f"- artifact: {'given: ' + args.artifact if args.artifact else 'danet_demo ONNX fp32, dynamic batch <= 8'} "
        f"(ONNX Runtime); thread budget {budget}: server {args.instances} instance(s) x {args.threads} thread(s), "
        f"in-process 1 session x {budget} thread(s); max queue delay {args.max_queue_delay_us} us",
        f"- in-process (one image at a time), before / after the served runs: p50 {base_p50:.1f} / "
        f"{after_p50:.1f} ms, {base_rate:.2f} / {after_rate:.2f} images/s; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end",
        "",
        "```",
        HEADER,
        *[r.row() for r in reports],
        "```",
        "",
    ]
    lines.append(
        f"- in-process p50 in the {args.rounds} alternating rounds: {', '.join(f'{p:.1f}' for p in in_process_p50)} ms"
    )
    for proto in ("http", "grpc"):
        rows = {r.clients: r for r in reports if r.protocol == proto}
        if ratios[proto]:
            lines.append(
                f"- {proto}: 1-client served p50 / in-process p50, median of {len(ratios[proto])} alternating "
                f"rounds = {float(np.median(ratios[proto])):.2f} [{min(ratios[proto]):.2f}-"
                f"{max(ratios[proto]):.2f}] (goal <= 1.15 at 512x512)"
            )
        top = max(args.clients)
        if scaling[proto] and top in rows:
            lines.append(
                f"- {proto}: {top}-client / 1-client throughput, median of {len(scaling[proto])} alternating "
                f"rounds = {float(np.median(scaling[proto])):.2f} [{min(scaling[proto]):.2f}-"
                f"{max(scaling[proto]):.2f}] (goal >= 1 at 4 clients; mean batch at {top} clients in the "
                f"table {rows[top].mean_batch_size or 0:.2f})"
            )
    bad = [r for r in reports if r.errors or r.exact != r.requests]
    lines.append(f"- every served mask equal to in-process: {'yes' if not bad else 'NO'}")
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
