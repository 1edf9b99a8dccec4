"""INT8 under an accuracy budget: the fewest layers back in float so the drop stays within ``X``.

``danet-export --precision int8 --max-accuracy-drop X [--accuracy-metric miou|agreement]
[--val SOURCE --val-count N]``. The drop is measured on a validation set kept apart from the
calibration set (generated ``val`` scenes, which have labels, by default; the calibration set
uses the disjoint ``calibration`` split) or a labelled dataset's validation split (``--val
cityscapes:ROOT``, ``ade20k:ROOT``, ``voc:ROOT``, ``folder:IMAGES,LABELS``), in points:

* ``miou``: FP32 mIoU minus INT8 mIoU against the labels, x100 (needs labels: a labelled dataset,
  or generated scenes and a model trained on their classes);
* ``agreement``: the percentage of pixels whose argmax differs from the FP32 reference.

How each INT8 path meets it:

* OpenVINO: NNCF's own ``quantize_with_accuracy_control`` with that metric (NNCF ranks and
  reverts quantizers itself).
* ONNX Runtime and TensorRT Q/DQ: :func:`search_float_layers`. The search starts from the
  all-INT8 graph; its quantized layers are ranked by the noise each one adds
  (:mod:`danet_deploy.verify.perlayer`, on the first validation images), and the top ``k`` return to
  float, with ``k`` found by doubling then bisection (``--budget-evaluations`` bounds the graphs
  quantized and scored). The ``--policy`` graph (default ``attention-float``) is scored as one
  more candidate. Every graph that meets the budget is timed and the fastest kept: the goal is
  the fastest graph within the budget, not the most accurate, and never one slower than the
  fixed policy when the policy meets the budget too.

The manifest's ``extra.accuracy_budget`` records the budget, metric, validation set, measured
drop, every evaluation, and each layer kept in float with why; ``reproduce_policy`` is a
``--policy`` spec that rebuilds the same graph. A budget that cannot be met raises
:class:`AccuracyBudgetError` (exit code 2) after writing the best graph found to a side folder
``<artifact>.budget-unmet`` (never as the artifact).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import SPEC_HELP, is_data_spec, parse_data_spec
from ..errors import ConfigError, ExportError
from ..targets import targets

METRICS = ("miou", "agreement")
SIDE_SUFFIX = ".budget-unmet"


class AccuracyBudgetError(ExportError):
    """The budget could not be met; the best graph found is in ``side`` (not the artifact)."""

    def __init__(self, message: str, side: Path | None = None) -> None:
        super().__init__(message)
        self.side = side


@dataclass(frozen=True)
class AccuracyBudget:
    """What ``--max-accuracy-drop`` asked for (validated before any work)."""

    max_drop: float
    metric: str
    val: str = "generated"
    val_count: int = 8
    max_evaluations: int = 8

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_drop": self.max_drop,
            "metric": self.metric,
            "unit": _unit(self.metric),
            "val": self.val,
            "val_count": self.val_count,
            "max_evaluations": self.max_evaluations,
        }


def _unit(metric: str) -> str:
    return "mIoU points (x100) vs labels" if metric == "miou" else "% of pixels whose argmax differs from FP32"


def budget_from_request(request: Any) -> AccuracyBudget | None:
    """The request's budget, or ``None``; every mistake is a :class:`ConfigError` naming the fix."""
    drop = request.max_accuracy_drop
    if drop is None:
        given = [
            flag
            for flag, value in (("--accuracy-metric", request.accuracy_metric), ("--val", request.val))
            if value is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --max-accuracy-drop X")
        return None
    try:
        drop = float(drop)
    except (TypeError, ValueError):
        raise ConfigError(f"--max-accuracy-drop must be a number of points, got {drop!r}") from None
    if not math.isfinite(drop) or drop < 0:
        raise ConfigError(f"--max-accuracy-drop must be a finite number >= 0 (points), got {drop}")
    if request.precision != "int8":
        raise ConfigError(f"--max-accuracy-drop applies to --precision int8, not {request.precision}")
    if not request.spec.budget_method:
        able = [t.name for t in targets() if t.budget_method]
        raise ConfigError(f"--max-accuracy-drop is supported by targets {', '.join(able)}, not {request.target!r}")
    if getattr(request.target_options, "legacy_calibrator", False):
        raise ConfigError(
            "--max-accuracy-drop needs Q/DQ INT8; drop --legacy-calibrator (implicit INT8 cannot "
            "keep chosen layers in float)"
        )
    val = str(request.val or "generated")
    dataset = is_data_spec(val)
    if dataset:
        parse_data_spec(val)  # a malformed spec fails here, before any export work
    labelled = dataset or (val == "generated" and _has_scene_labels(request))
    metric = request.accuracy_metric or ("miou" if labelled else "agreement")
    if metric not in METRICS:
        raise ConfigError(f"--accuracy-metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "miou" and not labelled:
        raise ConfigError(
            "--accuracy-metric miou needs labels: a labelled dataset (--val cityscapes:ROOT, "
            "ade20k:ROOT, voc:ROOT or folder:IMAGES,LABELS), or the generated scenes for a model "
            "trained on their classes; or use --accuracy-metric agreement (argmax agreement with FP32)"
        )
    if request.val_count < 1:
        raise ConfigError(f"--val-count must be >= 1, got {request.val_count}")
    if request.budget_evaluations < 2:
        raise ConfigError(f"--budget-evaluations must be >= 2, got {request.budget_evaluations}")
    calib = str(request.calib or "generated")
    if val != "generated" and _same_source(val, calib):
        raise ConfigError(
            f"the validation source {val} is the calibration source: the drop must be measured on "
            "images the ranges were not computed from; pass a different --val (default: the generated "
            "val scenes, disjoint from the calibration split)"
        )
    if not dataset and val not in ("generated", "photos") and not Path(val).expanduser().is_dir():
        raise ConfigError(
            f"--val {val!r} is not an image folder, a labelled dataset ({SPEC_HELP}), 'generated' or 'photos'"
        )
    return AccuracyBudget(drop, metric, val, int(request.val_count), int(request.budget_evaluations))


def _same_source(a: str, b: str) -> bool:
    if is_data_spec(a) and is_data_spec(b):
        return False  # a dataset validates on its validation split and calibrates on its train split
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _has_scene_labels(request: Any) -> bool:
    """Whether the generated scenes' labels mean something for this model (its classes are theirs)."""
    from ..model import get_config, list_models
    from ..model.registry import DEMO_CLASSES

    name = request.model if request.model in list_models() else request.arch
    if name not in list_models():
        return False
    config = get_config(name)
    if request.num_classes is not None and request.num_classes != config.num_classes:
        return False
    return tuple(config.class_names) == tuple(DEMO_CLASSES)


# -- validation --------------------------------------------------------------------------------
@dataclass
class Validation:
    """The validation tensors, their labels (or ``None``) and the FP32 reference's masks and score."""

    budget: AccuracyBudget
    tensors: np.ndarray
    labels: np.ndarray | None
    num_classes: int
    description: dict[str, Any]
    reference_masks: np.ndarray | None = None
    reference_value: float | None = None
    evaluated: tuple[int, ...] | None = None  # a dataset's classes matched by name (default: all)

    def value(self, masks: np.ndarray, indices: Sequence[int] | None = None) -> float:
        """The metric in points (higher is better) of ``masks`` for the images ``indices`` (default: all)."""
        from ..data.metrics import SegmentationMetrics

        idx = list(range(len(masks))) if indices is None else list(indices)
        if self.budget.metric == "miou":
            assert self.labels is not None
            metrics = SegmentationMetrics(self.num_classes, evaluated=self.evaluated)
            metrics.update(masks, self.labels[idx])
            return 100.0 * float(metrics.miou())
        assert self.reference_masks is not None
        return 100.0 * float(np.mean(masks == self.reference_masks[idx]))

    def set_reference(self, masks: np.ndarray) -> None:
        self.reference_masks = masks
        self.reference_value = self.value(masks)

    def score(self, masks: np.ndarray) -> dict[str, float]:
        """``{value, drop, agreement}`` of one candidate's masks."""
        assert self.reference_masks is not None and self.reference_value is not None
        value = self.value(masks)
        return {
            "value": round(value, 4),
            "drop": round(self.reference_value - value, 4),
            "agreement": round(float(np.mean(masks == self.reference_masks)), 6),
        }


def validation_for(ctx: Any) -> Validation:
    """The budget's validation set for the export in progress (``ctx``: the pipeline's context), at
    its input size and preprocessing, with its classes."""
    return load_validation(
        ctx.request.budget,
        tuple(ctx.request.input_size),
        ctx.config.preprocessing.to_dict(),
        int(ctx.model.num_classes),
        ctx.log,
        ctx.config.class_names,
    )


def load_validation(
    budget: AccuracyBudget,
    size: tuple[int, int],
    preprocessing: dict[str, Any],
    num_classes: int,
    log: Callable[[str], None],
    class_names: Sequence[str] = (),
) -> Validation:
    """The validation set at the deployed size, preprocessed like the runtime (apart from calibration).

    A labelled dataset (``--val cityscapes:ROOT`` ...) gives its first ``val_count`` images of the
    validation split, labels matched to ``class_names`` by name and resized (nearest) with them."""
    labels: np.ndarray | None
    if is_data_spec(budget.val):
        from ..data.validation import dataset_validation

        tensors, labels, evaluated, desc = dataset_validation(
            budget.val, budget.val_count, size, preprocessing, class_names
        )
        return Validation(
            budget, tensors, labels if budget.metric == "miou" else None, num_classes, desc, evaluated=evaluated
        )
    if budget.val == "generated":
        from ..data.validation import generated_validation

        tensors, labels = generated_validation(budget.val_count, size, preprocessing)
        labels = labels if budget.metric == "miou" else None
        desc = {
            "source": "generated",
            "split": "val",
            "count": len(tensors),
            "size": list(size),
            "disjoint_from_calibration": "scene seeds of the val split (calibration uses its own split)",
        }
    else:
        from ..data.calibration import load_calibration

        calib = load_calibration(budget.val, count=budget.val_count, size=size, preprocessing=preprocessing, log=log)
        tensors, labels = calib.tensors, None
        desc = {"source": budget.val, "count": len(calib), "size": list(size), "hash": calib.hash}
    return Validation(budget, np.ascontiguousarray(tensors, np.float32), labels, num_classes, desc)


def onnx_masks(path: Path, tensors: np.ndarray, batch: int = 1, threads: int | None = None) -> np.ndarray:
    """Argmax masks of an ONNX graph on ``tensors`` (ONNX Runtime CPU)."""
    session = _ort_session(path, threads)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    masks = []
    for i in range(len(tensors)):
        x = tensors[i : i + 1]
        if batch > 1:
            x = np.repeat(x, batch, axis=0)
        by_name = dict(zip(outputs, session.run(None, {name: x})))
        # an --emit mask graph arg-maxes itself; otherwise the first output holds the logits
        masks.append(by_name["mask"][0] if "mask" in by_name else by_name[outputs[0]][0].argmax(0))
    return np.stack(masks)


def onnx_latency_ms(path: Path, tensor: np.ndarray, iters: int = 5, threads: int | None = None) -> float:
    """Median latency of one batch through ONNX Runtime (after one warm-up run)."""
    session = _ort_session(path, threads)
    feed = {session.get_inputs()[0].name: tensor}
    session.run(None, feed)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 3)


def _ort_session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# -- the search (ONNX Runtime, TensorRT Q/DQ) ----------------------------------------------------
@dataclass
class Evaluation:
    k: int
    drop: float
    value: float
    agreement: float
    met: bool
    path: Path
    latency_ms: float | None = None
    label: str = "search"  # "search" (top-k of the ranking) or "policy" (the --policy graph)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.label,
            "float_layers_added": self.k if self.label == "search" else None,
            "drop": self.drop,
            "value": self.value,
            "agreement": self.agreement,
            "met": self.met,
            "latency_ms": self.latency_ms,
        }


