"""Per-op profiles of one inference, from each engine's own profiler (``danet-bench --profile``).

Why each engine's own tool: a Python timer sees one number per inference; explaining it (the
attention core took 53% of OpenVINO INT8's time) needs the engine's per-node clock:

* OpenVINO: ``PERF_COUNT`` compiled in, ``InferRequest.get_profiling_info()`` (real time per
  executed node, its type and the kernel it ran: ``brgemm_avx512_amx_bf16`` ...);
* ONNX Runtime: ``SessionOptions.enable_profiling``; the JSON trace's ``Node`` events
  (``<node>_kernel_time``, with ``op_name``) divided by the number of ``model_run`` events;
* TensorRT: an ``IProfiler`` on the execution context (``report_layer_time(layer, ms)`` per layer
  and ``execute`` call);
* PyTorch: ``torch.profiler`` with every module's forward wrapped in a ``record_function`` range,
  so each aten op is named by the module that called it (``head.sa/aten::scaled_dot_product_attention``).

Profiling changes timings (counters, trace writing), so a profile is taken in its own session
after the timed iterations, and reports shares, never replaces the latency columns.

The attention core (PAM, CAM) is called out: nodes named under ``/head/sa/`` / ``head.sa``
(PAM) and ``/head/sc/`` / ``head.sc`` (CAM) whose op is part of the core (energy MatMul, max/subtract,
Softmax, probability MatMul, or one fused attention node), plus OpenVINO's fused attention nodes,
which carry the name of the ``ScaledDotProductAttention`` they came from.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

#: op types that make up the attention core (every engine's spelling)
CORE_OPS = {
    "MatMul",
    "Softmax",
    "ReduceMax",
    "Sub",
    "Subtract",
    "Subgraph",
    "Reduce",
    "Eltwise",
    "ScaledDotProductAttention",
    "MultiHeadAttention",
    "Attention",
    "FusedMatMul",
    # ONNX Runtime folds DequantizeLinear inputs into the MatMul of a QDQ graph's attention
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QLinearMatMul",
    "QLinearSoftmax",
    "aten::matmul",
    "aten::bmm",
    "aten::softmax",
    "aten::_softmax",
    "aten::amax",
    "aten::sub",
    "aten::scaled_dot_product_attention",
    "aten::pad",
    "aten::cat",
    "aten::slice",
}
TOP_NODES = 12


@dataclass
class OpTime:
    """One node's time per inference (milliseconds)."""

    name: str
    op: str
    ms: float
    kernel: str | None = None


def attention_module(name: str, op: str) -> str | None:
    """``pam``, ``cam`` or ``None`` for a profiled node (see the module doc)."""
    core = op in CORE_OPS or "Attention" in op or "attention" in op
    if "ScaledDotProductAttention" in name or "FusedAttention" in name:
        return "pam"
    if not core:
        return None
    if re.search(r"(/head/sa/|head\.sa\b|/sa_)", name):
        return "pam"
    if re.search(r"(/head/sc/|head\.sc\b|/sc_)", name):
        return "cam"
    return None


class OpTypeShare(TypedDict):
    op: str
    ms: float
    share: float | None


class AttentionShare(TypedDict):
    """The attention core's part of a profile (PAM + CAM)."""

    pam_ms: float
    cam_ms: float
    core_ms: float
    share: float | None
    pam_share: float | None
    cam_share: float | None
    nodes: list[str]
    ms_by_op_type: dict[str, float]


class ProfileJson(TypedDict):
    """A row's ``profile`` as written (``top_nodes``: an :class:`OpTime` with its share and module)."""

    source: str
    runs: int
    total_ms: float
    nodes_profiled: int
    by_op_type: list[OpTypeShare]
    top_nodes: list[dict[str, object]]
    attention: AttentionShare


class ProfileError(TypedDict):
    """A row's ``profile`` when none could be taken: why."""

    error: str


