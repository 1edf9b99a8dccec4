"""``danet-demo``: the whole job on the shipped ``danet_demo`` model: export -> run -> parity -> benchmark.

Writes into ``--output`` (default ``runs/demo``): ``artifacts/`` (one folder per target and
precision, each with its manifest), ``scene.png`` / ``overlay.png`` / ``comparison.png`` (a
generated street scene, the predicted mask over it, and image | labels | prediction side by
side), ``parity.json``, and ``bench/`` (JSON, CSV, Markdown and PNG plots of the benchmark).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..targets import PRECISIONS, engine_names, engines, reference_engine
from .common import EXIT_FAILED, EXIT_OK, cli_main, parse_size

if TYPE_CHECKING:
    from ..bench.runner import BenchConfig


def default_combos() -> list[str]:
    """FP32 and INT8 on every exported engine that runs without a GPU."""
    cpu = [e.name for e in engines() if not e.runs_presets and not e.needs_gpu]
    return [f"{e}:{p}" for p in ("fp32", "int8") for e in cpu]


def parse_combos(text: str) -> list[tuple[str, str]]:
    """``"engine:precision,..."`` -> pairs, checked against the registry."""
    combos = []
    for item in (c.strip() for c in text.split(",") if c.strip()):
        engine, sep, precision = item.partition(":")
        if not sep or engine not in engine_names() or precision not in PRECISIONS:
            raise ConfigError(f"--combos item {item!r} must be ENGINE:PRECISION with ENGINE one of "
                              f"{', '.join(engine_names())} and PRECISION one of {', '.join(PRECISIONS)}")
        combos.append((engine, precision))
    return combos


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-demo", description=__doc__)
    p.add_argument("--model", default="danet_demo")
    p.add_argument("--input-size", type=parse_size, default=(512, 512), metavar="HxW")
    p.add_argument("--combos", default=",".join(default_combos()), help="engine:precision pairs to export and compare")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scenes", type=int, default=4, help="generated val scenes for parity and accuracy")
    p.add_argument("--output", "-o", default="runs/demo")
    p.add_argument("--force", action="store_true",
                   help="replace result files (scene/overlay/comparison PNGs, parity.json, bench/ reports) already "
                        "in --output")
    return p


# What a run writes into --output (``artifacts/`` is reused or re-exported by design, see ensure_artifact).
IMAGE_NAMES = ("scene.png", "overlay.png", "comparison.png")
PARITY_NAME = "parity.json"
BENCH_FOLDER = "bench"


def output_names() -> list[str]:
    """Every result file a demo run writes, relative to ``--output`` (refused up front without --force)."""
    from ..bench.report import report_file_names

    return [*IMAGE_NAMES, PARITY_NAME, *(f"{BENCH_FOLDER}/{name}" for name in report_file_names())]


def demo_config(args: argparse.Namespace) -> tuple[list[tuple[str, str]], BenchConfig]:
    """Check every argument and the output folder, creating nothing; return the combos and bench config.

    Why before creating anything: a bad argument must not leave an empty output folder behind, and
    a read-only folder or the user's files in it must be refused before minutes of exporting.
    """
    from ..bench.runner import BenchConfig
    from ..result_files import check_output_folder, refuse_overwrite

    combos = parse_combos(args.combos)
    out = check_output_folder(args.output)  # a file, or a folder that takes no new files: refused
    check_output_folder(out / BENCH_FOLDER)
    order = engine_names()
    wanted = sorted({e for e, _ in combos} | {reference_engine().name}, key=order.index)
    precisions = sorted({p for _, p in combos} | {"fp32"}, key=PRECISIONS.index)
    cfg = BenchConfig(model=args.model, engines=wanted, precisions=precisions, size=args.input_size,
                      iters=args.iters, warmup=args.warmup, threads=args.threads, scenes=args.scenes,
                      output=out / BENCH_FOLDER, artifacts=out / "artifacts", timeout_s=600.0)
    refuse_overwrite(out, output_names(), args.force)
    return combos, cfg


def _log(message: str) -> None:
    print(f"[danet-demo] {message}", file=sys.stderr, flush=True)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from .. import runtime
    from ..bench.report import format_table, write_reports
    from ..bench.runner import ensure_artifact, export_target_for, run_benchmark, unsupported_reason
    from ..data.scenes import SceneDataset
    from ..files import atomic_write_text
    from ..parity import run_parity
    from ..result_files import prepare_output_folder, save_png
    from ..runtime.preprocess import colorize, overlay, with_legend

    combos, cfg = demo_config(args)
    out = prepare_output_folder(args.output)

    # 1. export
    _log("step 1/4: export")
    artifacts: dict[tuple[str, str], Path] = {}
    for engine, precision in combos:
        reason = unsupported_reason(engine, precision)
        if reason:
            _log(f"skipping {engine}/{precision}: {reason}")
            continue
        artifacts[(engine, precision)], _, _ = ensure_artifact(cfg, export_target_for(engine, precision), precision,
                                                               args.model, _log)

    # 2. run: a generated validation scene through the first FP32 artifact (or the reference)
    _log("step 2/4: run")
    image, label = SceneDataset("val", size=args.input_size, count=1)[0]
    first = next((path for (_, precision), path in artifacts.items() if precision == "fp32"), args.model)
    with runtime.load(first, threads=args.threads) as session:
        mask = session.run(image)
        num_classes = session.num_classes
    save_png(out / "scene.png", image)
    names = session.class_names or [str(c) for c in range(num_classes)]
    save_png(out / "overlay.png", with_legend(overlay(image, mask, num_classes), names))
    side = np.concatenate([image, colorize(label, num_classes), colorize(mask, num_classes)], axis=1)
    save_png(out / "comparison.png", with_legend(side, names))
    _log(f"wrote {out / 'overlay.png'} and {out / 'comparison.png'} (image | labels | prediction, {first})")

    # 3. parity of every artifact against the reference
    _log("step 3/4: parity")
    reports = {}
    for (engine, precision), path in artifacts.items():
        report = run_parity(path, generated=args.scenes, threads=args.threads)
        reports[f"{engine}/{precision}"] = report.to_dict()
        print(f"\n== parity {engine}/{precision} ==\n{report.table()}")
    atomic_write_text(out / PARITY_NAME, json.dumps(reports, indent=2) + "\n")

    # 4. benchmark (reuses the artifacts above)
    _log("step 4/4: benchmark")
    report = run_benchmark(cfg, log=_log)
    write_reports(report, out / BENCH_FOLDER)
    print("\n" + format_table(report))
    print(f"\nresults in {out}/ (overlay.png, comparison.png, parity.json, bench/)")
    return EXIT_OK if all(r["passed"] for r in reports.values()) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
