"""Accuracy on a labelled dataset: several models on the same images, side by side (``danet-eval``).

``evaluate(EvalRequest(models=("danet_demo", "out/ort-int8"), data="cityscapes:/data/cityscapes"))``
reads the split (:mod:`danet_deploy.data.datasets`), matches each model's classes to the dataset's
by name, runs every image through the model under the test protocol its manifest records
(:mod:`danet_deploy.eval_protocol`: the checkpoint's own, else its release's), and accumulates one
confusion matrix per model, image by image (memory does not grow with the set). The metric is
:class:`~danet_deploy.data.metrics.SegmentationMetrics`, mmsegmentation's ``IoUMetric`` definitions.
The first model is the baseline the others are compared to, class by class. Reports: :mod:`.eval_report`.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import SPEC_HELP, ClassMatch, Dataset, match_classes, open_dataset
from ..data.metrics import SegmentationMetrics, confusion_matrix
from ..errors import ConfigError
from ..eval_protocol import MODES, TestProtocol, recorded_protocol
from ..request_fields import arg, parse_size
from ..util.progress import progress_bar

PROTOCOL = "test protocol (default: the model's release protocol)"


@dataclass(frozen=True)
class EvalRequest:
    """What ``danet-eval`` was asked (the CLI is generated from these fields)."""

    models: tuple[str, ...] = arg(
        (),
        "artifact folders, model files, presets or checkpoints; the first is the baseline the others are compared to",
        positional=True,
        nargs="+",
        metavar="ARTIFACT_OR_MODEL",
    )
    data: str = arg(None, f"the labelled dataset: {SPEC_HELP}", metavar="SPEC")
    split: str | None = arg(None, "dataset split (default: the layout's validation split)")
    limit: int | None = arg(None, "evaluate the first N images of the split only", metavar="N")
    mode: str | None = arg(
        None, "override the test protocol: whole image or sliding window", choices=MODES, group=PROTOCOL
    )
    resize: tuple[int, int] | None = arg(
        None,
        "resize every image to fit HxW keeping its aspect ratio (mmseg Resize keep_ratio)",
        parser=parse_size,
        metavar="HxW",
        group=PROTOCOL,
    )
    crop: tuple[int, int] | None = arg(None, "sliding-window size", parser=parse_size, metavar="HxW", group=PROTOCOL)
    stride: tuple[int, int] | None = arg(
        None, "sliding-window stride (default 2/3 of the crop)", parser=parse_size, metavar="HxW", group=PROTOCOL
    )
    server: str | None = arg(
        None,
        "send the images to a running danet-serve at HOST:PORT (or http://, grpc://) "
        "instead of a local session; MODEL is then the artifact it serves (for its classes)",
        metavar="HOST:PORT",
        group="Triton server",
    )
    server_protocol: str = arg(
        "http", "protocol of --server HOST:PORT", choices=("http", "grpc"), group="Triton server"
    )
    in_flight: int = arg(4, "requests in flight to --server", metavar="N", group="Triton server")
    server_wait: float = arg(30.0, "seconds to wait for --server to be ready", metavar="S", group="Triton server")
    output: str | None = arg(
        None,
        "write results.json/.csv/.md, confusion-matrix plots and the worst images' overlays to DIR",
        metavar="DIR",
        group="results",
    )
    save_masks: str | None = arg(
        None, "write every predicted mask as a PNG to DIR/<model>/", metavar="DIR", group="results"
    )
    worst: int = arg(
        4, "how many worst images (lowest per-image mIoU) get overlays in --output", metavar="N", group="results"
    )
    force: bool = arg(False, "replace result files already in --output/--save-masks", group="results")
    threads: int | None = arg(None, "engine threads (default: the backend's)")
    quiet: bool = arg(False, "no progress bar")
    as_json: bool = arg(False, "print the results as JSON instead of the table", flag="--json")

    def check(self) -> None:
        if not self.models:
            raise ConfigError("name at least one artifact, model file, preset or checkpoint to evaluate")
        if not self.data:
            raise ConfigError(f"--data is required: {SPEC_HELP}")
        if self.worst < 0 or self.in_flight < 1 or not self.server_wait > 0:
            raise ConfigError("--worst must be >= 0, --in-flight >= 1 and --server-wait > 0")
        if self.server and len(self.models) != 1:
            raise ConfigError("--server evaluates the one model it serves: name only that artifact")


@dataclass
class ModelResult:
    """One model's metrics on the set, its protocol and speed."""

    name: str
    label: str
    metrics: SegmentationMetrics
    protocol: TestProtocol
    match: ClassMatch
    seconds: float
    notes: list[str] = field(default_factory=list)
    worst: list[tuple[float, int, str, np.ndarray]] = field(default_factory=list)  # (mIoU, index, name, mask)

    def to_dict(self) -> dict[str, Any]:
        images = self.metrics.images
        return {
            "model": self.name,
            "label": self.label,
            **self.metrics.to_dict(),
            "protocol": self.protocol.to_dict(),
            "protocol_text": self.protocol.describe(),
            "classes": self.match.to_dict(),
            "seconds": round(self.seconds, 3),
            "images_per_s": round(images / self.seconds, 3) if self.seconds > 0 else None,
            "notes": self.notes,
            "worst_images": [{"name": n, "miou": _round(s)} for s, _, n, _ in sorted(self.worst, key=_worst_key)],
        }


