"""PyTorch DANet -> ONNX: export, full check, shape inference, simplification, metadata.

Exporter choice (measured on this project's models, 2-core CPU): the TorchScript-based exporter
(``dynamo=False``) takes 0.2-0.5 s and emits opset 17 or 18; the dynamo exporter takes 6-10 s
and cannot emit opset 17. The legacy graph has no shape information (even the class dimension is
symbolic, which nearly doubles ONNX Runtime's peak memory), so it is always simplified with
onnxslim and its output shape pinned; after that the two graphs run the same in ONNX Runtime
and OpenVINO. ``exporter="dynamo"`` stays available.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import ExportError, summarize_exception
from ..outputs import EMITS, LOGITS, LOGITS_LOWRES, MASK, check_emit, invalid_mask_value
from .metadata import stamp_onnx

INPUT_NAME = "input"


def export_onnx(
    model: Any,
    path: str | Path,
    input_size: tuple[int, int],
    batch: int = 1,
    dynamic: bool = False,
    dynamic_batch: bool | None = None,
    opset: int = 17,
    exporter: str = "legacy",
    simplify: bool = True,
    config: dict[str, Any] | None = None,
    emit: str = "logits",
    mask_type: str = "uint8",
) -> dict[str, Any]:
    """Write ``model`` (eval mode; fused output only) as ONNX to ``path``; return export facts.

    Args:
        input_size: (H, W) traced at, and the static size when not ``dynamic``.
        dynamic: symbolic height and width (and batch, unless ``dynamic_batch=False``).
        dynamic_batch: symbolic batch with static H, W (defaults to ``dynamic``).
        emit: which outputs the graph has (:data:`danet_deploy.outputs.EMITS`): ``logits``, or the
            class mask computed in the graph (ArgMax + Cast to ``mask_type``), with full or
            low-resolution logits beside it.
    """
    import onnx
    import torch

    path = Path(path)
    h, w = input_size
    dynamic_batch = dynamic if dynamic_batch is None else dynamic_batch
    axes: dict[int, str] = {}
    if dynamic_batch:
        axes[0] = "batch"
    if dynamic:
        axes.update({2: "height", 3: "width"})
    example = torch.zeros(batch, 3, h, w)
    model = model.eval()
    names = list(EMITS[check_emit(emit)])
    output_axes = {name: _output_axes(name, axes) for name in names}
    traced = model if names == [LOGITS] else _with_outputs(model, names, mask_type)
    started = time.perf_counter()
    try:
        # no_grad: the trace's forward pass must not keep activations for a backward pass that never
        # comes (danet_demo at 1024x2048: 5.6 GB peak RSS with autograd, 1.0 GB without; same graph)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "legacy":
                torch.onnx.export(
                    traced,
                    (example,),
                    str(path),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    opset_version=opset,
                    dynamo=False,
                    do_constant_folding=True,
                    dynamic_axes={INPUT_NAME: axes, **output_axes} if axes else None,
                )
            elif exporter == "dynamo":
                from torch.export import Dim

                shapes = None
                if axes:
                    dims = {
                        0: Dim("batch", min=1, max=256),
                        2: Dim("height", min=32, max=8192),
                        3: Dim("width", min=32, max=8192),
                    }
                    shapes = {"x": {k: dims[k] for k in axes}}
                program = torch.onnx.export(
                    traced,
                    (example,),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    opset_version=max(opset, 18),
                    dynamo=True,
                    dynamic_shapes=shapes,
                    verbose=False,
                )
                assert program is not None  # dynamo=True returns the program
                program.save(str(path))
            else:
                raise ExportError(f"unknown exporter {exporter!r}; choose 'legacy' or 'dynamo'")
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed ({exporter}): {summarize_exception(exc)}") from exc
    export_seconds = time.perf_counter() - started

    graph = onnx.load(str(path))
    _pin_output_shape(graph, model.num_classes)
    nodes_before = len(graph.graph.node)
    if simplify:
        graph = _simplify(graph)
    graph = onnx.shape_inference.infer_shapes(graph, strict_mode=False, data_prop=True)
    if config is not None:
        stamp_onnx(graph, config, "fp32")
    graph.producer_name = "danet-deploy"
    onnx.save(graph, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX failed onnx.checker: {exc}") from exc
    return {
        "exporter": exporter,
        "opset": int(next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))),
        "dynamic_axes": {str(k): v for k, v in axes.items()},
        "export_seconds": round(export_seconds, 3),
        "simplifier": "onnxslim" if simplify else None,
        "nodes_before_simplify": nodes_before,
        "nodes": len(graph.graph.node),
    }


def _pin_output_shape(graph: Any, num_classes: int) -> None:
    """The legacy exporter leaves the class dim symbolic; pin it so memory planning knows it."""
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        if output.name in (LOGITS, LOGITS_LOWRES) and len(dims) == 4:
            dims[1].ClearField("dim_param")
            dims[1].dim_value = num_classes


def _output_axes(name: str, input_axes: dict[int, str]) -> dict[int, str]:
    """Dynamic axes of an output tensor, from the input's (a mask has no class axis)."""
    if name == MASK:
        return {{0: 0, 2: 1, 3: 2}[k]: v for k, v in input_axes.items()}
    if name == LOGITS_LOWRES:
        return {k: (v if k == 0 else f"{v}_lowres") for k, v in input_axes.items()}
    return dict(input_axes)


def _with_outputs(model: Any, names: list[str], mask_type: str) -> Any:
    """``model`` returning ``names`` (mask = arg-max over classes at the input size, in the graph)."""
    import torch
    import torch.nn.functional as F

    dtype = {"uint8": torch.uint8, "int32": torch.int32}[mask_type]
    invalid = invalid_mask_value(mask_type)

    class WithOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.num_classes = model.num_classes

        def forward(self, x: Any) -> Any:
            low = self.model.forward_lowres(x)
            full = None
            outs = []
            for name in names:
                if name == LOGITS_LOWRES:
                    outs.append(low)
                    continue
                if full is None:
                    full = F.interpolate(
                        low, size=x.shape[-2:], mode="bilinear", align_corners=self.model.align_corners
                    )
                outs.append(full if name == LOGITS else self.mask(low, full))
            return tuple(outs) if len(outs) > 1 else outs[0]

        def mask(self, low: Any, full: Any) -> Any:
            """Arg-max over classes; an image with any non-finite logit gets the invalid value
            everywhere, so a mask-only graph cannot hide NaN/Inf behind a plausible mask. Checked on
            the low-resolution logits in float32 (the full ones are their bilinear blend: finite
            exactly when these are), a reduction over C x H/s x W/s values."""
            classes = torch.argmax(full, dim=1).to(dtype)
            lowf = low.float()
            broken = (torch.isnan(lowf) | torch.isinf(lowf)).to(torch.float32).amax(dim=(1, 2, 3))
            return torch.where(broken.reshape(-1, 1, 1) > 0, torch.full_like(classes, invalid), classes)

    return WithOutputs().eval()


def _simplify(graph: Any) -> Any:
    try:
        import onnxslim
    except ImportError:
        warnings.warn(
            "onnxslim is not installed: the ONNX graph is left unsimplified (pip install onnxslim)", stacklevel=2
        )
        return graph
    try:
        return onnxslim.slim(graph)
    except Exception as exc:  # keep the valid unsimplified graph rather than fail the export
        warnings.warn(f"onnxslim failed ({exc}); keeping the unsimplified graph", stacklevel=2)
        return graph