def summarize_profile(ops: Iterable[OpTime], source: str, runs: int, top: int = TOP_NODES) -> ProfileJson:
    """The report entry: total, time by op type, the top nodes and the attention core's share."""
    ops = [o for o in ops if o.ms > 0]
    total = sum(o.ms for o in ops)
    by_type: dict[str, float] = {}
    attention = {"pam_ms": 0.0, "cam_ms": 0.0}
    attention_types: dict[str, float] = {}
    nodes: list[str] = []
    for o in ops:
        by_type[o.op] = by_type.get(o.op, 0.0) + o.ms
        module = attention_module(o.name, o.op)
        if module:
            attention[f"{module}_ms"] += o.ms
            attention_types[o.op] = attention_types.get(o.op, 0.0) + o.ms
            nodes.append(o.name)

    def share(ms: float) -> float | None:
        return round(ms / total, 4) if total > 0 else None

    ranked = sorted(ops, key=lambda o: -o.ms)[:top]
    core_ms = attention["pam_ms"] + attention["cam_ms"]
    return {
        "source": source,
        "runs": runs,
        "total_ms": round(total, 3),
        "nodes_profiled": len(ops),
        "by_op_type": [
            {"op": op, "ms": round(ms, 3), "share": share(ms)}
            for op, ms in sorted(by_type.items(), key=lambda kv: -kv[1])
        ],
        "top_nodes": [
            {**asdict(o), "ms": round(o.ms, 3), "share": share(o.ms), "attention": attention_module(o.name, o.op)}
            for o in ranked
        ],
        "attention": {
            "pam_ms": round(attention["pam_ms"], 3),
            "cam_ms": round(attention["cam_ms"], 3),
            "core_ms": round(core_ms, 3),
            "share": share(core_ms),
            "pam_share": share(attention["pam_ms"]),
            "cam_share": share(attention["cam_ms"]),
            "nodes": nodes,
            "ms_by_op_type": {op: round(ms, 3) for op, ms in attention_types.items()},
        },
    }


# -- OpenVINO ----------------------------------------------------------------------------------
def openvino_ops(compiled: Any, tensor: np.ndarray, runs: int) -> list[OpTime]:
    """Mean per-node real time over ``runs`` inferences of a model compiled with ``PERF_COUNT``."""
    request = compiled.create_infer_request()
    request.infer({0: tensor})  # first call at a shape includes one-off work
    sums: dict[str, OpTime] = {}
    for _ in range(runs):
        request.infer({0: tensor})
        for info in request.get_profiling_info():
            ms = info.real_time.total_seconds() * 1e3
            entry = sums.setdefault(info.node_name, OpTime(info.node_name, info.node_type, 0.0, info.exec_type))
            entry.ms += ms
    for entry in sums.values():
        entry.ms /= runs
    return list(sums.values())


def profile_openvino(backend: Any, tensor: np.ndarray, runs: int) -> ProfileJson:
    """Compile the backend's model again with ``PERF_COUNT`` (same properties) and profile it."""
    model = backend.model
    if backend.dynamic:
        model = model.clone()
        model.reshape({backend.input_name: list(tensor.shape)})
    compiled = backend.core.compile_model(model, backend.device, {**backend.properties, "PERF_COUNT": True})
    ops = openvino_ops(compiled, tensor, runs)
    return summarize_profile(ops, "openvino PERF_COUNT (InferRequest.get_profiling_info, real_time)", runs)


# -- ONNX Runtime ------------------------------------------------------------------------------
def onnxruntime_trace_ops(trace: list[dict[str, Any]], skip_first: bool = True) -> tuple[list[OpTime], int]:
    """Per-node mean times from an ORT profile trace, and how many runs they average.

    ``skip_first``: the first ``model_run`` (allocations, first-touch of the arena: measured 20 ms
    on one MatMul of a 10 ms model) is dropped, with every node event inside it.
    """
    runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e.get("ts", 0)
    )
    cutoff = -1.0
    if skip_first and len(runs) > 1:
        cutoff = float(runs[0].get("ts", 0)) + float(runs[0].get("dur", 0))
        runs = runs[1:]
    sums: dict[str, OpTime] = {}
    for event in trace:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or float(event.get("ts", 0)) <= cutoff:
            continue
        node = name[: -len("_kernel_time")]
        args = event.get("args") or {}
        entry = sums.setdefault(node, OpTime(node, str(args.get("op_name", "?")), 0.0, args.get("provider")))
        entry.ms += float(event.get("dur", 0)) / 1000.0
    for entry in sums.values():
        entry.ms /= max(len(runs), 1)
    return list(sums.values()), len(runs)