def _round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def _worst_key(entry: tuple[float, int, str, np.ndarray]) -> tuple[float, int]:
    return (entry[0] if np.isfinite(entry[0]) else 2.0, entry[1])


@dataclass
class EvalResult:
    dataset: Dataset
    results: list[ModelResult]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.describe(), "models": [r.to_dict() for r in self.results]}


def evaluate(request: EvalRequest, log: Callable[[str], None] = print) -> EvalResult:
    """Every model of ``request`` on the dataset; results (and files, when asked) in one :class:`EvalResult`."""
    from ..util.result_files import output_stems

    request.check()
    dataset = open_dataset(request.data, request.split, request.limit)
    log(
        f"{dataset.spec} split {dataset.split!r}: {len(dataset.labelled())} labelled image(s)"
        + (f", {len(dataset.skipped)} skipped (no label file)" if dataset.skipped else "")
    )
    labels = output_stems([Path(m).name or m for m in request.models])
    results = [_evaluate_model(model, label, dataset, request, log) for model, label in zip(request.models, labels)]
    outcome = EvalResult(dataset, results)
    if request.output:
        from .eval_report import write_outputs

        write_outputs(outcome, Path(request.output), request.force, log)
    return outcome


class _Described:
    """What the evaluator needs of a model served elsewhere: its manifest (no engine is loaded here)."""

    def __init__(self, folder: str) -> None:
        from ..manifest import read_manifest

        self.manifest = read_manifest(Path(folder))
        self.class_names, self.num_classes = list(self.manifest.class_names), int(self.manifest.num_classes)

    def close(self) -> None:
        pass


def model_protocol(manifest: Any, request: EvalRequest) -> TestProtocol:
    """The protocol ``danet-eval`` runs a model with: the one its manifest records (the checkpoint's
    own, else its release's, else the default; :func:`~danet_deploy.eval_protocol.recorded_protocol`),
    changed only where ``--mode/--resize/--crop/--stride`` ask."""
    return recorded_protocol(manifest.model, manifest.export, manifest.checkpoint).with_overrides(
        mode=request.mode, resize=request.resize, crop=request.crop, stride=request.stride
    )


