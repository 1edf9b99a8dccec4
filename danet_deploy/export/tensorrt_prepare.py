"""TensorRT-ready ONNX on any machine (no GPU): mixed-precision FP16 and Q/DQ INT8 graphs.

TensorRT 11 builds *strongly typed* networks only: the precision of every layer comes from the
ONNX types (FP16 casts, Q/DQ pairs), not from builder flags. So the precision decisions are made
here, on the CPU, where they can be verified in ONNX Runtime before a Jetson ever sees them:

* FP16: NVIDIA ModelOpt AutoCast (``convert_to_mixed_precision``) converts the graph to FP16 but
  keeps the precision policy's nodes (the attention core) and any node whose reference output
  exceeds ``data_max`` in FP32, with FP32 I/O. Fallback: ONNX Runtime's ``float16`` converter
  with the policy's node block list (onnxconverter-common's fails on this graph).
* INT8: ModelOpt ONNX PTQ places Q/DQ where TensorRT fuses them (Conv/MatMul/residual Add
  inputs, per-channel symmetric weights, zero points 0, float bias) and calibrates on the shared
  calibration set; ``high_precision_dtype="fp32"`` keeps the rest in FP32 (its FP16 default would
  also convert CAM's energy, which reaches tens of thousands at 1024x2048). Fallback: ONNX
  Runtime QDQ with TensorRT-compatible settings (symmetric, per-channel, ``QuantizeBias=False``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ExportError, summarize_exception
from ..targets.builtin import GRAPH_TOOLS
from ..util.files import working_directory

# --calib-method names -> ModelOpt's
_MODELOPT_METHODS = {"entropy": "entropy", "max": "max", "minmax": "max"}


def modelopt_version() -> str | None:
    try:
        return metadata.version("nvidia-modelopt")
    except metadata.PackageNotFoundError:
        return None


def _exact(names: Sequence[str]) -> list[str]:
    """Node names as anchored regular expressions (ModelOpt matches ``nodes_to_exclude`` as regex)."""
    return [f"^{re.escape(n)}$" for n in names]


@contextlib.contextmanager
def _quiet(level: int = logging.WARNING) -> Iterator[None]:
    """ModelOpt logs every node it skips at INFO; keep warnings and errors only."""
    loggers = [logging.getLogger(n) for n in ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, before):
            lg.setLevel(lvl)


@contextlib.contextmanager
def _restore_onnxruntime_quantization() -> Iterator[None]:
    """Undo ModelOpt's monkey-patching of ``onnxruntime.quantization`` when it returns.

    ModelOpt's INT8 path replaces methods of ORT's calibrators and quantizers process-wide
    (``modelopt.onnx.quantization.ort_patching.patch_ort_modules``); afterwards ORT's own
    ``quantize_static`` fails ("Quantization parameters are not specified for param input") for
    every later caller in the process, e.g. the ``onnxruntime`` INT8 target. Snapshot and restore.
    """
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    owners: list[Any] = [
        calibrate,
        calibrate.CalibraterBase,
        calibrate.MinMaxCalibrater,
        calibrate.HistogramCalibrater,
        calibrate.HistogramCollector,
        qdq_quantizer.QDQQuantizer,
        base_quantizer.BaseQuantizer,
    ]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    try:
        yield
    finally:
        for owner, before in saved:
            for key in set(vars(owner)) - set(before):
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(owner, key)
            for key, value in before.items():
                if vars(owner).get(key) is not value:
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(owner, key, value)


AUTOCAST_MEMORY_LIMIT = 4 * 2**30  # bytes of activations AutoCast's reference run may hold


def reference_run_bytes(path: Path) -> int:
    """Bytes of every intermediate tensor of a static-shape ONNX (what an all-outputs run holds)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    total = 0
    for info in [*model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if not dims or any(d.dim_value <= 0 for d in dims):
            continue  # dynamic dims: sized at run time, counted as unknown
        total += int(np.prod([d.dim_value for d in dims])) * 4
    return total


def prepare_fp16(
    src: Path,
    dst: Path,
    float_nodes: Sequence[str],
    calibration: np.ndarray | None = None,
    input_name: str = "input",
    data_max: float = 512.0,
    converter: str = "auto",
    scratch: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write a mixed-precision FP16 ONNX of ``src`` to ``dst`` keeping ``float_nodes`` in FP32.

    Args:
        calibration: a few preprocessed inputs AutoCast runs to find nodes whose outputs exceed
            ``data_max`` (kept in FP32); ``None`` lets AutoCast use random inputs.
        converter: ``auto`` (ModelOpt if installed, else ONNX Runtime's float16 converter),
            ``modelopt`` or ``onnxruntime``.
    """
    import onnx

    if converter not in GRAPH_TOOLS:
        raise ConfigError(f"unknown FP16 converter {converter!r}; use --option converter={'|'.join(GRAPH_TOOLS)}")
    use_modelopt = converter in ("auto", "modelopt") and modelopt_version() is not None
    if use_modelopt and converter == "auto":
        needed = reference_run_bytes(src)
        if needed > AUTOCAST_MEMORY_LIMIT:
            # AutoCast runs the FP32 graph with every intermediate tensor as an output; at full
            # resolution (16 attention chunks at 1024x2048: ~8 GiB of energies alone) that was
            # OOM-killed on a 24 GiB machine. The policy already keeps attention in FP32.
            log(
                f"FP16: AutoCast's reference run would hold ~{needed / 2**30:.1f} GiB of activations; using the "
                "policy-driven converter instead (--option converter=modelopt forces AutoCast)"
            )
            use_modelopt = False
    if converter == "modelopt" and not use_modelopt:
        raise ConfigError(
            "converter=modelopt needs NVIDIA ModelOpt: pip install nvidia-modelopt onnx-graphsurgeon "
            "(without its [onnx] extra, which would replace onnx/onnxruntime)"
        )
    if use_modelopt:
        from modelopt.onnx.autocast import convert_to_mixed_precision

        kwargs: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            if calibration is not None:
                calib_path = Path(tmp) / "autocast_calibration.npz"
                np.savez(calib_path, **{input_name: np.ascontiguousarray(calibration, dtype=np.float32)})
                kwargs["calibration_data"] = str(calib_path)
            log(
                f"FP16 (ModelOpt AutoCast {modelopt_version()}): keeping {len(float_nodes)} policy node(s) and "
                f"outputs above {data_max:g} in FP32"
            )
            try:
                with _quiet(), working_directory(tmp):
                    model = convert_to_mixed_precision(
                        str(src),
                        low_precision_type="fp16",
                        keep_io_types=True,
                        providers=["cpu"],
                        nodes_to_exclude=_exact(float_nodes) or None,
                        data_max=data_max,
                        **kwargs,
                    )
            except Exception as exc:
                reason = summarize_exception(exc)
                raise ExportError(
                    f"ModelOpt AutoCast failed: {reason}; retry with --option converter=onnxruntime"
                ) from exc
        tool = f"modelopt.onnx.autocast {modelopt_version()}"
    else:
        # onnxconverter-common 1.16's float16 (keep_io_types + node_block_list) fails on DANet's graph
        # ("The downstream node of the second cast node should be graph output"); ONNX Runtime's copy
        # of the converter does not, and is installed wherever the bundle is verified.
        from .ort_quant import convert_to_fp16

        log(f"FP16 (onnxruntime.transformers.float16): keeping {len(float_nodes)} policy node(s) in FP32")
        # the converter casts each kept node's output back to fp16 even between two kept nodes, so CAM's
        # energy would still round-trip through fp16 and overflow (NaN at 128x128): convert_to_fp16 drops those
        model, _ = convert_to_fp16(onnx.load(str(src)), node_block_list=list(float_nodes))
        tool = f"onnxruntime.transformers.float16 {metadata.version('onnxruntime')}"
    onnx.save(model, str(dst))
    return {"converter": tool, "data_max": data_max, "autocast_calibration": calibration is not None}


def prepare_int8(
    src: Path,
    dst: Path,
    calibration: np.ndarray,
    float_nodes: Sequence[str],
    method: str = "entropy",
    input_name: str = "input",
    quantizer: str = "auto",
    scratch: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write a Q/DQ INT8 ONNX of ``src`` calibrated on ``calibration`` (float32 NCHW) to ``dst``."""
    if calibration.ndim != 4 or calibration.dtype != np.float32 or len(calibration) < 1:
        raise ConfigError(
            f"calibration tensors must be float32 [N, 3, H, W] with N >= 1, got {calibration.dtype} {calibration.shape}"
        )
    if quantizer not in GRAPH_TOOLS:
        raise ConfigError(f"unknown INT8 quantizer {quantizer!r}; use --option quantizer={'|'.join(GRAPH_TOOLS)}")
    use_modelopt = quantizer in ("auto", "modelopt") and modelopt_version() is not None
    if quantizer == "modelopt" and not use_modelopt:
        raise ConfigError("quantizer=modelopt needs NVIDIA ModelOpt: pip install nvidia-modelopt onnx-graphsurgeon")
    from .calib_memory import describe_plan, plan_calibration_memory

    memory = plan_calibration_memory(
        Path(src),
        len(calibration),
        (calibration.shape[2], calibration.shape[3]),
        1,
        method,
        tool="modelopt" if use_modelopt else "onnxruntime",
    )
    log(describe_plan(memory))
    if use_modelopt:
        if method not in _MODELOPT_METHODS:
            raise ConfigError(
                f"ModelOpt INT8 calibrates with 'entropy' or 'max', not {method!r}; pass "
                "--calib-method entropy|max, or --option quantizer=onnxruntime for percentile"
            )
        from modelopt.onnx.quantization import quantize

        from .modelopt_memory import memory_ordered_calibration
        from .ort_quant import graph_signature

        _, declared, outputs = graph_signature(src)
        shape = [d if d else c for d, c in zip(declared, calibration[:1].shape)]  # dynamic dims: one image

        log(
            f"INT8 Q/DQ (ModelOpt {modelopt_version()}, {_MODELOPT_METHODS[method]} calibration on "
            f"{len(calibration)} image(s)); {len(float_nodes)} policy node(s) stay in FP32"
        )
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            work = Path(tmp) / "model.onnx"
            work.write_bytes(Path(src).read_bytes())  # ModelOpt writes intermediates beside its input
            try:
                # ONNX Runtime's calibrator prints its progress to stdout; keep stdout for results (--json)
                with (
                    _quiet(),
                    working_directory(tmp),
                    contextlib.redirect_stdout(sys.stderr),
                    _restore_onnxruntime_quantization(),
                    memory_ordered_calibration(outputs, log) as reordered,
                ):
                    # calibration_shapes: ModelOpt finds GEMV-like MatMuls by shape inference instead of
                    # one inference with every MatMul input as an output (5.3 GB at 1024x2048)
                    quantize(
                        str(work),
                        quantize_mode="int8",
                        calibration_data={input_name: calibration},
                        calibration_shapes=f"{input_name}:{'x'.join(map(str, shape))}",
                        calibration_method=_MODELOPT_METHODS[method],
                        calibration_eps=["cpu"],
                        high_precision_dtype="fp32",
                        nodes_to_exclude=_exact(float_nodes) or None,
                        output_path=str(dst),
                        log_level="WARNING",
                    )
            except Exception as exc:
                reason = summarize_exception(exc)
                raise ExportError(
                    f"ModelOpt INT8 quantization failed: {reason}; retry with --option quantizer=onnxruntime"
                ) from exc
        if not Path(dst).is_file():
            raise ExportError("ModelOpt INT8 quantization wrote no model; retry with --option quantizer=onnxruntime")
        memory["bounded"] = bool(reordered) and _MODELOPT_METHODS[method] == "max"
        return {
            "quantizer": f"modelopt.onnx.quantization {modelopt_version()}",
            "method": _MODELOPT_METHODS[method],
            "high_precision_dtype": "fp32",
            "calibration_memory": memory,
        }
    return {
        **_prepare_int8_ort(src, dst, calibration, float_nodes, method, input_name, scratch, log),
        "calibration_memory": memory,
    }


def _prepare_int8_ort(
    src: Path,
    dst: Path,
    calibration: np.ndarray,
    float_nodes: Sequence[str],
    method: str,
    input_name: str,
    scratch: Path | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """ONNX Runtime QDQ with the settings TensorRT's parser accepts (symmetric, float bias)."""
    import onnxruntime

    from ..data.calibration import ort_reader
    from .ort_quant import quantize_qdq

    log(
        f"INT8 QDQ (ONNX Runtime {onnxruntime.__version__}, {method} calibration on {len(calibration)} image(s), "
        "symmetric, per-channel, float bias)"
    )
    reader = ort_reader([calibration[i : i + 1] for i in range(len(calibration))], input_name)
    quantize_qdq(
        src,
        dst,
        reader,
        method=method,
        activation="QInt8",
        weight="QInt8",
        per_channel=True,
        nodes_to_exclude=float_nodes,
        scratch=scratch,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return {
        "quantizer": f"onnxruntime.quantization {onnxruntime.__version__}",
        "method": method,
        "activation_symmetric": True,
        "per_channel": True,
        "quantize_bias": False,
    }


def stamp_bundle_onnx(dst: Path, config: dict[str, Any], precision: str) -> int:
    """Stamp the converted graph with the model's metadata (converters drop it); return its opset."""
    import onnx

    from .metadata import stamp_onnx

    model = onnx.load(str(dst))
    stamp_onnx(model, config, precision)
    onnx.save(model, str(dst))
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