def profile_onnxruntime(backend: Any, tensor: np.ndarray, runs: int) -> ProfileJson:
    """A second session on the same model with ``enable_profiling``; the trace is read and deleted."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if backend.threads:
        options.intra_op_num_threads = int(backend.threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="danet-ort-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        copy = ort.InferenceSession(str(backend.model_file), options, providers=backend.providers)
        feed = {backend.input_name: tensor}
        for _ in range(runs + 1):  # the first run is dropped from the trace (onnxruntime_trace_ops)
            copy.run(None, feed)
        trace = json.loads(Path(copy.end_profiling()).read_text())
    ops, seen = onnxruntime_trace_ops(trace)
    return summarize_profile(ops, "onnxruntime enable_profiling (Node kernel_time events)", seen)


# -- TensorRT ----------------------------------------------------------------------------------
def layer_profiler(trt: Any) -> Any:
    """An ``IProfiler`` subclass instance collecting ``report_layer_time`` per layer (ms summed)."""

    class LayerTimes(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, float] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times[layer_name] = self.times.get(layer_name, 0.0) + float(ms)

    return LayerTimes()


def tensorrt_layer_type(name: str) -> str:
    """TensorRT reports only layer names; the op type is read from them (ONNX node names keep theirs)."""
    if name.startswith("{ForeignNode") or "Myelin" in name:
        return "Myelin (fused region)"
    base = name.split(" + ")[0].rsplit("/", 1)[-1]
    return re.sub(r"(_\d+)+$", "", base) or "layer"


def profile_tensorrt(backend: Any, tensor: np.ndarray, runs: int) -> ProfileJson:
    """Attach an ``IProfiler`` to one execution context and run ``runs`` synchronous inferences."""
    import tensorrt as trt

    lane = backend._acquire()
    profiler = layer_profiler(trt)
    try:
        previous = lane.context.profiler
        lane.context.profiler = profiler
        try:
            for _ in range(runs):  # events=True: a plain enqueue, never a CUDA graph launch (not profiled)
                lane.prepare(tensor)
                lane.run(events=True)
        finally:
            lane.context.profiler = previous
    finally:
        backend._release(lane)
    ops = [OpTime(name, tensorrt_layer_type(name), ms / runs) for name, ms in profiler.times.items()]
    return summarize_profile(ops, "tensorrt IProfiler (report_layer_time per layer)", runs)


# -- PyTorch -----------------------------------------------------------------------------------
def torch_ops(model: Any, call: Callable[[], Any], runs: int) -> list[OpTime]:
    """aten ops named by the module whose forward called them, mean CPU time per run."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    handles: list[Any] = []
    ranges: dict[Any, Any] = {}

    def pre(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            ranges.setdefault(name, []).append(record_function(f"module::{name}").__enter__())

        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            ranges[name].pop().__exit__(None, None, None)

        return hook

    for name, module in model.named_modules():
        label = name or "model"
        handles += [module.register_forward_pre_hook(pre(label)), module.register_forward_hook(post(label))]
    try:
        with torch.no_grad():
            call()
            with profile(activities=[ProfilerActivity.CPU]):  # the profiler's own first-use start-up
                call()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    call()
    finally:
        for handle in handles:
            handle.remove()
    sums: dict[str, OpTime] = {}
    for event in prof.events():
        parent = event.cpu_parent
        if event.name.startswith("module::") or parent is None or not parent.name.startswith("module::"):
            continue
        key = f"{parent.name[len('module::') :]}/{event.name}"
        entry = sums.setdefault(key, OpTime(key, event.name, 0.0))
        entry.ms += event.cpu_time_total / 1000.0
    for entry in sums.values():
        entry.ms /= runs
    return list(sums.values())


def profile_torch(backend: Any, tensor: np.ndarray, runs: int) -> ProfileJson:
    """Profile the reference model's forward (``backend.model``) on ``tensor``."""
    ops = torch_ops(backend.model, lambda: backend.infer(tensor), runs)
    return summarize_profile(ops, "torch.profiler (CPU; aten ops under module record_function ranges)", runs)


PROFILERS: dict[str, Callable[[Any, np.ndarray, int], ProfileJson]] = {
    "openvino": profile_openvino,
    "onnxruntime": profile_onnxruntime,
    "tensorrt": profile_tensorrt,
    "torch": profile_torch,
    "torch-compile": profile_torch,
}


def profile_backend(backend: Any, tensor: np.ndarray, runs: int) -> ProfileJson | ProfileError:
    """The profile of one loaded backend, or ``{"error": why}`` (never raises: a profile is extra)."""
    profiler = PROFILERS.get(getattr(backend, "name", ""))
    if profiler is None:
        return {"error": f"no per-op profiler for the {getattr(backend, 'name', '?')} engine"}
    try:
        return profiler(backend, tensor, max(1, int(runs)))
    except Exception as exc:
        from ..errors import summarize_exception

        return {"error": f"profiling failed: {summarize_exception(exc, lines=3)}"}


# -- report: Markdown and a stacked bar plot ---------------------------------------------------
PLOT_OP_TYPES = 6  # op types drawn by name per bar; the rest are "other"


def profiled_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Rows of a report that carry a profile (with or without an error)."""
    return [r for r in report["rows"] if r.get("profile")]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def profile_markdown(report: Mapping[str, Any]) -> str:
    """``## Per-op profiles``: per row, the attention core's share, time by op type, the top nodes."""
    rows = profiled_rows(report)
    if not rows:
        return ""
    intro = (
        "Each engine's own profiler, in a separate process after the timed rounds, mean per inference. "
        "Profiler totals exceed the p50 latency (counters, gaps between nodes are not in them); compare "
        "shares, not milliseconds, with the table above. Attention core = PAM + CAM energy, softmax and "
        "probability matmuls (or one fused attention node)."
    )
    lines = [
        "## Per-op profiles",
        "",
        intro,
        "",
        "| engine | precision | profiled ms | attention core | PAM | CAM | top op type |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        prof = row["profile"]
        if "error" in prof:
            lines.append(f"| {row['engine']} | {row['precision']} | - | - | - | - | {prof['error'][:80]} |")
            continue
        att, top = prof["attention"], (prof["by_op_type"] or [{"op": "-", "share": None}])[0]
        lines.append(
            f"| {row['engine']} | {row['precision']} | {prof['total_ms']:.1f} | **{_pct(att['share'])}** "
            f"({att['core_ms']:.1f} ms) | {att['pam_ms']:.1f} ms | {att['cam_ms']:.1f} ms | "
            f"{top['op']} {_pct(top['share'])} |"
        )
    for row in rows:
        prof = row["profile"]
        if "error" in prof:
            continue
        lines += [
            "",
            f"### {row['engine']} {row['precision']}: {prof['source']}, {prof['runs']} run(s)",
            "",
            "| op type | ms | share |",
            "|---|---|---|",
        ]
        lines += [f"| {o['op']} | {o['ms']:.2f} | {_pct(o['share'])} |" for o in prof["by_op_type"][:10]]
        lines += ["", "| top node | op | kernel | ms | share | attention |", "|---|---|---|---|---|---|"]
        lines += [
            f"| `{n['name'][-70:]}` | {n['op']} | {n.get('kernel') or '-'} | {n['ms']:.2f} | "
            f"{_pct(n['share'])} | {n['attention'] or ''} |"
            for n in prof["top_nodes"]
        ]
    return "\n".join(lines) + "\n"


def plot_profile(report: Mapping[str, Any], path: str | Path) -> Path:
    """One stacked bar per engine row: attention core (PAM, CAM) first, then the largest op types."""
    from .plots import _pyplot, _save, _title
    from .sections import ReportConfig

    plt = _pyplot()
    rows = [r for r in profiled_rows(report) if "error" not in r["profile"]]
    totals: dict[str, float] = {}
    for row in rows:
        for o in row["profile"]["by_op_type"]:
            totals[o["op"]] = totals.get(o["op"], 0.0) + (o["share"] or 0.0)
    named = [op for op, _ in sorted(totals.items(), key=lambda kv: -kv[1])][:PLOT_OP_TYPES]
    segments = ["attention: PAM", "attention: CAM", *named, "other"]
    colors = dict(zip(segments, ["#d62728", "#ff9896", *plt.get_cmap("tab20c").colors[: len(named)], "#bbbbbb"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(rows) + 3), 4.5))
    import textwrap

    labels = [textwrap.fill(f"{r['engine']} {r['precision']}".strip(), 14) for r in rows]
    bottoms = np.zeros(len(rows))
    for segment in segments:
        values = [100 * _segment_ms(r["profile"], segment, named) / (r["profile"]["total_ms"] or 1.0) for r in rows]
        ax.bar(labels, values, bottom=bottoms, color=colors[segment], label=segment, edgecolor="white", linewidth=0.5)
        bottoms += np.array(values)
    for i, row in enumerate(rows):
        ax.text(
            i,
            101,
            f"{row['profile']['total_ms']:.0f} ms\nattn {_pct(row['profile']['attention']['share'])}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, 118)
    ax.set_ylabel("share of profiled time per inference (%)")
    ax.set_title(_title(report["model"], ReportConfig.from_dict(report["config"]), "per-op profile"), fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="segment", title_fontsize=8)
    return _save(fig, Path(path))


def _segment_ms(profile: Mapping[str, Any], segment: str, named: list[str]) -> float:
    """ms of one plot segment: an attention module, a named op type less its attention part, or the rest."""
    att = profile["attention"]
    if segment == "attention: PAM":
        return float(att["pam_ms"])
    if segment == "attention: CAM":
        return float(att["cam_ms"])
    inside = att.get("ms_by_op_type", {})
    by_type = {o["op"]: o["ms"] for o in profile["by_op_type"]}
    if segment == "other":
        return max(sum(ms - inside.get(op, 0.0) for op, ms in by_type.items() if op not in named), 0.0)
    return max(by_type.get(segment, 0.0) - inside.get(segment, 0.0), 0.0)