def _evaluate_model(
    model: str, label: str, dataset: Dataset, request: EvalRequest, log: Callable[[str], None]
) -> ModelResult:
    from .. import runtime
    from .predictors import ServerPredictor, SessionPredictor

    if request.server and not Path(model).is_dir():
        raise ConfigError(
            f"with --server, name the artifact folder the server serves (for its classes and protocol), not {model!r}"
        )
    options: dict[str, Any] = {"threads": request.threads} if request.threads else {}
    session: Any = _Described(model) if request.server else runtime.load(model, **options)
    predictor: Any = None
    try:
        manifest = session.manifest
        protocol = model_protocol(manifest, request)
        match = match_classes(list(session.class_names), dataset)
        if request.server:
            if protocol.mode != "whole":
                raise ConfigError(
                    "--server runs whole images (the server's engine decides the size): pass --mode "
                    "whole, or evaluate the artifact locally"
                )
            predictor = ServerPredictor(
                request.server, request.server_protocol, request.in_flight, ready_s=request.server_wait
            )
        else:
            predictor = SessionPredictor(session, protocol)
        log(
            f"{label}: {protocol.describe()}; {len(match.evaluated)} class(es) matched by name"
            + (f"; model-only (left out of the means): {', '.join(match.model_only)}" if match.model_only else "")
            + (f"; dataset-only (pixels ignored): {len(match.dataset_only)}" if match.dataset_only else "")
        )
        for note in predictor.notes:
            log(f"{label}: note: {note}")
        result = _score(
            predictor, model, label, dataset, match, session.num_classes, list(session.class_names), protocol, request
        )
        result.notes = list(predictor.notes)
        return result
    finally:
        session.close()
        if isinstance(predictor, ServerPredictor):
            predictor.close()


def _score(
    predictor: Any,
    model: str,
    label: str,
    dataset: Dataset,
    match: ClassMatch,
    num_classes: int,
    class_names: list[str],
    protocol: TestProtocol,
    request: EvalRequest,
) -> ModelResult:
    samples = dataset.labelled()
    truth: dict[int, np.ndarray] = {}

    def items() -> Any:
        for index, sample in enumerate(samples):
            image = dataset.read_image(sample)
            truth[index] = match.apply(dataset.read_label(sample, image.shape[:2]))
            yield index, image

    metrics = SegmentationMetrics(num_classes, class_names, evaluated=match.evaluated)
    one = SegmentationMetrics(num_classes, evaluated=match.evaluated)  # one image's, to rank the worst
    worst: list[tuple[float, int, str, np.ndarray]] = []  # a max-heap by -score of the N lowest
    masks_dir = Path(request.save_masks) / label if request.save_masks else None
    bar = progress_bar(total=len(samples), desc=label, unit="img", enabled=not request.quiet)
    start = time.perf_counter()
    try:
        for index, mask in predictor.predict(items()):
            target = truth.pop(index)
            conf = confusion_matrix(mask, target, num_classes)
            metrics.confusion += conf
            metrics.images += 1
            if request.worst:
                one.confusion = conf
                entry = (-one.miou(), -index, samples[index].name, mask)
                score = entry[0] if np.isfinite(entry[0]) else -2.0
                if len(worst) < request.worst:
                    heapq.heappush(worst, (score, *entry[1:]))  # type: ignore[arg-type]
                elif score > worst[0][0]:
                    heapq.heapreplace(worst, (score, *entry[1:]))  # type: ignore[arg-type]
            if masks_dir is not None:
                _save_mask(masks_dir, samples[index].name, mask, request.force)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    kept = [(-s, -i, n, m) for s, i, n, m in worst]
    return ModelResult(model, label, metrics, protocol, match, seconds, worst=kept)


def _save_mask(folder: Path, name: str, mask: np.ndarray, force: bool) -> None:
    from ..util.result_files import save_png

    path = folder / f"{name}.png"
    if folder.resolve() not in path.resolve().parents:
        raise ConfigError(f"image name {name!r} would write outside {folder}")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace masks from an earlier run")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, mask.astype(np.uint8))
