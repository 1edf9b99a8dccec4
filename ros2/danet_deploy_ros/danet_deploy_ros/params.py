"""The node's parameters as data: name, default, description, range, whether a change needs a restart.

One table drives the declarations (with ``ParameterDescriptor``: type, range, read-only), the
validation at start and on every change (a bad value is refused with a reason; the node keeps
running), ``config/params.yaml`` and the table in ``docs/robot.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RELIABILITIES = ("best_effort", "reliable")
_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = True  # True: read at start (configure); a change needs a restart
    low: float | None = None
    high: float | None = None
    check: Callable[[Any], str | None] | None = None  # a reason to refuse the value, or None


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"


def _needs_artifact(value: Any) -> str | None:
    return None if value else "set it to a folder written by danet-export (e.g. -p artifact:=/models/danet_onnx)"


PARAMS: tuple[Param, ...] = (
    Param(
        "artifact",
        "",
        "artifact folder written by danet-export (its manifest.json names the backend)",
        check=_needs_artifact,
    ),
    Param("backend", "", "override the artifact's backend (empty: the manifest's)"),
    Param("threads", 0, "engine threads (0: the backend's default)", low=0, high=1024),
    Param("image_topic", "image", "sensor_msgs/Image input topic (empty: none)"),
    Param("compressed_topic", "", "sensor_msgs/CompressedImage (jpeg/png) input topic (empty: none)"),
    Param("qos_depth", 1, "input queue depth: 1 keeps the newest frame only", low=1, high=1000),
    Param(
        "qos_reliability",
        "best_effort",
        "input reliability: best_effort (cameras) or reliable",
        check=_one_of(RELIABILITIES),
    ),
    Param(
        "max_pixels",
        50_000_000,
        "refuse input frames above this many pixels (counted as bad frames)",
        low=1,
        high=2**40,
    ),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", low=0.05, high=3600.0),
    Param("publish_overlay", True, "publish ~/overlay (rgb8, the mask blended over the frame)", read_only=False),
    Param("alpha", 0.5, "overlay opacity", read_only=False, low=0.0, high=1.0),
)
BY_NAME = {p.name: p for p in PARAMS}


def refusal(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None: it is). Ranges are also in the
    descriptors, which rclpy enforces; checking here too covers NaN and gives the reason in words."""
    spec = BY_NAME.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    int_for_float = isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool)
    wrong_kind = isinstance(spec.default, bool) != isinstance(value, bool) or not isinstance(value, type(spec.default))
    if wrong_kind and not int_for_float:
        return f"{name} must be {_KINDS[type(spec.default)]}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        return f"{name} must be between {spec.low:g} and {spec.high:g}, got {value!r}"
    return spec.check(value) if spec.check is not None else None


def descriptor(spec: Param, managed: bool = False) -> Any:
    """The ``rcl_interfaces/ParameterDescriptor`` of ``spec``: type, description, range, read-only.
    ``managed`` (the lifecycle node): nothing is read-only, since an unconfigured node may be set up
    anew; the node refuses restart-needing changes while it is configured instead."""
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
    )

    kinds = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
    }
    desc = ParameterDescriptor(
        name=spec.name,
        type=kinds[type(spec.default)],
        description=spec.description,
        read_only=spec.read_only and not managed,
    )
    if spec.low is not None and isinstance(spec.default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high))]
    elif spec.low is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return desc


def declare(node: Any) -> dict[str, Any]:
    """Declare every parameter on ``node`` and return their values, each checked: a bad start value
    raises ``ValueError`` naming the parameter and the fix."""
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
    )

    values = {}
    for spec in PARAMS:
        try:
            values[spec.name] = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ValueError(f"parameter {spec.name}: {exc}") from None
        reason = refusal(spec.name, values[spec.name])
        if reason:
            raise ValueError(f"parameter {spec.name}: {reason}")
    return values
