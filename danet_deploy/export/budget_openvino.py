"""OpenVINO INT8 under an accuracy budget: NNCF's ``quantize_with_accuracy_control`` with our metric.

NNCF quantizes, measures the metric on the validation set, ranks its quantizers by their effect
on it and reverts the worst until the drop is within ``max_drop`` (absolute, in the metric's
points), within ``max_num_iterations``. The drop is then measured again here on the whole
validation set with FP32 inference (``INFERENCE_PRECISION_HINT=f32``, as the runtime runs it),
and that measurement -- not NNCF's -- decides whether the budget was met. The layers kept in
float are read from the result: every Convolution/MatMul whose data input has no FakeQuantize,
minus those the precision policy already ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .budget import (AccuracyBudget, Evaluation, SearchResult, load_validation, record,
                     unmet_error, write_side_folder)

_WEIGHTED = {"Convolution", "GroupConvolution", "MatMul"}


def _masks(compiled: Any, tensors: np.ndarray, indices: list[int], batch: int) -> np.ndarray:
    out = []
    for i in indices:
        x = tensors[i:i + 1]
        if batch > 1:
            x = np.repeat(x, batch, axis=0)
        result = compiled(x)
        by_name = {port.get_any_name(): port for port in compiled.outputs}
        # an --emit mask graph arg-maxes itself; otherwise the first output holds the logits
        out.append(np.asarray(result[by_name["mask"]])[0] if "mask" in by_name
                   else np.asarray(result[0])[0].argmax(0))
    return np.stack(out)


def float_compute_nodes(model: Any) -> list[str]:
    """Convolution/MatMul ops whose data input is not fed by a FakeQuantize (they compute in float)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED:
            continue
        src = op.input(0).get_source_output().get_node()
        while src.get_type_name() in ("Convert", "Reshape", "Transpose", "MaxPool") and src.inputs():
            src = src.input(0).get_source_output().get_node()
        if src.get_type_name() != "FakeQuantize":
            names.append(op.get_friendly_name())
    return names


def quantize_with_budget(ctx: Any, model: Any, calibration: Any, kwargs: dict[str, Any], ignored: list[str]
                         ) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize_with_accuracy_control``; returns (model, manifest record) or raises when unmet."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    request = ctx.request
    budget: AccuracyBudget = request.budget
    batch = ctx.static_batch
    validation = load_validation(budget, tuple(request.input_size), ctx.config.preprocessing.to_dict(),
                                 int(ctx.model.num_classes), ctx.log, ctx.config.class_names)
    tensors = validation.tensors
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    everything = list(range(len(tensors)))
    validation.set_reference(_masks(core.compile_model(model, "CPU", f32), tensors, everything, batch))

    def validation_fn(compiled: Any, items: Any) -> tuple[float, None]:
        indices = [int(i) for _, i in items]
        return validation.value(_masks(compiled, tensors, indices, batch), indices), None

    val_data = nncf.Dataset([(np.repeat(tensors[i:i + 1], batch, axis=0), i) for i in everything], lambda item: item[0])
    ctx.log(f"accuracy budget: nncf.quantize_with_accuracy_control, max drop {budget.max_drop} {budget.metric} "
            f"points on {len(tensors)} validation image(s), at most {budget.max_evaluations} iterations")
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, val_data, validation_fn, max_drop=budget.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=budget.max_evaluations),
            **kwargs)
    except Exception as exc:
        from ..errors import ExportError, summarize_exception

        raise ExportError(f"nncf.quantize_with_accuracy_control failed: {summarize_exception(exc)}") from exc
    score = validation.score(_masks(core.compile_model(quantized, "CPU", f32), tensors, everything, batch))
    floated = [n for n in float_compute_nodes(quantized) if n not in set(ignored)]
    met = score["drop"] <= budget.max_drop
    chosen = Evaluation(len(floated), score["drop"], score["value"], score["agreement"], met, Path("model.xml"))
    ranking = [{"node": n, "tensor": n, "sqnr_db": None, "added_nsr": None,
                "charged_as": "reverted to float by NNCF's accuracy-aware ranking"} for n in floated]
    entry = record(budget, validation, SearchResult(chosen, met, ranking, [chosen]), request.policy, ignored,
                   request.spec.budget_method, search_base=request.policy)
    for item in entry["layers_kept_float"]:
        item["why"] = "reverted to float by nncf.quantize_with_accuracy_control (its own ranking) to meet the budget"
    if not met:
        tmp = ctx.scratch / "budget-best"
        tmp.mkdir(exist_ok=True)
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        side = write_side_folder(request.artifact_dir(), {"model.xml": tmp / "model.xml", "model.bin": tmp / "model.bin"},
                                 entry)
        raise unmet_error(entry, side)
    ctx.log(f"accuracy budget met: drop {score['drop']} with {len(floated)} layer(s) reverted to float by NNCF")
    return quantized, entry
