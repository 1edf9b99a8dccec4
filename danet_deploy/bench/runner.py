"""The benchmark: export what is missing, run every engine x precision in its own process, score.

Flow: (1) generate ``K`` val scenes at the benchmark size; (2) for each combination find or
export its artifact (``--artifacts`` folder; a folder is reused only when its manifest records
what this run would export: model, target, precision, input shape, weights (checkpoint sha256 or
the preset's shipped weights), model config and export options; otherwise it is re-exported and
the log says what differed); (3) run the torch FP32 reference
first and then every row in a fresh worker process (:mod:`.worker`) with the same thread count,
in ``rounds`` interleaved rounds whose latencies are pooled;
(4) compare each row's argmax masks with the reference's and with the scene labels; (5) add
FLOPs, achieved GFLOP/s against this CPU's measured GEMM peak, and ratios against torch FP32.

A combination that cannot run (torch INT8, an exporter or backend not installed, TensorRT
without a GPU, an export or engine error) becomes a row with its reason; the rest still run.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, UnknownModelError
from ..targets import PRECISIONS, engine_names, engines, get_engine, reference_engine, target_for
from ..util.counts import is_count
from ..util.progress import progress_bar
from .rows import Row, RowRun
from .sections import MachineInfo, ReportConfig, Summary
from .timing import summarize
from .worker import WorkerSpec

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .report import BenchReport


def reference_combination() -> tuple[str, str]:
    """The row every other row is compared with (the reference engine at FP32)."""
    return reference_engine().name, "fp32"


def default_engines() -> list[str]:
    """Engines benchmarked when ``--engines`` is not given: every one that needs no GPU."""
    return [e.name for e in engines() if not e.needs_gpu]


@dataclass
class BenchConfig:
    """What ``danet-bench`` was asked to do (recorded verbatim in the JSON report)."""

    model: str  # preset name or checkpoint path
    engines: list[str] = field(default_factory=default_engines)  # runtime engines (rows)
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    size: tuple[int, int] = (512, 512)
    batch: int = 1
    iters: int = 20
    warmup: int = 3
    threads: int = 2
    scenes: int = 4  # images for the accuracy columns (generated val scenes or --data)
    data: str | None = None  # a labelled dataset (cityscapes:ROOT ...) instead of the scenes
    arch: str | None = None  # preset of a checkpoint given as ``model``
    output: Path | None = None
    artifacts: Path | None = None
    calib_count: int = 32
    rounds: int = 1  # interleaved measurement rounds (a fresh process each)
    timeout_s: float = 3600.0
    progress: bool = True
    export_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per export target
    profile: int = 0  # per-op profile over this many inferences per row (0: none)
    targets: InitVar[list[str] | None] = None  # deprecated spelling of ``engines`` (it never held targets)

    def __post_init__(self, targets: list[str] | None) -> None:
        if targets is not None:
            warnings.warn(
                "BenchConfig(targets=...) is deprecated: the rows are engines, pass engines=...",
                DeprecationWarning,
                stacklevel=3,
            )
            self.engines = list(targets)
        # a Python caller's engines="onnxruntime,openvino" is the flag's text, not one engine per letter
        if isinstance(self.engines, str):
            self.engines = self.engines.split(",")
        if isinstance(self.precisions, str):
            self.precisions = self.precisions.split(",")
        self.engines = [e.strip().lower() for e in self.engines if e.strip()]
        self.precisions = [p.strip().lower() for p in self.precisions if p.strip()]
        known = engine_names()
        bad = [e for e in self.engines if e not in known]
        if bad:
            raise ConfigError(f"unknown engine(s) {bad}; choose from {', '.join(known)}")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ConfigError(f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}")
        if not self.engines or not self.precisions:
            raise ConfigError(
                f"give at least one engine and one precision, e.g. --engines {','.join(known[:2])} --precisions fp32"
            )
        if self.data:
            from ..data.datasets import open_dataset

            open_dataset(self.data, limit=self.scenes)  # a wrong spec, root or split fails before any export
        # what no flag could produce (a Python caller's 64, "64x64" or 2.5 threads) names its option too
        if not isinstance(self.size, (tuple, list)) or len(self.size) != 2 or not all(map(is_count, self.size)):
            raise ConfigError(f"--input-size must be two whole numbers (height, width), got {self.size!r:.60}")
        h, w = self.size
        if h < 32 or w < 32:
            raise ConfigError(f"--input-size must be at least 32x32 (DANet downsamples by 8), got {h}x{w}")
        if self.profile < 0:
            raise ConfigError(f"--profile-runs must be >= 0, got {self.profile}")
        for name in ("batch", "iters", "threads", "scenes", "rounds", "calib_count"):  # calib: the INT8 exports'
            if not is_count(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if not is_count(self.warmup, 0):
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup!r}")
        timeout = self.timeout_s
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"--timeout must be a finite number of seconds > 0, got {self.timeout_s}; e.g. --timeout 600"
            )

    @property
    def model_stem(self) -> str:
        path = Path(self.model)
        return path.stem if path.suffix else self.model

    def combinations(self) -> list[tuple[str, str]]:
        """Every requested engine x precision, the reference engine's FP32 always first."""
        reference = reference_combination()
        combos = [(e, p) for e in self.engines for p in self.precisions]
        if reference in combos:
            combos.remove(reference)
        return [reference, *combos]

    def to_dict(self) -> dict[str, Any]:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        data["size"] = list(self.size)
        return data


