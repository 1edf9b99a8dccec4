"""``danet-bench``: benchmark DANet across engines and precisions (argument parsing only).

The work is done by :func:`danet_deploy.bench.runner.run_benchmark`; this module turns the
command line into a :class:`~danet_deploy.bench.runner.BenchConfig`, prints the table (or the
JSON report with ``--json``) and writes JSON, CSV, Markdown and PNG files to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import cli_main, parse_size

if TYPE_CHECKING:
    from ..bench.runner import BenchConfig


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


class _DeprecatedTargets(argparse.Action):
    """``--targets``: the old name of ``--engines`` (its values were always engines, not export targets)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print("note: --targets is deprecated: the rows are engines, use --engines (same values)", file=sys.stderr)
        setattr(namespace, self.dest, _csv(str(values)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="danet-bench",
        description="Export (when missing) and benchmark DANet on several engines and precisions, each in its own "
                    "process with equal threads: latency p50/p90/p99, throughput, peak memory, GFLOP/s vs the CPU's "
                    "GEMM peak, argmax agreement with PyTorch FP32 and mIoU on generated scenes.")
    p.add_argument("--model", required=True, help="preset name (e.g. danet_demo) or checkpoint path (with --arch)")
    p.add_argument("--arch", help="preset architecture of a checkpoint given as --model")
    from ..bench.runner import default_engines
    from ..targets import engine_names

    p.add_argument("--engines", type=_csv, default=",".join(default_engines()),
                   help=f"comma list of engines: {', '.join(engine_names())} (default: %(default)s)")
    p.add_argument("--targets", dest="engines", action=_DeprecatedTargets, metavar="ENGINES",
                   help="deprecated spelling of --engines")
    p.add_argument("--precisions", type=_csv, default="fp32", help="comma list of fp32, fp16, int8 (default: %(default)s)")
    p.add_argument("--input-size", type=parse_size, default=(512, 512), metavar="HxW", help="input size (default 512x512)")
    p.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per combination and round (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up iterations per process (default 3)")
    p.add_argument("--rounds", type=int, default=1,
                   help="interleaved measurement rounds, each a fresh process per combination running --iters "
                        "iterations; latencies are pooled (default 1; use 2-3 on a shared machine)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine (default 2)")
    p.add_argument("--scenes", type=int, default=4, help="images for the accuracy columns (default 4)")
    p.add_argument("--data", metavar="SPEC", help="accuracy columns on a labelled dataset's validation split "
                   "(cityscapes:ROOT, ade20k:ROOT, voc:ROOT, folder:IMAGES,LABELS) instead of generated scenes")
    p.add_argument("--calib-count", type=int, default=32, help="calibration images for INT8 exports (default 32)")
    p.add_argument("--output", type=Path, default=Path("runs/bench"),
                   help="folder for bench.json/.csv/.md and PNG plots (default: runs/bench)")
    p.add_argument("--artifacts", type=Path, help="folder of exported artifacts to reuse / export into "
                                                  "(default: OUTPUT/artifacts)")
    p.add_argument("--stem", default="bench",
                   help="file name stem of the written reports, a plain name without a folder (default: bench)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per combination, > 0 (default 3600)")
    p.add_argument("--profile", action="store_true",
                   help="also record a per-op profile of every row with the engine's own profiler (OpenVINO "
                        "PERF_COUNT, ONNX Runtime enable_profiling, TensorRT IProfiler, torch.profiler): time by op "
                        "type, top nodes, the attention core's share; in the JSON, the Markdown and STEM-profile.png")
    p.add_argument("--profile-runs", type=int, default=5, help="inferences averaged per profile (default 5)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    p.add_argument("--force", action="store_true",
                   help="replace report files (STEM.json/.csv/.md, plots) already in --output")
    return p


def _config(args: argparse.Namespace) -> BenchConfig:
    """Check every argument and return the run's config, before any work and creating nothing.

    Why up front: a bad stem, timeout or output folder, or reports that would replace the user's
    files, must fail in a second rather than after minutes of exporting and timing.
    """
    from ..bench.checks import check_bench_args, check_report_stem
    from ..bench.report import report_file_names
    from ..bench.runner import BenchConfig
    from ..result_files import refuse_overwrite

    check_report_stem(args.stem)
    if args.profile and args.profile_runs < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--profile-runs must be >= 1 with --profile, got {args.profile_runs}")
    check_bench_args(args.model, args.output, args.artifacts)  # a file or read-only --output too
    cfg = BenchConfig(model=args.model, arch=args.arch, engines=args.engines, precisions=args.precisions,
                      size=args.input_size, batch=args.batch, iters=args.iters, warmup=args.warmup,
                      threads=args.threads, scenes=args.scenes, data=args.data, output=args.output, artifacts=args.artifacts,
                      calib_count=args.calib_count, rounds=args.rounds, timeout_s=args.timeout,
                      progress=not args.no_progress, profile=args.profile_runs if args.profile else 0)
    refuse_overwrite(args.output, report_file_names(args.stem, plots=not args.no_plots), args.force)
    return cfg


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "danet-bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    from ..bench.report import format_table, header_lines, summary_lines, write_reports
    from ..bench.runner import run_benchmark

    cfg = _config(args)
    report = run_benchmark(cfg, command=command)
    paths = write_reports(report, args.output, stem=args.stem, plots=not args.no_plots)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(header_lines(report)))
        print()
        print(format_table(report))
        print()
        print("\n".join(summary_lines(report)))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    from ..bench.runner import reference_combination

    reference_ok = any((r["engine"], r["precision"]) == reference_combination() and r["status"] == "ok"
                       for r in report["rows"])
    return 0 if reference_ok else 1


if __name__ == "__main__":
    sys.exit(main(None))
