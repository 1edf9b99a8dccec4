"""What ``danet-bench`` is asked (:class:`BenchRequest`) and the library call that does it (:func:`run_bench`).

Why a request of its own beside :class:`~danet_deploy.bench.runner.BenchConfig`: the config is
what a run measures and is recorded verbatim in the report's ``config``; the request is what the
user asks, flag for flag (the report's file stem, plots, ``--force``, ``--json``), and its field
metadata is the command line (``danet-bench`` is generated from it, so ``--help`` and the library
cannot drift). Shared defaults are read from ``BenchConfig``, so the two cannot drift either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..request_fields import arg, parse_size
from ..targets import engine_names
from . import runner
from .report import BenchReport
from .runner import BenchConfig, default_engines


def comma_list(text: str) -> list[str]:
    """``"torch, onnxruntime"`` -> ``["torch", "onnxruntime"]`` (empty items dropped)."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _engines_help() -> str:
    return f"comma list of engines: {', '.join(engine_names())} (default: {','.join(default_engines())})"


def _default_engines() -> tuple[str, ...]:
    return tuple(default_engines())


@dataclass
class BenchRequest:
    """Everything ``danet-bench`` was asked to do; :meth:`config` checks it, :func:`run_bench` runs it."""

    model: str = arg(required=True, help="preset name (e.g. danet_demo) or checkpoint path (with --arch)")
    arch: str | None = arg(None, "preset architecture of a checkpoint given as --model")
    engines: tuple[str, ...] = arg(
        help=_engines_help,
        parser=comma_list,
        default_factory=_default_engines,
        deprecated_flags={"--targets": "the rows are engines, use --engines (same values)"},
    )
    precisions: tuple[str, ...] = arg(
        ("fp32",), "comma list of fp32, fp16, int8 (default: fp32)", parser=comma_list, metavar="PRECISIONS"
    )
    input_size: tuple[int, int] = arg(
        BenchConfig.size, "input size (default 512x512)", parser=parse_size, metavar="HxW"
    )
    batch: int = arg(BenchConfig.batch, "images per inference call")
    iters: int = arg(BenchConfig.iters, "timed iterations per combination and round")
    warmup: int = arg(BenchConfig.warmup, "untimed warm-up iterations per process")
    rounds: int = arg(
        BenchConfig.rounds,
        "interleaved measurement rounds, each a fresh process per combination "
        "running --iters iterations; latencies are pooled; use 2-3 on a shared machine",
    )
    threads: int = arg(BenchConfig.threads, "intra-op threads for every engine")
    scenes: int = arg(BenchConfig.scenes, "images for the accuracy columns")
    data: str | None = arg(
        None,
        "accuracy columns on a labelled dataset's validation split (cityscapes:ROOT, "
        "ade20k:ROOT, voc:ROOT, folder:IMAGES,LABELS) instead of generated scenes",
        metavar="SPEC",
    )
    calib_count: int = arg(BenchConfig.calib_count, "calibration images for INT8 exports")
    output: Path = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        Path("runs/bench"),
        "folder for bench.json/.csv/.md and PNG plots",
        parser=Path,
    )
    artifacts: Path | None = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        None, "folder of exported artifacts to reuse / export into (default: OUTPUT/artifacts)", parser=Path
    )
    stem: str = arg("bench", "file name stem of the written reports, a plain name without a folder")
    timeout: float = arg(BenchConfig.timeout_s, "seconds allowed per combination, > 0")
    profile: bool = arg(
        False,
        "also record a per-op profile of every row with the engine's own profiler (OpenVINO "
        "PERF_COUNT, ONNX Runtime enable_profiling, TensorRT IProfiler, torch.profiler): time by op "
        "type, top nodes, the attention core's share; in the JSON, the Markdown and STEM-profile.png",
    )
    profile_runs: int = arg(5, "inferences averaged per profile")
    plots: bool = arg(True, "skip the PNG plots", flag="--no-plots")
    progress: bool = arg(True, "no progress bars", flag="--no-progress")
    as_json: bool = arg(False, "print the JSON report instead of the table", flag="--json")
    force: bool = arg(False, "replace report files (STEM.json/.csv/.md, plots) already in --output")

    def config(self) -> BenchConfig:
        """Check every field and return the run's config, before any work and creating nothing.

        Why up front: a bad stem, timeout or output folder, or reports that would replace the user's
        files, must fail in a second rather than after minutes of exporting and timing.
        """
        from ..util.result_files import refuse_overwrite
        from .checks import check_bench_args, check_report_stem
        from .report import report_file_names

        check_report_stem(self.stem)
        if self.profile and self.profile_runs < 1:
            raise ConfigError(f"--profile-runs must be >= 1 with --profile, got {self.profile_runs}")
        output, artifacts = Path(self.output), None if self.artifacts is None else Path(self.artifacts)
        check_bench_args(self.model, output, artifacts)  # a file or read-only --output too
        cfg = BenchConfig(
            model=self.model,
            arch=self.arch,
            engines=comma_list(self.engines) if isinstance(self.engines, str) else list(self.engines),
            precisions=comma_list(self.precisions) if isinstance(self.precisions, str) else list(self.precisions),
            size=self.input_size,
            batch=self.batch,
            iters=self.iters,
            warmup=self.warmup,
            threads=self.threads,
            scenes=self.scenes,
            data=self.data,
            output=output,
            artifacts=artifacts,
            calib_count=self.calib_count,
            rounds=self.rounds,
            timeout_s=self.timeout,
            progress=self.progress,
            profile=self.profile_runs if self.profile else 0,
        )
        refuse_overwrite(output, report_file_names(self.stem, plots=self.plots), self.force)
        return cfg


@dataclass
class BenchOutcome:
    """A finished ``danet-bench`` run: the report and the files it was written to."""

    report: BenchReport
    paths: dict[str, Path]

    @property
    def passed(self) -> bool:
        """Whether the reference row (every other row's yardstick) ran: the command's exit code 0."""
        reference = self.report.row(*runner.reference_combination())
        return reference is not None and reference.status == "ok"


def run_bench(request: BenchRequest, command: str | None = None) -> BenchOutcome:
    """Check the request, run the benchmark and write ``STEM.json/.csv/.md`` (and plots) to its output.

    ``command``: the command line recorded in the report (``danet-bench`` passes its own).
    """
    from .report import write_reports

    cfg = request.config()
    report = runner.run_benchmark(cfg, command=command)
    paths = write_reports(report, request.output, stem=request.stem, plots=request.plots)
    return BenchOutcome(report, paths)