def export_target_for(engine: str, precision: str) -> str | None:
    """The ``danet-export`` target behind a benchmark row (``engine`` at ``precision``).

    ``None`` for the reference engine (it runs the preset itself) and where no target writes that
    precision for that engine. Read from the registry: e.g. ONNX Runtime FP32 runs the plain FP32
    ONNX of target ``onnx``, its INT8/FP16 rows come from target ``onnxruntime``.
    """
    spec = target_for(engine, precision)
    return spec.name if spec is not None else None


def unsupported_reason(engine: str, precision: str) -> str | None:
    """Why a combination cannot run here at all (before trying), or ``None``."""
    found = get_engine(engine)
    if found.runs_presets:
        if precision == "fp32":
            return None
        others = ", ".join(e.name for e in engines() if not e.runs_presets)
        return f"{found.name} runs the preset in fp32 only; benchmark {precision} with {others}"
    spec = target_for(engine, precision)
    if spec is None:
        return f"no export target writes {precision} for the {found.name} engine"
    missing = [r.pip for r in (*spec.missing(), *(r for r in found.requires if not r.installed()))]
    if missing:
        extras = ",".join(dict.fromkeys(x for e in (spec.extra, found.extra) for x in e.split(",") if x))
        return f"{', '.join(dict.fromkeys(missing))} not installed (pip install 'danet-deploy[{extras}]')"
    if found.needs_gpu:
        from .machine import gpu_info

        if not gpu_info():
            return f"{found.label} needs an NVIDIA GPU; none found (nvidia-smi)"
    return None


# -- artifacts ------------------------------------------------------------------------------
def artifact_path(cfg: BenchConfig, export_target: str, precision: str) -> Path:
    base = cfg.artifacts or (Path(cfg.output or ".") / "artifacts")
    h, w = cfg.size
    return Path(base) / f"{cfg.model_stem}-{export_target}-{precision}-{h}x{w}-b{cfg.batch}"


# Export-request fields that do not change the exported model: where it went, how it was invoked, the
# source's path (its content is compared by sha256) and the opset (the manifest records the graph's
# actual opset there). Calibration fields matter for INT8 only.
_REQUEST_FIELDS_IGNORED = frozenset({"model", "output", "force", "verify", "opset"})
_CALIBRATION_FIELDS = frozenset(
    {
        "calib",
        "calib_count",
        "calib_method",
        "max_accuracy_drop",
        "accuracy_metric",
        "val",
        "val_count",
        "budget_evaluations",
        "accuracy_budget",
    }
)
# Model-config fields that do not change what the model computes: the attention chunking is exact
# (and chosen per export), the description is prose.
_CONFIG_FIELDS_IGNORED = frozenset({"attention_chunks", "description"})


def export_request(cfg: BenchConfig, export_target: str, precision: str, path: Path) -> Any:
    """The :class:`~danet_deploy.export.pipeline.ExportRequest` this benchmark makes for one artifact.

    One definition for exporting and for deciding whether an existing artifact is what an export
    would write now, so the two can never drift apart.
    """
    from ..export.pipeline import ExportRequest

    return ExportRequest(
        model=cfg.model,
        target=export_target,
        precision=precision,
        output=path,
        input_size=cfg.size,
        batch=cfg.batch,
        arch=cfg.arch,
        calib_count=cfg.calib_count,
        options=dict(cfg.export_options.get(export_target, {})),
    )


