"""Typed options: one dataclass per target (and per runtime engine), parsed and checked before any work.

``--option KEY=VALUE`` used to land in an untyped dict that every target read with ``.get()``,
so a misspelt key did nothing and said nothing. A target now declares its options as dataclass
fields (type, default, help, allowed values); :meth:`Options.parse` turns strings (or already
typed values from the Python API) into that dataclass and refuses unknown keys with the valid
ones and a close-match suggestion. Runtime engines declare theirs the same way
(:class:`~danet_deploy.runtime.backends.base.EngineOptions`): one parser, so ``threads="2"`` from a
command line and ``threads=2`` from Python mean the same, and a typo fails the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError

T = TypeVar("T", bound="Options")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(
    default: Any, help: str, choices: tuple[Any, ...] | None = None, check: typing.Callable[[Any], Any] | None = None
) -> Any:
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
    """``"1,2,4"`` (or a list) -> a tuple of the annotation's item type.

    A lone number for a tuple of numbers is a one-item tuple (``gpus=0``); a lone non-string for a
    tuple of names is refused rather than turned into the name ``"123"``."""
    item = (typing.get_args(kind) or (str,))[0]
    if item is str and not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"{where} must be a comma-separated string or a list of names, got {value!r:.60}")
    parts = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
    return tuple(_coerce(v, item, False, where) for v in parts)


def _coerce_mapping(value: Any, where: str) -> dict[str, Any]:
    """A dict of names to values, or its JSON object text (a command line's ``KEY={"A": 1}``).

    JSON, never ``eval``: the text may come from a file or a user."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{where} must be a JSON object such as '{{\"NAME\": 1}}', got {value!r:.60}") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping of names to values (a dict, or a JSON object), got {value!r:.60}")
    return dict(value)


def _coerce(value: Any, kind: type, optional: bool, where: str) -> Any:
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where} needs a value")
    if typing.get_origin(kind) is tuple:
        return _coerce_tuple(value, kind, where)
    if kind is dict or typing.get_origin(kind) is dict:
        return _coerce_mapping(value, where)
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
        if kind is int and isinstance(value, float) and not value.is_integer():  # int(1.5) would truncate silently
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return kind(str(value).strip()) if isinstance(value, str) else kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if isinstance(value, bool):  # build=False from Python means the "false" choice
        return "true" if value else "false"
    if not isinstance(value, (str, int, float, os.PathLike)):  # a list or dict is no name (str() would make one)
        raise ConfigError(f"{where} must be a string, got {value!r:.60}")
    return str(os.fspath(value) if isinstance(value, os.PathLike) else value).strip()


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every typed options dataclass (targets' and engines'): one parser for all of them.

    Subclasses word their messages (:attr:`where_text`, :attr:`unknown_text`); the parsing,
    coercion, allowed values and checks are this class's.
    """

    #: how a message names option ``{key}`` of ``{owner}`` (a target or engine name)
    where_text: ClassVar[str] = "option {key} ({owner})"
    #: the message for an option ``{owner}`` does not declare (``{hint}``: a close match, ``{valid}``: its options)
    unknown_text: ClassVar[str] = "unknown option {key!r} for {owner}{hint} (valid options: {valid})"

    @classmethod
    def parse(cls: type[T], values: Mapping[str, Any] | None, owner: str, also: tuple[str, ...] = ()) -> T:
        """Check names, types and allowed values; return the typed options (defaults filled in).

        ``owner``: the target or engine the options are for (named in messages). ``also``: option
        names the caller accepts itself (listed and suggested, not parsed here).
        """
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for key in values:
            if key not in fields:
                valid = sorted([*fields, *also])
                raise ConfigError(
                    cls.unknown_text.format(
                        key=key, owner=owner, hint=suggest(key, valid), valid=", ".join(valid) or "none"
                    )
                )
        typed = {}
        for key, value in values.items():
            kind, optional = base_type(hints[key])
            where = cls.where_text.format(key=key, owner=owner)
            typed[key] = _coerce(value, kind, optional, where)
            choices = fields[key].metadata.get("choices")
            if choices and isinstance(typed[key], str) and all(str(c).islower() for c in choices):
                typed[key] = typed[key].lower()
            if choices and typed[key] is not None and typed[key] not in choices:
                raise ConfigError(
                    f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}"
                    f"{suggest(str(value), map(str, choices))}"
                )
            check = fields[key].metadata.get("check")
            if check is not None and typed[key] is not None:
                try:
                    check(typed[key])
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
        return cls(**typed)

    @classmethod
    def names(cls) -> list[str]:
        """The option names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

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
            rows.append(
                (f.name, type_text + ("|none" if optional and not choices else ""), default, f.metadata.get("help", ""))
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TargetOptions(Options):
    """Base of every target's options (``danet-export --option``); a target with no knobs uses it as is."""

    where_text = "--option {key} (target {owner})"
    unknown_text = (
        "unknown option {key!r} for --target {owner}{hint} (valid options: {valid}; see danet-export "
        "--list-options --target {owner})"
    )
