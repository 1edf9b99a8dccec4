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

from .budget import AccuracyBudget, Evaluation, SearchResult, record, unmet_error, validation_for, write_side_folder

_WEIGHTED = {"Convolution", "GroupConvolution", "MatMul"}


def _masks(compiled: Any, tensors: np.ndarray, indices: list[int], batch: int) -> np.ndarray:
    out = []
    for i in indices:
        x = tensors[i : i + 1]
        if batch > 1:
            x = np.repeat(x, batch, axis=0)
        result = compiled(x)
        by_name = {port.get_any_name(): port for port in compiled.outputs}
        # an --emit mask graph arg-maxes itself; otherwise the first output holds the logits
        out.append(np.asarray(result[by_name["mask"]])[0] if "mask" in by_name else np.asarray(result[0])[0].argmax(0))
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


def quantize_with_budget(
    ctx: Any, model: Any, calibration: Any, kwargs: dict[str, Any], ignored: list[str]
) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize_with_accuracy_control``; returns (model, manifest record) or raises when unmet."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    request = ctx.request
    budget: AccuracyBudget = request.budget
    batch = ctx.static_batch
    validation = validation_for(ctx)
    tensors = validation.tensors
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    everything = list(range(len(tensors)))
    validation.set_reference(_masks(core.compile_model(model, "CPU", f32), tensors, everything, batch))

    def validation_fn(compiled: Any, items: Any) -> tuple[float, None]:
        indices = [int(i) for _, i in items]
        return validation.value(_masks(compiled, tensors, indices, batch), indices), None

    val_data = nncf.Dataset(
        [(np.repeat(tensors[i : i + 1], batch, axis=0), i) for i in everything], lambda item: item[0]
    )
    ctx.log(
        f"accuracy budget: nncf.quantize_with_accuracy_control, max drop {budget.max_drop} {budget.metric} "
        f"points on {len(tensors)} validation image(s), at most {budget.max_evaluations} iterations"
    )
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            val_data,
            validation_fn,
            max_drop=budget.max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=budget.max_evaluations
            ),
            **kwargs,
        )
    except Exception as exc:
        from ..errors import ExportError, summarize_exception

        raise ExportError(f"nncf.quantize_with_accuracy_control failed: {summarize_exception(exc)}") from exc
    score = validation.score(_masks(core.compile_model(quantized, "CPU", f32), tensors, everything, batch))
    floated = [n for n in float_compute_nodes(quantized) if n not in set(ignored)]
    met = score["drop"] <= budget.max_drop
    chosen = Evaluation(len(floated), score["drop"], score["value"], score["agreement"], met, Path("model.xml"))
    ranking = [
        {
            "node": n,
            "tensor": n,
            "sqnr_db": None,
            "added_nsr": None,
            "charged_as": "reverted to float by NNCF's accuracy-aware ranking",
        }
        for n in floated
    ]
    entry = record(
        budget,
        validation,
        SearchResult(chosen, met, ranking, [chosen]),
        request.policy,
        ignored,
        request.spec.budget_method,
        search_base=request.policy,
    )
    for item in entry["layers_kept_float"]:
        item["why"] = "reverted to float by nncf.quantize_with_accuracy_control (its own ranking) to meet the budget"
    if met:
        from ..util.cpu import cpu_features
        from .policy import PrecisionPolicy

        required = PrecisionPolicy.from_spec(request.policy).attention_precision == "bf16"
        entry["attention_bf16"] = choose_attention_bf16(
            core, quantized, tensors, batch, validation, budget.max_drop, cpu_features(), required, ctx.log
        )
        met = not required or entry["attention_bf16"].get("chosen", False)
    if not met:
        tmp = ctx.scratch / "budget-best"
        tmp.mkdir(exist_ok=True)
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        side = write_side_folder(
            request.artifact_dir(), {"model.xml": tmp / "model.xml", "model.bin": tmp / "model.bin"}, entry
        )
        raise unmet_error(entry, side)
    ctx.log(f"accuracy budget met: drop {score['drop']} with {len(floated)} layer(s) reverted to float by NNCF")
    return quantized, entry


def choose_attention_bf16(
    core: Any,
    quantized: Any,
    tensors: np.ndarray,
    batch: int,
    validation: Any,
    max_drop: float,
    features: dict[str, Any],
    required: bool,
    log: Any,
) -> dict[str, Any]:
    """Whether the INT8 model's float part (the attention core) should run in bf16: the budget's choice.

    Chosen when the CPU has AMX/AVX512-BF16, the drop measured with bf16 (against the FP32 reference,
    on the whole validation set) is within ``max_drop`` and bf16 is faster than f32 here (median of 5
    interleaved runs, by at least 3%), or whenever it meets the budget if ``--policy attention-bf16``
    asked for it. Everything measured is recorded, chosen or not.
    """
    import time

    from .policy import BF16_FLAGS

    if not any(features.get(flag) for flag in BF16_FLAGS):
        return {"chosen": False, "why": "this CPU has neither AMX-BF16 nor AVX512-BF16"}
    everything = list(range(len(tensors)))
    compiled = {
        p: core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": p, "PERFORMANCE_HINT": "LATENCY"})
        for p in ("f32", "bf16")
    }
    score = validation.score(_masks(compiled["bf16"], tensors, everything, batch))
    x = np.repeat(tensors[:1], batch, axis=0)
    times: dict[str, list[float]] = {"f32": [], "bf16": []}
    for name in times:
        compiled[name](x)
    for _ in range(5):
        for name, model in compiled.items():
            started = time.perf_counter()
            model(x)
            times[name].append((time.perf_counter() - started) * 1e3)
    f32_ms, bf16_ms = (float(np.median(times[p])) for p in ("f32", "bf16"))
    meets, faster = score["drop"] <= max_drop, bf16_ms <= 0.97 * f32_ms
    chosen = meets and (faster or required)
    why = (
        "meets the budget" + (" and is faster" if faster else " (asked for with --policy attention-bf16)")
        if chosen
        else ("exceeds the budget" if not meets else "not faster than f32 here")
    )
    log(
        f"attention in bf16: drop {score['drop']}, agreement {score['agreement']}, {bf16_ms:.1f} vs {f32_ms:.1f} ms f32: "
        f"{'chosen' if chosen else 'not chosen'} ({why})"
    )
    return {
        "chosen": chosen,
        "why": why,
        "drop": score["drop"],
        "value": score["value"],
        "agreement": score["agreement"],
        "median_ms": {"f32": round(f32_ms, 2), "bf16": round(bf16_ms, 2)},
    }