def _differing_keys(recorded: Mapping[str, object], wanted: Mapping[str, object], ignored: frozenset[str]) -> list[str]:
    """Keys of ``wanted`` (less ``ignored``) whose value ``recorded`` lacks or holds differently."""
    missing = object()
    return [k for k, v in wanted.items() if k not in ignored and recorded.get(k, missing) != v]


def _weights_mismatch(manifest: Manifest, cfg: BenchConfig, config: Any) -> str | None:
    """Why the artifact's weights are not the ones this run would export, or ``None``.

    A checkpoint is identified by its sha256, a preset by the shipped weights file its config names
    (``None`` for the seeded random initialisation) and that file's sha256 at export time, so
    weights retrained into the shipped file make older artifacts stale.
    """
    from ..export.pipeline import shipped_weights_sha256
    from ..util.files import sha256_file

    ckpt = Path(cfg.model)
    if ckpt.is_file():
        if manifest.checkpoint is None or manifest.checkpoint.sha256 != sha256_file(ckpt):
            return "weights (checkpoint sha256)"
        return None
    if manifest.checkpoint is not None:
        return f"weights (exported from checkpoint {manifest.checkpoint.path!r}, not preset {cfg.model})"
    if manifest.model.weights != config.weights:
        return f"weights ({manifest.model.weights or 'random init'}, not {config.weights or 'random init'})"
    if manifest.export.weights_sha256 != shipped_weights_sha256(config):
        return f"weights ({config.weights} changed since the export, or the artifact predates its sha256)"
    return None


def artifact_mismatches(
    manifest: Manifest, cfg: BenchConfig, export_target: str, precision: str, model_name: str
) -> list[str]:
    """What differs between an existing artifact and the one this run would export (empty: reusable).

    Why so much: an artifact is reused instead of re-exported, so anything that changes its
    outputs (weights, class count, architecture options, export options) must match, or the row
    silently times and scores a different model than the one the report names.
    """
    want_shape = [cfg.batch, 3, *cfg.size]
    failed = [
        name
        for name, ok in (
            ("target", manifest.target == export_target),
            ("precision", manifest.precision == precision),
            ("model", manifest.model.name == model_name),
            ("input shape", list(manifest.input.shape) == want_shape),
        )
        if not ok
    ]
    if failed:  # another artifact altogether: its options say nothing about this run's
        return failed
    config = _model_config(cfg)
    weights = _weights_mismatch(manifest, cfg, config)
    if weights:
        failed.append(weights)
    if not Path(cfg.model).is_file():  # a checkpoint's config follows from its sha256 and the request
        keys = _differing_keys(manifest.model.to_dict(), config.to_dict(), _CONFIG_FIELDS_IGNORED)
        if keys:
            failed.append(f"model config ({', '.join(keys)})")
    ignored = _REQUEST_FIELDS_IGNORED | (frozenset() if precision == "int8" else _CALIBRATION_FIELDS)
    request = export_request(cfg, export_target, precision, artifact_path(cfg, export_target, precision))
    keys = _differing_keys(manifest.export.to_dict(), request.to_dict(), ignored)
    if keys:
        failed.append(f"export options ({', '.join(keys)})")
    return failed


def matching_artifact(
    path: Path, cfg: BenchConfig, export_target: str, precision: str, model_name: str
) -> tuple[bool, str]:
    """Whether ``path`` is a verified artifact of exactly what this run would export, and why not."""
    from ..errors import DanetDeployError
    from ..manifest import read_manifest

    if not path.exists():
        return False, "not exported yet"
    try:
        manifest = read_manifest(path, verify=True)
    except DanetDeployError as exc:
        return False, f"existing folder unusable ({exc})"
    failed = artifact_mismatches(manifest, cfg, export_target, precision, model_name)
    return (not failed), ("matches" if not failed else f"differs in {'; '.join(failed)}")


