"""Typed per-target options: one dataclass per target, parsed and checked before any work.

``--option KEY=VALUE`` used to land in an untyped dict that every target read with ``.get()``,
so a misspelt key did nothing and said nothing. A target now declares its options as dataclass
fields (type, default, help, allowed values); :meth:`TargetOptions.parse` turns strings (or
already typed values from the Python API) into that dataclass and refuses unknown keys with the
valid ones and a close-match suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T", bound="TargetOptions")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(default: Any, help: str, choices: tuple[Any, ...] | None = None,
           check: typing.Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field with the help text and allowed values ``--help`` and validation show.

    ``check``: called with a given value at parse time, raising :class:`ConfigError` when it cannot
    be used (e.g. a memory size that does not parse), so a bad value fails at export, not on the
    device that builds the engine later.
    """
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "check": check})


def suggest(word: str, valid: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``word`` is close to a valid name, else ``""``."""
    match = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def base_type(hint: Any) -> tuple[Any, bool]:
    """(type, optional?) of a field annotation such as ``int | None`` (``tuple[int, ...]`` kept whole)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        kinds = [a for a in args if a is not type(None)]
        return kinds[0], len(kinds) < len(args)
    return hint, False


def _coerce_tuple(value: Any, kind: Any, where: str) -> tuple[Any, ...]:
    """``"1,2,4"`` (or a list) -> a tuple of the annotation's item type."""
    item = (typing.get_args(kind) or (str,))[0]
    parts = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
    return tuple(_coerce(v, item, False, where) for v in parts)


def _coerce(value: Any, kind: type, optional: bool, where: str) -> Any:
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where} needs a value")
    if typing.get_origin(kind) is tuple:
        return _coerce_tuple(value, kind, where)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return kind(str(value).strip()) if isinstance(value, str) else kind(value)
        except ValueError:
            raise ConfigError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if isinstance(value, bool):  # build=False from Python means the "false" choice
        return "true" if value else "false"
    return str(value).strip()


@dataclasses.dataclass(frozen=True)
class TargetOptions:
    """Base of every target's options; a target with no knobs uses it as is."""

    @classmethod
    def parse(cls: type[T], values: Mapping[str, Any] | None, target: str, also: tuple[str, ...] = ()) -> T:
        """Check names, types and allowed values; return the typed options (defaults filled in).

        ``also``: option names the caller accepts itself (listed and suggested, not parsed here).
        """
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for key in values:
            if key not in fields:
                valid = ", ".join(sorted([*fields, *also])) or "none"
                raise ConfigError(f"unknown option {key!r} for --target {target}{suggest(key, [*fields, *also])} "
                                  f"(valid options: {valid}; see danet-export --list-options --target {target})")
        typed = {}
        for key, value in values.items():
            kind, optional = base_type(hints[key])
            where = f"--option {key} (target {target})"
            typed[key] = _coerce(value, kind, optional, where)
            choices = fields[key].metadata.get("choices")
            if choices and isinstance(typed[key], str) and all(str(c).islower() for c in choices):
                typed[key] = typed[key].lower()
            if choices and typed[key] is not None and typed[key] not in choices:
                raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}"
                                  f"{suggest(str(value), map(str, choices))}")
            check = fields[key].metadata.get("check")
            if check is not None and typed[key] is not None:
                try:
                    check(typed[key])
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
        return cls(**typed)

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """``(name, type, default, help)`` per option, for ``--list-options`` and the README."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            kind, optional = base_type(hints[f.name])
            choices = f.metadata.get("choices")
            name = f"{typing.get_args(kind)[0].__name__},..." if typing.get_origin(kind) is tuple else kind.__name__
            type_text = "|".join(map(str, choices)) if choices else name
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc, operator]  # MISSING default: a factory is set
            rows.append((f.name, type_text + ("|none" if optional and not choices else ""), default,
                         f.metadata.get("help", "")))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
