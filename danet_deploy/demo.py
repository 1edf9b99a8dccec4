"""The whole job on the shipped ``danet_demo`` model: export -> run -> parity -> benchmark (``danet-demo``).

``run_demo(DemoRequest(output="runs/demo"))`` writes into ``output``: ``artifacts/`` (one folder per
target and precision, each with its manifest), ``scene.png`` / ``overlay.png`` / ``comparison.png`` (a
generated street scene, the predicted mask over it, and image | labels | prediction side by side),
``parity.json``, and ``bench/`` (JSON, CSV, Markdown and PNG plots of the benchmark).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .request_fields import arg, parse_size
from .targets import PRECISIONS, engine_names, engines, reference_engine

if TYPE_CHECKING:
    from .bench.runner import BenchConfig

# What a run writes into its output (``artifacts/`` is reused or re-exported by design, see ensure_artifact).
IMAGE_NAMES = ("scene.png", "overlay.png", "comparison.png")
PARITY_NAME = "parity.json"
BENCH_FOLDER = "bench"


def default_combos() -> list[str]:
    """FP32 and INT8 on every exported engine that runs without a GPU."""
    cpu = [e.name for e in engines() if not e.runs_presets and not e.needs_gpu]
    return [f"{e}:{p}" for p in ("fp32", "int8") for e in cpu]


def _combos_help() -> str:
    return f"engine:precision pairs to export and compare (default: {','.join(default_combos())})"


def parse_combos(text: str) -> list[tuple[str, str]]:
    """``"engine:precision,..."`` -> pairs, checked against the registry."""
    combos = []
    for item in (c.strip() for c in text.split(",") if c.strip()):
        engine, sep, precision = item.partition(":")
        if not sep or engine not in engine_names() or precision not in PRECISIONS:
            raise ConfigError(
                f"--combos item {item!r} must be ENGINE:PRECISION with ENGINE one of "
                f"{', '.join(engine_names())} and PRECISION one of {', '.join(PRECISIONS)}"
            )
        combos.append((engine, precision))
    return combos


@dataclass(frozen=True)
class DemoRequest:
    """What ``danet-demo`` was asked (the CLI is generated from these fields)."""

    model: str = arg("danet_demo", "preset name or checkpoint file to export, run, compare and benchmark")
    input_size: tuple[int, int] = arg(
        (512, 512), "input height x width of every artifact (default: 512x512)", parser=parse_size, metavar="HxW"
    )
    combos: str = arg(help=_combos_help, default_factory=lambda: ",".join(default_combos()))
    iters: int = arg(20, "timed iterations per benchmark row")
    warmup: int = arg(3, "untimed iterations before the timed ones")
    threads: int = arg(2, "engine threads (run, parity and benchmark)")
    scenes: int = arg(4, "generated val scenes for parity and accuracy")
    output: str = arg(
        "runs/demo", "folder for artifacts/, the pictures, parity.json and bench/", flag=("--output", "-o")
    )
    force: bool = arg(
        False, "replace result files (scene/overlay/comparison PNGs, parity.json, bench/ reports) already in --output"
    )


def output_names() -> list[str]:
    """Every result file a demo run writes, relative to its output (refused up front without ``force``)."""
    from .bench.report import report_file_names

    return [*IMAGE_NAMES, PARITY_NAME, *(f"{BENCH_FOLDER}/{name}" for name in report_file_names())]


def demo_config(request: DemoRequest) -> tuple[list[tuple[str, str]], BenchConfig]:
    """Check every argument and the output folder, creating nothing; return the combos and bench config.

    Why before creating anything: a bad argument must not leave an empty output folder behind, and
    a read-only folder or the user's files in it must be refused before minutes of exporting.
    """
    from .bench.runner import BenchConfig
    from .util.result_files import check_output_folder, refuse_overwrite

    combos = parse_combos(request.combos)
    out = check_output_folder(request.output)  # a file, or a folder that takes no new files: refused
    check_output_folder(out / BENCH_FOLDER)
    order = engine_names()
    wanted = sorted({e for e, _ in combos} | {reference_engine().name}, key=order.index)
    precisions = sorted({p for _, p in combos} | {"fp32"}, key=PRECISIONS.index)
    cfg = BenchConfig(
        model=request.model,
        engines=wanted,
        precisions=precisions,
        size=request.input_size,
        iters=request.iters,
        warmup=request.warmup,
        threads=request.threads,
        scenes=request.scenes,
        output=out / BENCH_FOLDER,
        artifacts=out / "artifacts",
        timeout_s=600.0,
    )
    refuse_overwrite(out, output_names(), request.force)
    return combos, cfg


def _log(message: str) -> None:
    print(f"[danet-demo] {message}", file=sys.stderr, flush=True)


def run_demo(request: DemoRequest, log: Callable[[str], None] = _log) -> dict[str, dict[str, Any]]:
    """Export, run, parity, benchmark; returns the parity report of each ``engine/precision`` (each has
    ``"passed"``). Tables are printed as the steps finish; everything is checked before any work."""
    import numpy as np

    from . import runtime
    from .bench.report import format_table, write_reports
    from .bench.runner import (
        ensure_artifact,
        export_target_for,
        run_benchmark,
        unsupported_reason,
    )
    from .data.scenes import SceneDataset
    from .runtime.preprocess import colorize, overlay, with_legend
    from .util.files import atomic_write_text
    from .util.result_files import prepare_output_folder, save_png
    from .verify.parity import run_parity

    combos, cfg = demo_config(request)
    out = prepare_output_folder(request.output)

    log("step 1/4: export")
    artifacts: dict[tuple[str, str], Path] = {}
    for engine, precision in combos:
        reason = unsupported_reason(engine, precision)
        if reason:
            log(f"skipping {engine}/{precision}: {reason}")
            continue
        target = export_target_for(engine, precision)
        if target is None:  # the reference engine runs the preset itself: nothing to export
            log(f"skipping {engine}/{precision}: the reference engine runs the model itself, with no artifact")
            continue
        artifacts[(engine, precision)], _, _ = ensure_artifact(cfg, target, precision, request.model, log)

    log("step 2/4: run")  # a generated validation scene through the first FP32 artifact (or the reference)
    image, label = SceneDataset("val", size=request.input_size, count=1)[0]
    first = next((path for (_, precision), path in artifacts.items() if precision == "fp32"), request.model)
    with runtime.load(first, threads=request.threads) as session:
        mask = session.run(image)
        num_classes = session.num_classes
    save_png(out / "scene.png", image)
    names = session.class_names or [str(c) for c in range(num_classes)]
    save_png(out / "overlay.png", with_legend(overlay(image, mask, num_classes), names))
    side = np.concatenate([image, colorize(label, num_classes), colorize(mask, num_classes)], axis=1)
    save_png(out / "comparison.png", with_legend(side, names))
    log(f"wrote {out / 'overlay.png'} and {out / 'comparison.png'} (image | labels | prediction, {first})")

    log("step 3/4: parity")  # of every artifact against the reference
    reports = {}
    for (engine, precision), path in artifacts.items():
        report = run_parity(path, generated=request.scenes, threads=request.threads)
        reports[f"{engine}/{precision}"] = report.to_dict()
        print(f"\n== parity {engine}/{precision} ==\n{report.table()}")
    atomic_write_text(out / PARITY_NAME, json.dumps(reports, indent=2) + "\n")

    log("step 4/4: benchmark")  # reuses the artifacts above
    bench = run_benchmark(cfg, log=log)
    write_reports(bench, out / BENCH_FOLDER)
    print("\n" + format_table(bench))
    print(f"\nresults in {out}/ (overlay.png, comparison.png, parity.json, bench/)")
    return reports