def ensure_artifact(
    cfg: BenchConfig, export_target: str, precision: str, model_name: str, log: Callable[[str], None]
) -> tuple[Path, bool, float | None]:
    """(artifact folder, reused?, export seconds): reuse a matching artifact or export a fresh one."""
    from ..export.pipeline import export

    path = artifact_path(cfg, export_target, precision)
    ok, why = matching_artifact(path, cfg, export_target, precision, model_name)
    if ok:
        log(f"reusing {path}")
        return path, True, None
    log(f"exporting {export_target}/{precision} to {path} ({why})")
    started = time.perf_counter()
    export(export_request(cfg, export_target, precision, path), log=log)
    return path, False, round(time.perf_counter() - started, 2)


def artifact_size_mb(path: Path) -> float:
    """Size of the model file(s) of an artifact folder (manifest excluded), MiB."""
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "manifest.json")
    return round(total / 2**20, 2)


# -- workers -------------------------------------------------------------------------------
def worker_env(threads: int) -> dict[str, str]:
    """The child's environment: every thread pool capped to ``threads`` (equal for all engines)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run_worker(
    spec: WorkerSpec | dict[str, Any], workdir: Path, name: str, threads: int, timeout_s: float
) -> dict[str, Any]:
    """Run one combination in a fresh Python process; its JSON result (or why there is none)."""
    spec_path, result_path = workdir / f"{name}.spec.json", workdir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec.to_dict() if isinstance(spec, WorkerSpec) else spec))
    cmd = [sys.executable, "-m", "danet_deploy.bench.worker", str(spec_path), str(result_path)]
    try:
        proc = subprocess.run(
            cmd,
            env=worker_env(threads),
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            timeout=timeout_s,
            cwd=os.getcwd(),
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {timeout_s:.0f} s; lower --iters or raise --timeout"}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if proc.returncode < 0:
        return {
            "status": "failed",
            "error": f"worker killed by signal {-proc.returncode}"
            + (" (out of memory? try a smaller --input-size)" if -proc.returncode == 9 else ""),
        }
    tail = (proc.stdout or "").strip().splitlines()[-1:] or [""]
    return {"status": "failed", "error": f"worker exited with code {proc.returncode} without a result {tail[0]}"}


# -- accuracy ------------------------------------------------------------------------------
def accuracy(
    masks: np.ndarray,
    reference: np.ndarray | None,
    labels: np.ndarray | None,
    num_classes: int,
    evaluated: tuple[int, ...] | None = None,
) -> dict[str, float | None]:
    """Argmax agreement with the reference masks and mIoU against the labels (``evaluated``: the
    classes a dataset shares with the model, matched by name)."""
    from ..data.metrics import SegmentationMetrics, finite_or_none

    out: dict[str, float | None] = {"argmax_agreement": None, "miou_vs_labels": None, "miou_vs_reference": None}
    if reference is not None and reference.shape == masks.shape:
        out["argmax_agreement"] = round(float(np.mean(masks == reference)), 6)
        vs_ref = SegmentationMetrics(num_classes)
        vs_ref.update(masks, reference)
        out["miou_vs_reference"] = finite_or_none(vs_ref.miou())
    if labels is not None:
        metrics = SegmentationMetrics(num_classes, evaluated=evaluated)
        metrics.update(masks, labels)
        out["miou_vs_labels"] = finite_or_none(metrics.miou())
    return out


# -- the benchmark -------------------------------------------------------------------------
def _check_plannable(cfg: BenchConfig, output_stride: int) -> None:
    """Refuse an input size whose position attention no export of this run could plan, before anything
    is allocated for it. Why: the scenes for the accuracy columns are generated at ``cfg.size`` in this
    process first, so ``--input-size 100000x100000`` (every row's export would refuse it) asked for
    ~120 GB of images instead of the exporter's message; a run that sets its own attention budget or
    chunks in ``export_options`` is left to the exporter."""
    from ..planner import plan_attention

    if any({"attention_memory", "attention_chunks"} & set(options) for options in cfg.export_options.values()):
        return
    plan_attention(cfg.size, cfg.batch, "fp32", output_stride)  # raises the exporter's ConfigError


def _model_config(cfg: BenchConfig) -> Any:
    from ..model import get_config, list_models

    if cfg.model in list_models():
        return get_config(cfg.model)
    if not Path(cfg.model).is_file():
        raise UnknownModelError(
            f"unknown model {cfg.model!r}: neither a preset ({', '.join(list_models())}) nor an "
            "existing checkpoint file"
        )
    if not cfg.arch:
        raise ConfigError(
            f"{cfg.model} is a checkpoint: also pass --arch PRESET ({', '.join(list_models())}) to say "
            "which architecture it holds"
        )
    return get_config(cfg.arch)


def _reference_weights_mb(cfg: BenchConfig, config: Any) -> float | None:
    from ..model.registry import weights_dir

    path = (
        Path(cfg.model) if Path(cfg.model).is_file() else (weights_dir() / config.weights if config.weights else None)
    )
    return round(path.stat().st_size / 2**20, 2) if path is not None and path.is_file() else None


def _has_labels(config: Any) -> bool:
    """Scene labels mean something only for models trained on the generated scenes' classes."""
    from ..model.registry import DEMO_CLASSES

    return tuple(config.class_names) == tuple(DEMO_CLASSES)


def _log(message: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(f"[danet-bench] {message}", file=sys.stderr)
    except ImportError:
        print(f"[danet-bench] {message}", file=sys.stderr, flush=True)


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = _log, command: str | None = None) -> BenchReport:
    """Run the whole benchmark; return its report (``to_dict()``: the JSON schema in :mod:`.report`).

    Two phases: every combination is first exported (or found), then measured in ``cfg.rounds``
    interleaved rounds (each round runs every combination once, in order, each in a fresh
    process). Interleaving spreads slow phases of a shared machine over all rows instead of
    penalising whichever row happened to run during them, which keeps the ratios honest.
    """
    from ..data.scenes import SceneDataset
    from .flops import count_preset_flops
    from .gemm import measure_gemm_peak
    from .machine import load_average, machine_info
    from .report import BenchReport, summarize_best

    started = time.perf_counter()
    config = _model_config(cfg)
    _check_plannable(cfg, config.output_stride)
    labelled = _has_labels(config)
    log(
        f"model {cfg.model} ({config.name}, {config.num_classes} classes), {cfg.size[0]}x{cfg.size[1]}, "
        f"batch {cfg.batch}, {cfg.threads} threads, {cfg.rounds} round(s) of {cfg.iters} iterations"
    )
    machine = machine_info()
    load_before = load_average()
    gemm_runs = [measure_gemm_peak(cfg.threads)]
    flops = count_preset_flops(config.name, cfg.size, cfg.batch, num_classes=config.num_classes)
    log(
        f"{flops.total / 1e9:.1f} GFLOP per batch ({flops.attention / 1e9:.2f} in attention); "
        f"GEMM {gemm_runs[0]['gflops_peak']} GFLOP/s"
    )

    evaluated: tuple[int, ...] | None = None
    if cfg.data:
        from ..data.validation import dataset_images

        images_arr, labels_arr, evaluated, source = dataset_images(cfg.data, cfg.scenes, cfg.size, config.class_names)
        labelled = True
        source["labels_used"] = True
        log(f"accuracy columns: {len(images_arr)} image(s) of {cfg.data} split {source['split']!r}")
    else:
        dataset = SceneDataset("val", size=cfg.size, count=cfg.scenes)
        images, labels = zip(*(dataset[i] for i in range(len(dataset))))
        images_arr, labels_arr = np.stack(images), np.stack(labels)
        source = {"split": "val", "count": cfg.scenes, "size": list(cfg.size), "labels_used": labelled}

    runs = [
        RowRun(Row(engine, precision, export_target_for(engine, precision), cfg.batch, cfg.threads))
        for engine, precision in cfg.combinations()
    ]
    bar = progress_bar(total=len(runs) * (1 + cfg.rounds), desc="combinations", unit="run", enabled=cfg.progress)
    with tempfile.TemporaryDirectory(prefix="danet-bench-") as tmp:
        workdir = Path(tmp)
        scenes_path = workdir / "scenes.npz"
        np.savez(scenes_path, images=images_arr)
        for run in runs:  # phase 1: artifacts
            row = run.row
            _describe_bar(bar, f"export {row.name}")
            try:
                _prepare_row(cfg, run, config, log)
            except Exception as exc:
                row.update(status="failed", reason=_reason(exc))
            if row.status != "pending":
                log(f"{row.name}: {row.status} ({row.reason})")
            _advance(bar)
        for round_index in range(cfg.rounds):  # phase 2: measurements, interleaved
            for run in runs:
                if run.row.status == "pending":
                    _describe_bar(bar, f"round {round_index + 1}/{cfg.rounds} {run.row.name}")
                    _measure_row(cfg, run, workdir, scenes_path, round_index)
                _advance(bar)
        if cfg.profile:  # phase 3: per-op profiles, each in its own process after the timed rounds
            for run in runs:
                if run.row.status == "pending":
                    _describe_bar(bar, f"profile {run.row.name}")
                    _profile_row(cfg, run, workdir, scenes_path)
    if bar is not None:
        bar.close()
    gemm_runs.append(measure_gemm_peak(cfg.threads))
    gemm = max(gemm_runs, key=lambda g: g["gflops_peak"] or 0) | {
        "runs_gflops_peak": [g["gflops_peak"] for g in gemm_runs],
        "when": "before and after the rows; best kept",
    }
    if "int8" in cfg.precisions:
        gemm["int8"] = measure_gemm_peak(cfg.threads, dtype="int8")

    reference_masks: np.ndarray | None = None
    rows = [run.row for run in runs]
    for run in runs:
        row = run.row
        if row.status == "pending":
            row.status = "ok"
            stats = summarize(row.latencies_ms, cfg.batch)
            row.update(**{k: v for k, v in stats.items() if hasattr(row, k)})
        if row.status == "ok" and run.masks is not None:
            if (row.engine, row.precision) == reference_combination():
                reference_masks = run.masks
            row.update(
                **accuracy(run.masks, reference_masks, labels_arr if labelled else None, config.num_classes, evaluated)
            )
        _add_compute(row, flops.total, gemm.get("int8") if row.precision == "int8" else gemm)
        log(f"{row.name}: {row.status}" + (f" p50 {row.p50_ms} ms" if row.status == "ok" else f" ({row.reason})"))
    _add_ratios(rows, cfg.iters)
    machine["load_average"] = {"before": load_before, "after": load_average()}
    return BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        config=ReportConfig.from_dict(cfg.to_dict()),
        model={
            "name": config.name,
            "source": cfg.model,
            "num_classes": config.num_classes,
            "weights": "checkpoint"
            if Path(cfg.model).is_file()
            else ("shipped" if config.weights else "random (seeded, untrained preset)"),
        },
        machine=MachineInfo.from_dict(machine),
        gemm=gemm,
        flops=flops.to_dict(),
        scenes=source,
        rows=rows,
        summary=Summary.from_dict(summarize_best([row.to_dict() for row in rows])),
        seconds=round(time.perf_counter() - started, 1),
    )