@dataclass
class SearchResult:
    chosen: Evaluation
    met: bool
    ranking: list[dict[str, Any]]
    evaluations: list[Evaluation] = field(default_factory=list)

    def float_nodes(self) -> list[str]:
        return [r["node"] for r in self.ranking[: self.chosen.k]]


def rank_layers(
    reference_onnx: Path,
    quantized_onnx: Path,
    tensors: np.ndarray,
    images: int = 2,
    threads: int | None = None,
    batch: int = 1,
) -> list[dict[str, Any]]:
    """Quantized layers (by artifact node) ordered by the noise they add, worst first (per-layer report)."""
    import onnx

    from ..verify.perlayer import compare_layers

    layers = compare_layers(
        onnx.load(str(reference_onnx)),
        onnx.load(str(quantized_onnx)),
        [np.repeat(tensors[i : i + 1], batch, axis=0) for i in range(min(images, len(tensors)))],
        threads,
    )
    # The noise a layer adds is charged to the quantized node that causes it: the layer itself when
    # it runs in int8; when a float layer's output is quantized (a Q/DQ pair between it and its
    # readers, as ModelOpt places them), the nodes reading the dequantized tensor.
    score: dict[str, float] = {}
    info: dict[str, dict[str, Any]] = {}
    for layer in layers:
        if not layer.matched or not layer.added_nsr:
            continue
        if layer.precision == "int8" and layer.node:
            charged = [layer.node]
        elif layer.quantized_output:
            charged = list(dict.fromkeys(layer.readers))
        else:
            continue
        for node in charged:
            score[node] = score.get(node, 0.0) + layer.added_nsr / len(charged)
            info.setdefault(
                node,
                {
                    "tensor": layer.tensor,
                    "sqnr_db": layer.sqnr_db,
                    "charged_as": "int8 layer"
                    if node == layer.node
                    else f"reads the quantized output of {layer.op} {layer.tensor}",
                },
            )
    quantized = {l.node for l in layers if l.precision == "int8" and l.node}
    for node in list(score):  # only nodes the quantizer can be told to keep in float
        if node not in quantized and not any(node in l.readers and l.quantized_output for l in layers):
            del score[node]
    ranking = [
        {"node": node, **info[node], "added_nsr": value} for node, value in sorted(score.items(), key=lambda kv: -kv[1])
    ]
    return ranking


