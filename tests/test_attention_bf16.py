"""attention-bf16: the accuracy budget picks bf16 attention only when it meets the budget and is faster."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from danet_deploy.export.budget_openvino import choose_attention_bf16


class _Compiled:
    """A compiled model stand-in: fixed logits, a fixed delay per call, OpenVINO's output ports."""

    def __init__(self, logits: np.ndarray, delay_s: float) -> None:
        self.logits, self.delay_s = logits, delay_s
        self.outputs = [SimpleNamespace(get_any_name=lambda: "logits")]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        time.sleep(self.delay_s)
        return [self.logits]


class _Core:
    def __init__(self, models: dict[str, _Compiled]) -> None:
        self.models = models

    def compile_model(self, model, device, config):
        return self.models[config["INFERENCE_PRECISION_HINT"]]


class _Validation:
    """Scores masks against a reference: the drop is the share of pixels that differ (points of 1.0)."""

    def __init__(self, reference: np.ndarray) -> None:
        self.reference = reference

    def score(self, masks: np.ndarray) -> dict[str, float]:
        agreement = float(np.mean(masks == self.reference))
        return {"value": agreement, "drop": round(1 - agreement, 4), "agreement": agreement}


def _logits(flip: bool) -> np.ndarray:
    logits = np.zeros((1, 2, 4, 4), np.float32)
    logits[0, 0] = 1.0
    if flip:
        logits[0, 1, 0, 0] = 2.0  # one pixel of 16 changes class: drop 0.0625
    return logits


def _run(
    bf16_flip: bool, bf16_delay: float, max_drop: float, required: bool = False, features: dict | None = None
) -> dict:
    core = _Core({"f32": _Compiled(_logits(False), 0.004), "bf16": _Compiled(_logits(bf16_flip), bf16_delay)})
    tensors = np.zeros((2, 3, 4, 4), np.float32)
    reference = np.zeros((2, 4, 4), np.int64)
    logs: list[str] = []
    out = choose_attention_bf16(
        core,
        object(),
        tensors,
        1,
        _Validation(reference),
        max_drop,
        features if features is not None else {"amx_bf16": True},
        required,
        logs.append,
    )
    return out


def test_bf16_chosen_when_within_budget_and_faster():
    out = _run(bf16_flip=False, bf16_delay=0.0, max_drop=0.01)
    assert out["chosen"] and out["why"] == "meets the budget and is faster" and out["drop"] == 0
    assert out["median_ms"]["bf16"] < out["median_ms"]["f32"]


def test_bf16_not_chosen_over_budget_or_when_not_faster():
    over = _run(bf16_flip=True, bf16_delay=0.0, max_drop=0.01)
    assert not over["chosen"] and over["why"] == "exceeds the budget" and over["drop"] == pytest.approx(0.0625)
    slow = _run(bf16_flip=False, bf16_delay=0.008, max_drop=0.01)
    assert not slow["chosen"] and slow["why"] == "not faster than f32 here"
    asked = _run(bf16_flip=False, bf16_delay=0.008, max_drop=0.01, required=True)
    assert asked["chosen"] and "attention-bf16" in asked["why"]


def test_bf16_never_considered_without_the_cpu_flags():
    out = _run(bf16_flip=False, bf16_delay=0.0, max_drop=0.01, features={"avx512f": True, "avx512_vnni": True})
    assert out == {"chosen": False, "why": "this CPU has neither AMX-BF16 nor AVX512-BF16"}


def test_runtime_properties_follow_the_policy_and_the_budget():
    from danet_deploy.export.openvino import runtime_properties
    from danet_deploy.export.policy import PrecisionPolicy

    bf16, flt = PrecisionPolicy.from_spec("attention-bf16"), PrecisionPolicy.from_spec("attention-float")
    assert runtime_properties(bf16, "int8") == {"inference_precision": "bf16"}
    assert runtime_properties(flt, "int8") == {}
    assert runtime_properties(flt, "int8", {"chosen": True}) == {"inference_precision": "bf16"}
    assert runtime_properties(bf16, "int8", {"chosen": False}) == {}


def test_export_request_refuses_attention_bf16_on_onnxruntime():
    from danet_deploy.errors import ConfigError
    from danet_deploy.export.pipeline import ExportRequest

    with pytest.raises(ConfigError, match="--target openvino"):
        ExportRequest("danet_demo", target="onnxruntime", precision="int8", policy="attention-bf16")
