"""``--model-option KEY=VALUE``: architecture overrides, typed and validated against :class:`ModelConfig`.

A checkpoint that matches no preset (a custom depth/stem combination, another dilation schedule)
is described on the command line instead of in code. Each key must be an architecture field of
:class:`~danet_deploy.model.registry.ModelConfig`; the value is parsed by that field's type
(``deep_stem=false``, ``stem_width=32``, ``multi_grid=1,2,4``, ``multi_grid=none``,
``class_names=road,car,person``) and range-checked here, before any model is built, so a typo
fails in milliseconds with the valid choices named. Torch-free (the CLI imports it at parse time).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError

# the backbone's supported values (tests check they equal model.backbone's tables)
DEPTHS = (18, 34, 50, 101)
OUTPUT_STRIDES = (8, 16, 32)

# fields a --model-option may set, and where the others are set instead
ARCH_FIELDS = (
    "depth",
    "output_stride",
    "deep_stem",
    "stem_width",
    "base_width",
    "multi_grid",
    "align_corners",
    "class_names",
    "decoder_channels",
)
_ELSEWHERE = {
    "num_classes": "--num-classes",
    "attention_chunks": "--attention-chunks",
    "name": "--arch",
    "weights": "--model",
    "preprocessing": None,
    "description": None,
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_option_pairs(
    pairs: Iterable[str], flag: str = "--model-option", example: str = "deep_stem=false"
) -> dict[str, str]:
    """``["deep_stem=false", "multi_grid=1,2,4"]`` -> ``{"deep_stem": "false", "multi_grid": "1,2,4"}``
    (for ``--model-option`` and ``--option`` alike: a pair without ``=`` or given twice is refused)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r} must be KEY=VALUE, e.g. {flag} {example}")
        if key in out:
            raise ConfigError(f"{flag} {key} given twice ({out[key]!r} and {value.strip()!r}); give it once")
        out[key] = value.strip()
    return out


def coerce_model_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Typed, validated architecture overrides; raises :class:`ConfigError` naming the key and the fix."""
    if not options:
        return {}
    hints = _field_types()
    typed: dict[str, Any] = {}
    for key, value in options.items():
        if key in _ELSEWHERE:
            where = _ELSEWHERE[key]
            raise ConfigError(
                f"model option {key!r} is not an architecture option"
                + (f": use {where}" if where else "")
                + f"; architecture options: {', '.join(ARCH_FIELDS)}"
            )
        if key not in ARCH_FIELDS:
            raise ConfigError(f"unknown model option {key!r}; valid: {', '.join(ARCH_FIELDS)}")
        typed[key] = _check_range(key, _coerce(key, value, hints[key]))
    return typed


def format_option(key: str, value: Any) -> str:
    """The ``KEY=VALUE`` text that :func:`coerce_model_options` parses back to ``value``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "none"
    elif isinstance(value, (tuple, list)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return f"{key}={text}"


def _field_types() -> dict[str, Any]:
    from .registry import ModelConfig  # torch-free

    return typing.get_type_hints(ModelConfig)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if hint is bool:
        return _to_bool(key, value)
    if hint is int:
        return _to_int(key, value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        items = _split(key, value)
        if item is int:
            return tuple(_to_int(key, v) for v in items)
        return tuple(str(v).strip() for v in items)
    raise ConfigError(f"model option {key!r} cannot be set from the command line")  # pragma: no cover


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"model option {key}={value!r} is not a boolean; use {key}=true or {key}=false")


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"model option {key}={value!r} must be an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"model option {key}={value!r} must be an integer") from None


def _split(key: str, value: Any) -> list[Any]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if not items or any(isinstance(v, str) and not v for v in items):
        raise ConfigError(
            f"model option {key}={value!r} must be a comma-separated list without empty items, e.g. {key}=1,2,4"
        )
    return items


def _check_range(key: str, value: Any) -> Any:
    if key == "depth" and value not in DEPTHS:
        raise ConfigError(f"model option depth={value} is not a supported ResNet depth; choose one of {DEPTHS}")
    if key == "output_stride" and value not in OUTPUT_STRIDES:
        raise ConfigError(f"model option output_stride={value} is not supported; choose one of {OUTPUT_STRIDES}")
    if key in ("stem_width", "base_width") and value is not None and not 1 <= value <= 4096:
        raise ConfigError(f"model option {key}={value} must be between 1 and 4096")
    if key == "decoder_channels" and not 0 <= value <= 4096:
        raise ConfigError(f"model option decoder_channels={value} must be between 0 (no decoder) and 4096")
    if key == "multi_grid" and value is not None and not all(1 <= m <= 64 for m in value):
        raise ConfigError(
            f"model option multi_grid={format_option(key, value)[11:]} must hold dilation "
            "multipliers between 1 and 64, e.g. multi_grid=1,2,4"
        )
    return value