def search_float_layers(
    quantize: Callable[[list[str], str], Path],
    evaluate: Callable[[Path], dict[str, float]],
    rank: Callable[[Path], list[dict[str, Any]]],
    budget: AccuracyBudget,
    latency: Callable[[Path], float],
    log: Callable[[str], None],
    alternative: Callable[[], Path] | None = None,
) -> SearchResult:
    """The fewest top-ranked layers returned to float so ``evaluate(graph)['drop'] <= budget``.

    ``quantize(float_nodes, tag)`` writes a graph with those nodes in float; the search starts
    from ``quantize([])`` and ``rank(graph)`` orders that graph's quantized layers. Doubling
    (k = 1, 2, 4, ...) finds a ``k`` that meets the budget, bisection the smallest one, within
    ``budget.max_evaluations`` quantize-and-score rounds. ``alternative`` (the request's
    ``--policy`` graph) is scored too, first, as one more candidate. Every graph that meets the
    budget is timed and the fastest is chosen: fewer float layers is usually, not always, faster
    (a quantized attention MatMul can be slower than a float one).
    """
    evaluations: dict[int, Evaluation] = {}
    extra: list[Evaluation] = []
    if alternative is not None:
        path = alternative()
        score = evaluate(path)
        extra.append(
            Evaluation(
                -1,
                score["drop"],
                score["value"],
                score["agreement"],
                score["drop"] <= budget.max_drop,
                path,
                label="policy",
            )
        )
        log(
            f"accuracy budget: the --policy graph drops {score['drop']:.3f} "
            f"({'meets' if extra[0].met else 'exceeds'} {budget.max_drop})"
        )

    def spent() -> int:
        return len(evaluations) + len(extra)

    def run(k: int, ranking: list[dict[str, Any]]) -> Evaluation:
        path = quantize([r["node"] for r in ranking[:k]], f"k{k}")
        score = evaluate(path)
        ev = Evaluation(k, score["drop"], score["value"], score["agreement"], score["drop"] <= budget.max_drop, path)
        evaluations[k] = ev
        log(
            f"accuracy budget: {k} extra layer(s) in float -> drop {ev.drop:.3f} "
            f"({'meets' if ev.met else 'exceeds'} {budget.max_drop}); {spent()}/{budget.max_evaluations} "
            "evaluations"
        )
        return ev

    base_path = quantize([], "k0")
    score = evaluate(base_path)
    base = Evaluation(0, score["drop"], score["value"], score["agreement"], score["drop"] <= budget.max_drop, base_path)
    evaluations[0] = base
    log(
        f"accuracy budget: all-INT8 graph drops {base.drop:.3f} ({'meets' if base.met else 'exceeds'} "
        f"{budget.max_drop} {budget.metric} points)"
    )
    ranking = rank(base_path) if not base.met else []
    n = len(ranking)
    lo, hi = 0, None  # lo: largest k known to fail; hi: smallest k known to meet
    if base.met:
        hi = 0
    k = 1
    while hi is None and spent() < budget.max_evaluations and lo < n:
        k = min(k, n)
        if run(k, ranking).met:
            hi = k
        else:
            lo = k
            k *= 2
    while hi is not None and hi - lo > 1 and spent() < budget.max_evaluations:
        mid = (lo + hi) // 2
        if run(mid, ranking).met:
            hi = mid
        else:
            lo = mid
    every = [*extra, *sorted(evaluations.values(), key=lambda e: e.k)]
    meeting = [e for e in every if e.met]
    if meeting:
        for e in meeting:
            e.latency_ms = latency(e.path)
        chosen = min(meeting, key=lambda e: (e.latency_ms, e.k))
        return SearchResult(chosen, True, ranking, every)
    best = min(every, key=lambda e: (e.drop, e.k))
    return SearchResult(best, False, ranking, every)


