"""The schema of a TensorRT bundle's or engine's ``extra["tensorrt"]`` in its manifest.

Checked with the rest of the manifest (:func:`danet_deploy.manifest.check_schema`), before the
build, the runtime or the Triton writer reads a field: a hand-edited manifest (an empty or
missing ``profiles``, a missing ``attention``, chunks written as a string, the whole entry a
string) stopped with an IndexError, KeyError, AttributeError or TypeError deep inside the build.
Prepared bundles need their profile and attention plan (the build reads both); engines need
nothing more than their types right (their compatibility facts are judged at load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..util.counts import is_count
from .compat import STAGE_ENGINE, STAGE_PREPARED

MAX_DIM = 2**31 - 1
MAX_COUNT = 2**20
PROFILE_KEYS = ("min", "opt", "max")
OUTPUT_STRIDES = (4, 8, 16, 32)
_OPTIONAL_STRINGS = (
    "precision",
    "onnx",
    "version",
    "gpu",
    "compute_capability",
    "hardware_compatibility",
    "calibration_hash",
)


def check_tensorrt_facts(info: Any, fail: Callable[[str], None]) -> None:
    """Call ``fail(what)`` (which raises) on the first field of ``extra.tensorrt`` a reader would trip on."""
    if not isinstance(info, dict):
        fail(f"extra.tensorrt must be an object, got {type(info).__name__}")
    stage = info.get("stage")
    if stage is not None and stage not in (STAGE_PREPARED, STAGE_ENGINE):
        fail(f"extra.tensorrt.stage must be {STAGE_PREPARED!r} or {STAGE_ENGINE!r}, got {stage!r:.40}")
    for key in _OPTIONAL_STRINGS:
        value = info.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            fail(f"extra.tensorrt.{key} must be a non-empty string or absent, got {value!r:.80}")
    dla = info.get("dla_core")
    if dla is not None and not (is_count(dla, 0, 1024) or (isinstance(dla, str) and dla.isascii() and dla.isdigit())):
        fail(f"extra.tensorrt.dla_core must be a DLA core number (0, 1, ...) or null, got {dla!r:.40}")
    prepared = stage == STAGE_PREPARED
    if prepared or "profiles" in info:
        _check_profiles(info.get("profiles"), fail)
    if prepared or "attention" in info:
        _check_attention(info.get("attention"), fail)


def _check_profiles(profiles: Any, fail: Callable[[str], None]) -> None:
    if not isinstance(profiles, list) or not profiles:
        fail(f"extra.tensorrt.profiles must be a non-empty list of {{min, opt, max}} shapes, got {profiles!r:.80}")
    for i, profile in enumerate(profiles):
        where = f"extra.tensorrt.profiles[{i}]"
        if not isinstance(profile, dict):
            fail(f"{where} must be an object with min, opt and max shapes, got {type(profile).__name__}")
        if not isinstance(profile.get("input", ""), str):
            fail(f"{where}.input must be the input's name")
        shapes = [profile.get(key) for key in PROFILE_KEYS]
        for key, shape in zip(PROFILE_KEYS, shapes):
            if not isinstance(shape, list) or len(shape) != 4 or not all(is_count(d, 1, MAX_DIM) for d in shape):
                fail(f"{where}.{key} must be 4 positive integers (NCHW), got {shape!r:.80}")
        low, opt, high = shapes
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            fail(f"{where} must have min <= opt <= max in every dimension, got {low} / {opt} / {high}")


def _check_attention(attention: Any, fail: Callable[[str], None]) -> None:
    if not isinstance(attention, dict):
        fail(
            f"extra.tensorrt.attention must be an object {{chunks, output_stride, feature_channels}}, got "
            f"{attention!r:.80}"
        )
    for key in ("chunks", "feature_channels"):
        if not is_count(attention.get(key), 1, MAX_COUNT):
            fail(f"extra.tensorrt.attention.{key} must be an integer in 1..{MAX_COUNT}, got {attention.get(key)!r:.40}")
    stride = attention.get("output_stride")
    if stride not in OUTPUT_STRIDES or isinstance(stride, bool):
        fail(f"extra.tensorrt.attention.output_stride must be 4, 8, 16 or 32, got {stride!r:.40}")


__all__ = ["check_tensorrt_facts"]
