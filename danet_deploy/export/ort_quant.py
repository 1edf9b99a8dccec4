"""ONNX Runtime's quantization and float16 tools, wrapped once for every target that uses them.

The ``onnxruntime`` target (CPU INT8/FP16 graphs) and the TensorRT bundle's fallbacks (Q/DQ INT8
when ModelOpt is absent, FP16 without AutoCast) call the same library with different settings;
the quirks are handled here once: ``quantize_static`` and ``quant_pre_process`` leave files in the
working directory and print progress to stdout (so they run in a temporary folder with stdout
sent to stderr, keeping ``--json`` output clean), and the float16 converter round-trips kept
float32 chains through fp16.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ExportError, summarize_exception
from ..util.files import working_directory


def calibration_method(name: str) -> Any:
    """ONNX Runtime's ``CalibrationMethod`` for a ``--calib-method`` name."""
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "max": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in methods:
        raise ConfigError(f"ONNX Runtime calibrates with minmax, entropy or percentile, not {name!r}")
    return methods[name]


@contextlib.contextmanager
def _isolated(scratch: Path | None = None) -> Iterator[str]:
    """A throw-away working directory with stdout sent to stderr (ORT's tools write to both)."""
    with (
        tempfile.TemporaryDirectory(prefix="ort-", dir=scratch) as tmp,
        working_directory(tmp),
        contextlib.redirect_stdout(sys.stderr),
    ):
        yield tmp


def pre_process(src: Path, dst: Path, skip_symbolic_shape: bool = False) -> None:
    """``quant_pre_process`` (shape inference + ORT graph optimisation) before static quantization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _isolated():
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic_shape)
        except Exception as exc:
            raise ExportError(f"onnxruntime quant_pre_process failed: {summarize_exception(exc)}") from exc


def quantize_qdq(
    src: Path,
    dst: Path,
    reader: Any,
    *,
    method: str,
    activation: str,
    weight: str,
    per_channel: bool = True,
    reduce_range: bool = False,
    nodes_to_exclude: Sequence[str] = (),
    extra_options: dict[str, Any] | None = None,
    cache: Path | None = None,
    scratch: Path | None = None,
    bounded_memory: bool = True,
) -> None:
    """``quantize_static`` in QDQ format; ``activation``/``weight`` are ``QuantType`` names (``QInt8`` ...).

    ``cache`` (optional) is ORT's calibration-range cache file: read when present, written otherwise.
    ``bounded_memory`` (min/max only): ranges from :func:`~.calib_memory.collect_minmax_ranges`
    (about one inference of memory, identical ranges) instead of ORT's all-activations-alive run.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with _isolated(scratch) as tmp:
        if bounded_memory and method in ("minmax", "max") and (cache is None or not cache.is_file()):
            from .calib_memory import collect_minmax_ranges

            cache = cache or Path(tmp) / "ranges.json"
            try:
                collect_minmax_ranges(
                    Path(src),
                    reader,
                    cache,
                    Path(tmp),
                    symmetric=bool((extra_options or {}).get("CalibTensorRangeSymmetric", False)),
                )
            except Exception as exc:
                raise ExportError(f"onnxruntime min/max calibration failed: {summarize_exception(exc)}") from exc
        try:
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=getattr(QuantType, activation),
                weight_type=getattr(QuantType, weight),
                nodes_to_exclude=list(nodes_to_exclude) or None,
                calibrate_method=calibration_method(method),
                extra_options=dict(extra_options or {}),
                calibration_cache_path=str(cache) if cache is not None else None,
            )
        except Exception as exc:
            raise ExportError(f"onnxruntime quantize_static failed: {summarize_exception(exc)}") from exc


def convert_to_fp16(model: Any, **kwargs: Any) -> tuple[Any, int]:
    """FP16 graph with float32 I/O, the ``node_block_list`` kept in FP32 with no FP16 hops between them.

    Shared by the ONNX Runtime FP16 target and the TensorRT FP16 fallback. Returns (model, number
    of FP16 round-trips removed).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        converted = convert_float_to_float16(model, keep_io_types=True, **kwargs)
    except Exception as exc:
        raise ExportError(f"float16 conversion failed: {summarize_exception(exc)}") from exc
    removed = drop_float_roundtrips(converted)
    wrapper = OnnxModel(converted)  # keep_io_types appends the input Casts last: restore topological order
    wrapper.topological_sort(is_deterministic=True)
    return wrapper.model, removed


def drop_float_roundtrips(model: Any) -> int:
    """Remove ``fp32 -> Cast(fp16) -> Cast(fp32)`` pairs between two nodes kept in float32.

    ``convert_float_to_float16`` casts every blocked node's output back to fp16, even when the
    next node is blocked too, so a float32 chain (CAM: MatMul -> ReduceMax -> Sub -> Softmax) still
    round-trips through fp16 and its energy overflows to inf at larger inputs (NaN logits at 128x128
    on a test model). Consumers of the second Cast read the float32 tensor directly instead.
    """
    import onnx

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}

    def cast_to(node: Any) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    rename: dict[str, str] = {}
    dead = []
    for node in graph.node:
        if cast_to(node) != onnx.TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or cast_to(first) != onnx.TensorProto.FLOAT16 or node.output[0] in outputs:
            continue
        rename[node.output[0]] = first.input[0]
        dead.append(node)
    for node in dead:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {name for node in graph.node for name in node.input} | outputs
    for node in [n for n in graph.node if cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in used]:
        graph.node.remove(node)
    return len(dead)


def graph_signature(path: Path) -> tuple[str, list[int | None], list[str]]:
    """``(image input name, its dims with None where dynamic, output names)``, from one read of the graph.

    The image input is the first graph input that is not an initializer.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in initializers)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image.type.tensor_type.shape.dim]
    return image.name, dims, [o.name for o in model.graph.output]


def graph_input_name(path: Path) -> str:
    """The first graph input that is not an initializer (the image tensor)."""
    return graph_signature(path)[0]