def reproduce_policy(policy: str, nodes: Sequence[str]) -> str:
    """A ``--policy`` spec that keeps ``nodes`` in float on top of ``policy``."""
    if not nodes:
        return policy
    return f"{policy}+re:^({'|'.join(re.escape(n) for n in nodes)})$"


def record(
    budget: AccuracyBudget,
    validation: Validation,
    result: SearchResult,
    policy: str,
    policy_nodes: Sequence[str],
    method: str,
    search_base: str = "quantize-all",
) -> dict[str, Any]:
    """The manifest's ``accuracy_budget`` entry (``search_base``: the policy the search added layers to)."""
    chosen = result.chosen
    kept: list[dict[str, Any]]
    if chosen.label == "policy":
        kept = [
            {
                "node": n,
                "rank": None,
                "added_nsr": None,
                "why": f"kept in float by --policy {policy}; that graph met the budget and was the fastest that did",
            }
            for n in policy_nodes
        ]
        spec = policy
    else:
        kept = [
            {
                "node": r["node"],
                "rank": i + 1,
                "added_nsr": r["added_nsr"],
                "why": f"rank {i + 1} by the noise it adds ({r['charged_as']}; NSR {_nsr(r['added_nsr'])}, "
                f"SQNR {_db(r['sqnr_db'])} at {r['tensor']} in the {search_base} graph); the budget needed "
                f"the top {chosen.k} in float",
            }
            for i, r in enumerate(result.ranking[: chosen.k])
        ]
        spec = reproduce_policy(search_base, [k["node"] for k in kept])
    return {
        **budget.to_dict(),
        "method": method,
        "met": result.met,
        "validation": validation.description,
        "reference_value": round(validation.reference_value or 0.0, 4),
        "measured_drop": chosen.drop,
        "value": chosen.value,
        "agreement": chosen.agreement,
        "latency_ms": chosen.latency_ms,
        "chosen_graph": chosen.label,
        "policy": policy,
        "policy_float_nodes": len(policy_nodes),
        "search_base": search_base,
        "layers_kept_float": kept,
        "reproduce_policy": spec,
        "evaluations": [e.to_dict() for e in result.evaluations],
        "ranking": [{k: v for k, v in r.items()} for r in result.ranking[:20]],
    }