def _prepare_row(cfg: BenchConfig, run: RowRun, config: Any, log: Callable[[str], None]) -> None:
    """Decide whether a combination can run and find or export its artifact."""
    row = run.row
    reason = unsupported_reason(row.engine, row.precision)
    if reason:
        row.update(status="unsupported", reason=reason)
        return
    run.load_options = {"threads": cfg.threads}
    if get_engine(row.engine).runs_presets:
        run.model_ref = cfg.model
        run.load_options["backend"] = row.engine  # a preset loads with the reference engine unless told
        if Path(cfg.model).is_file():
            run.load_options["model"] = cfg.arch
        row.update(file_size_mb=_reference_weights_mb(cfg, config), artifact=f"reference:{cfg.model}")
    else:
        assert row.export_target is not None  # unsupported_reason checked that a target exists
        path, reused, seconds = ensure_artifact(cfg, row.export_target, row.precision, config.name, log)
        run.model_ref = str(path)
        row.update(artifact=str(path), reused_artifact=reused, export_s=seconds, file_size_mb=artifact_size_mb(path))


def _measure_row(cfg: BenchConfig, run: RowRun, workdir: Path, scenes_path: Path, round_index: int) -> None:
    """One round of one combination in a fresh process; latencies are pooled across rounds."""
    row = run.row
    masks_path = workdir / f"{row.name}.masks.npy"
    spec = _worker_spec(
        cfg,
        run,
        scenes_path,
        iters=cfg.iters,
        warmup=cfg.warmup,
        progress=cfg.progress,
        predictions=str(masks_path) if round_index == 0 else None,
        label=row.name,
    )
    result = run_worker(spec, workdir, f"{row.name}-r{round_index}", cfg.threads, cfg.timeout_s)
    if result.get("status") != "ok":
        stage = f" (while {result['stage']})" if result.get("stage") else ""
        row.update(
            status="failed",
            reason=f"{result.get('error', 'unknown error')}{stage}",
            peak_rss_mb=_max(row.peak_rss_mb, result.get("peak_rss_mb")),
        )
        return
    row.rounds += 1
    row.latencies_ms.extend(result.get("latencies_ms", []))
    row.peak_rss_mb = _max(row.peak_rss_mb, result.get("peak_rss_mb"))
    row.rss_before_load_mb = row.rss_before_load_mb or result.get("rss_before_load_mb")
    row.load_s = result.get("load_s") if row.load_s is None else min(row.load_s, result.get("load_s") or 1e9)
    row.engine_info = row.engine_info or result.get("engine")
    compile_s = (result.get("engine") or {}).get("compile_s")
    if compile_s is not None and row.compile_s is None:  # torch.compile: first round's compilation,
        row.compile_s = compile_s  # kept out of every latency
    if result.get("async_error"):
        row.async_error = result["async_error"]
    if result.get("async_throughput_ips") is not None:
        row.async_throughput_ips = _max(row.async_throughput_ips, result["async_throughput_ips"])
    if "device_timing" in result:
        row.device_timing_rounds.append(result["device_timing"])
        row.device_timing = result["device_timing"]
    if "device_memory" in result:
        row.device_memory_rounds.append(result["device_memory"])
        row.device_memory = result["device_memory"]
    if round_index == 0:
        run.masks = np.load(masks_path, allow_pickle=False)


