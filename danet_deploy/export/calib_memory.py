"""Calibration memory that fits the device: planned before it starts, bounded while it runs.

Why ONNX Runtime's min/max calibration grows with resolution far beyond an inference: its
calibrator adds a ReduceMin/ReduceMax pair (scalar outputs) for every activation and runs the
augmented graph with the default execution order, which walks back from the graph outputs and
schedules those reductions after the whole network -- so every activation of the image is alive
at once (measured here on ``danet_demo`` at 512x1024: 2.2 GB peak RSS against 0.7 GB for a plain
inference; 1024x2048 is four times the activations). ``CalibMaxIntermediateOutputs`` does not
help (it bounds the stored *scalars*, and in ONNX Runtime 1.32 it discards them instead of
merging them).

The bounded path keeps ONNX Runtime's own calibrator -- its augmented graph, its reductions, its
merge -- and only changes the order the graph runs in: :func:`memory_order` sorts the nodes
depth-first from the model's outputs (each input computed just before it is needed, so one
attention chunk's energy and softmax are gone before the next chunk starts) and puts every
reduction right after its tensor's producer, and the session runs that list as given
(``ExecutionOrder.PRIORITY_BASED``). An activation is reduced and freed as the network goes:
calibration costs about one inference plus the calibration tensors, for any image count
(measured on ``danet_demo``: 0.6 GB at 1024x2048 with 16 attention chunks where the unbounded
run took 9.4 GB; PRIORITY_BASED alone, on the exporter's node list which computes all 16
chunk energies first, still took 4.5 GB). Min/max reductions are exact, so the ranges
are identical to the unbounded run's (tested); they are written in ONNX Runtime's calibration
cache format and ``quantize_static`` reads them instead of calibrating again. Entropy and
percentile calibration (histograms) keep ONNX Runtime's own path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_MB = 350.0  # interpreter + numpy + onnxruntime + onnx, measured here before any model is loaded


def activation_bytes(model_path: Path) -> tuple[int, int, int]:
    """(sum of all float activations, the largest one, the weights) in bytes for one graph run."""
    import onnx

    model = onnx.load(str(model_path))
    inferred = onnx.shape_inference.infer_shapes(model)
    weights = sum(int(math.prod(init.dims)) * 4 for init in model.graph.initializer)
    sizes = []
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            continue
        dims = [d.dim_value for d in tt.shape.dim]
        if dims and all(d > 0 for d in dims):
            sizes.append(int(math.prod(dims)) * (4 if tt.elem_type == onnx.TensorProto.FLOAT else 2))
    return sum(sizes), max(sizes, default=0), weights


_ORDERED = (
    "ONNX Runtime's min/max calibrator run in a memory-ordered node list: each activation is reduced and "
    "freed as the network runs"
)
#: How each calibrating tool holds activations: (bounded? None = for min/max only, how when bounded).
TOOLS = {
    "onnxruntime": (None, _ORDERED),
    "nncf": (True, "NNCF collects statistics with reducers inside the OpenVINO graph, one batch at a time"),
    "modelopt": (
        None,
        "ModelOpt's max calibration in a memory-ordered copy of its own session "
        "(export/modelopt_memory.py): each activation is reduced and freed as the network runs",
    ),
}


def plan_calibration_memory(
    model_path: Path, count: int, size: tuple[int, int], batch: int, method: str, tool: str = "onnxruntime"
) -> dict[str, Any]:
    """The expected peak of calibrating ``model_path`` on ``count`` images, bounded and not.

    Unbounded: every activation alive at once. Bounded: the graph's weights, a few of its
    largest activations alive together (an inference's working set), the calibration tensors.
    An estimate from static shapes, stated before the run and recorded; the benchmark measures it.
    """
    total, largest, weights = activation_bytes(model_path)
    tensors = count * 3 * size[0] * size[1] * 4
    known, how = TOOLS[tool]
    bounded = (method in ("minmax", "max")) if known is None else known
    mb = 2**20
    live = total if not bounded else min(total, 2 * largest)  # e.g. the attention energy and its softmax
    return {
        "tool": tool,
        "method": method,
        "bounded": bounded,
        "images": count,
        "batch": batch,
        "activations_per_run_mb": round(total / mb, 1),
        "largest_activation_mb": round(largest / mb, 1),
        "calibration_tensors_mb": round(tensors / mb, 1),
        "weights_mb": round(weights / mb, 1),
        "expected_peak_mb": round(BASE_MB + (weights + tensors + live) / mb, 0),
        "unbounded_peak_mb": round(BASE_MB + (weights + tensors + total) / mb, 0),
        "how": how
        if bounded
        else (
            f"{method} calibration keeps ONNX Runtime's own path (histograms; every activation of a run alive at once)"
        ),
    }


def describe_plan(plan: dict[str, Any]) -> str:
    text = (
        f"calibration memory: {plan['images']} image(s), {plan['activations_per_run_mb']:.0f} MiB of activations "
        f"per run, calibration tensors {plan['calibration_tensors_mb']:.0f} MiB; expected peak "
        f"~{plan['expected_peak_mb']:.0f} MiB"
    )
    if plan["bounded"]:
        text += f" (unbounded it would be ~{plan['unbounded_peak_mb']:.0f} MiB)"
    return text + f"; {plan['how']}"


def memory_order(model: Any, roots: list[str] | None = None) -> Any:
    """Reorder ``model``'s nodes (in place) so running them in list order keeps few tensors alive.

    Nodes that ``roots`` (default: the graph outputs) depend on come in depth-first post-order
    (a node's inputs are computed in order, just before it); every other node (the calibrator's
    ReduceMin/ReduceMax/Reshape) right after the inputs it needs. A priority-queue topological
    sort on those ranks keeps the result a valid order whatever the graph.
    """
    import heapq

    nodes = list(model.graph.node)
    produced = {o: i for i, n in enumerate(nodes) for o in n.output}
    roots = roots if roots is not None else [o.name for o in model.graph.output]
    seen: set[int] = set()
    post: list[int] = []
    for out in roots:
        if out not in produced:
            continue
        stack = [(produced[out], False)]
        while stack:
            i, done = stack.pop()
            if done:
                post.append(i)
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.append((i, True))
            for t in reversed(nodes[i].input):
                j = produced.get(t)
                if j is not None and j not in seen:
                    stack.append((j, False))
    rank = {i: 2.0 * k for k, i in enumerate(post)}
    deps = [{produced[t] for t in n.input if t in produced} for n in nodes]
    for i in range(len(nodes)):  # an ONNX node list is topological: inputs are ranked first
        if i not in rank:
            rank[i] = max((rank[d] for d in deps[i]), default=-1.0) + 1.0
    indeg = [len(d) for d in deps]
    consumers: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, d in enumerate(deps):
        for j in d:
            consumers[j].append(i)
    heap = [(rank[i], i) for i in range(len(nodes)) if indeg[i] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for c in consumers[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, (rank[c], c))
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle; cannot order it")
    del model.graph.node[:]
    model.graph.node.extend([nodes[i] for i in order])
    return model


def collect_minmax_ranges(
    model_path: Path,
    reader: Any,
    cache_path: Path,
    scratch: Path,
    symmetric: bool = False,
    log: Callable[[str], None] | None = None,
) -> None:
    """ONNX Runtime's min/max calibration of ``model_path``, run memory-bounded; ranges to ``cache_path``.

    ``cache_path`` is in ONNX Runtime's calibration cache format (``save_tensors_data``), so
    ``quantize_static(calibration_cache_path=...)`` uses these ranges instead of calibrating.
    """
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        str(model_path),
        None,
        augmented_model_path=str(scratch / "augmented_model.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"symmetric": symmetric},
    )
    import onnx

    originals = [o.name for o in onnx.load(str(model_path), load_external_data=False).graph.output]
    augmented = onnx.load(calibrator.augmented_model_path)
    memory_order(augmented, roots=originals)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator does
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED  # run the node list as memory_order left it
    calibrator.infer_session = ort.InferenceSession(
        augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    del augmented
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors_data(ranges, cache_path)
    if log:
        log(f"calibration: min/max ranges of {len(ranges.data)} tensors (memory-bounded)")
    del calibrator