def _nsr(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2e}"


def _db(value: float | None) -> str:
    return "n/a" if value is None else ("inf dB" if math.isinf(value) else f"{value:.1f} dB")


def write_side_folder(final: Path, files: dict[str, Path], report: dict[str, Any]) -> Path:
    """The best graph of an unmet budget, beside (never as) the artifact: ``<artifact>.budget-unmet``."""
    import shutil

    from ..manifest import atomic_artifact_dir

    side = final.parent / f"{final.name}{SIDE_SUFFIX}"
    # the side folder's name is danet-export's own (<artifact>.budget-unmet): a previous one is replaced
    with atomic_artifact_dir(side, force=True) as work:
        for name, src in files.items():
            shutil.copyfile(src, work / name)
        (work / "budget.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return side


def unmet_error(report: dict[str, Any], side: Path) -> AccuracyBudgetError:
    return AccuracyBudgetError(
        f"the accuracy budget ({report['max_drop']} {report['metric']} points) was not met: the best graph found "
        f"drops {report['measured_drop']} with {len(report['layers_kept_float'])} extra layer(s) in float after "
        f"{len(report['evaluations'])} evaluation(s); it is in {side} (not written as the artifact). Raise "
        "--max-accuracy-drop, --budget-evaluations or --calib-count, or keep more in float with --policy",
        side,
    )


def apply_onnx_budget(
    ctx: Any,
    reference: Path,
    quantize: Callable[[list[str], Path], None],
    policy: str,
    policy_nodes: Sequence[str],
    model_file: str,
) -> tuple[Path, dict[str, Any]]:
    """Run the search for an ONNX Q/DQ target; returns (chosen graph, manifest record) or raises.

    ``reference``: the FP32 ONNX the quantizer starts from (its tensor and node names are the
    quantized graph's); ``quantize(float_nodes, output)`` writes one Q/DQ graph.
    """
    request = ctx.request
    budget: AccuracyBudget = request.budget
    validation = validation_for(ctx)
    batch = ctx.static_batch
    ctx.log(
        f"accuracy budget: {budget.max_drop} {budget.metric} points on {len(validation.tensors)} validation "
        f"image(s) ({validation.description['source']}), at most {budget.max_evaluations} evaluations"
    )
    validation.set_reference(onnx_masks(reference, validation.tensors, batch))
    sample = np.repeat(validation.tensors[:1], batch, axis=0)

    def build(nodes: list[str], tag: str) -> Path:
        out = ctx.scratch / f"budget-{tag}.onnx"
        quantize(list(nodes), out)
        return out

    result = search_float_layers(
        build,
        lambda p: validation.score(onnx_masks(p, validation.tensors, batch)),
        lambda p: rank_layers(reference, p, validation.tensors, batch=batch),
        budget,
        lambda p: onnx_latency_ms(p, sample),
        ctx.log,
        alternative=(lambda: build(list(policy_nodes), "policy")) if policy_nodes else None,
    )
    entry = record(budget, validation, result, policy, policy_nodes, request.spec.budget_method)
    if not result.met:
        side = write_side_folder(request.artifact_dir(), {model_file: result.chosen.path}, entry)
        raise unmet_error(entry, side)
    ctx.log(
        f"accuracy budget met: drop {result.chosen.drop} with {result.chosen.k} extra layer(s) in float, "
        f"{result.chosen.latency_ms} ms"
    )
    return result.chosen.path, entry