def _profile_row(cfg: BenchConfig, run: RowRun, workdir: Path, scenes_path: Path) -> None:
    """The row's per-op profile (:mod:`.profile`) from a fresh process; its failure is recorded, not fatal."""
    row = run.row
    spec = _worker_spec(cfg, run, scenes_path, profile_runs=cfg.profile)
    result = run_worker(spec, workdir, f"{row.name}-profile", cfg.threads, cfg.timeout_s)
    row.profile = (
        result.get("profile")
        if result.get("status") == "ok"
        else {"error": f"profiling process failed: {result.get('error', 'unknown error')}"}
    )


def _worker_spec(cfg: BenchConfig, run: RowRun, scenes_path: Path, **what: Any) -> WorkerSpec:
    """The spec of one worker process of ``run`` (``what``: the timing or profiling fields)."""
    if run.model_ref is None:
        raise ValueError(f"{run.row.name} has no model to load (it was never prepared)")
    return WorkerSpec(
        model=run.model_ref, load_options=run.load_options, batch=cfg.batch, scenes=str(scenes_path), **what
    )


def _max(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def _describe_bar(bar: Any, text: str) -> None:
    if bar is not None:
        bar.set_description(text)


def _advance(bar: Any) -> None:
    if bar is not None:
        bar.update(1)


def _add_compute(row: Row, flops_total: int, peak: Mapping[str, Any] | None) -> None:
    """Achieved GFLOP/s at p50, and its fraction of the GEMM peak of the row's precision (or why not)."""
    from .gemm import efficiency

    if row.p50_ms:
        achieved = flops_total / (row.p50_ms / 1000.0) / 1e9
        row.gflops_achieved = round(achieved, 2)
        row.gemm_peak_gflops = (peak or {}).get("gflops_peak")
        row.gemm_efficiency, row.gemm_note = efficiency(achieved, peak, row.precision)


def _add_ratios(rows: list[Row], iters: int) -> None:
    """p50 latency of each row divided by the reference FP32 p50 from this same run (< 1 is faster),
    and the same ratio round by round (:func:`~.timing.paired_round_ratios`) when there were rounds to pair."""
    from .timing import paired_round_ratios

    reference = reference_combination()
    ref = next((r for r in rows if (r.engine, r.precision) == reference and r.status == "ok"), None)
    for row in rows:
        if ref is not None and ref.p50_ms and row.p50_ms:
            row.ratio_vs_torch_fp32 = round(row.p50_ms / ref.p50_ms, 4)
            if min(row.rounds, ref.rounds) >= 2:
                row.ratio_rounds = paired_round_ratios(row.latencies_ms, ref.latencies_ms, iters)


def _reason(exc: BaseException) -> str:
    from ..errors import summarize_exception

    return summarize_exception(exc, lines=4)
