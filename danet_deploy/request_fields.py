"""Request dataclass fields that carry their command-line flag: help, flag, choices, parser.

Why a module of its own, at the bottom: the library's request dataclasses (``ExportRequest``,
``EvalRequest``, ...) declare their fields with :func:`arg`, and the CLI generates its parsers from
them (:mod:`danet_deploy.cli.dataclass_args`); the library must not import the CLI, so the field
declaration lives below both. :func:`parse_size` is here for the same reason: it is a field's parser.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def parse_size(text: str) -> tuple[int, int]:
    """``512x1024`` / ``512,1024`` / ``512`` (square) -> (H, W)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW (e.g. 512x1024)") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be two positive integers HxW (e.g. 512x1024)")
    return values[0], values[1]


Lazy = Callable[[], Any]


def arg(
    default: Any = None,
    help: str | Lazy = "",
    *,
    flag: str | tuple[str, ...] | None = None,
    choices: Sequence[Any] | Lazy | None = None,
    parser: Callable[[str], Any] | None = None,
    positional: bool = False,
    nargs: str | None = None,
    metavar: str | None = None,
    group: str | None = None,
    default_factory: Lazy | None = None,
    append: bool = False,
    convert: Callable[[Any], Any] | None = None,
    required: bool = False,
    exclusive: str | None = None,
    deprecated_flags: Mapping[str, str] | None = None,
) -> Any:
    """A request field with what its command-line flag needs (``flag`` defaults to ``--field-name``).

    ``flag``: one flag or several (``("--output", "-o")``); ``parser``: turns the text into the
    field's value (raise ``argparse.ArgumentTypeError`` or a ``ValueError`` for a bad one, shown as
    a usage error); ``nargs``: argparse's, e.g. ``"+"``; ``append``: the flag may be given again
    (a list); ``convert``: turns what argparse collected into the field's value (e.g. KEY=VALUE
    pairs into a dict). ``help`` and ``choices`` may be functions, called when the parser is built:
    a registry that plugins extend (the targets) is read then, not at import.
    ``exclusive``: fields with the same name here are mutually exclusive flags.
    ``deprecated_flags``: old spellings of the flag, each with the note printed when it is used
    (``{"--targets": "the rows are engines, use --engines (same values)"}``); they still work.
    ``required``: a field without a default, its flag required (place it first).
    ``default_factory``: the dataclass's; the flag's own default is then ``None`` (``[]`` with
    ``append``), and a flag not given leaves the field to the factory.
    """
    meta = {
        "help": help,
        "flag": flag,
        "choices": choices if callable(choices) or not choices else tuple(choices),
        "parser": parser,
        "positional": positional,
        "nargs": nargs,
        "metavar": metavar,
        "group": group,
        "append": append,
        "convert": convert,
        "required": required,
        "exclusive": exclusive,
        "deprecated_flags": dict(deprecated_flags or {}),
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default or default_factory (dataclass fields must not share a mutable default)")
    if required:
        return dataclasses.field(metadata={"cli": meta})
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"cli": meta})
    return dataclasses.field(default=default, metadata={"cli": meta})


def resolved(value: Any) -> Any:
    """A lazy :func:`arg` attribute (help, choices) computed now; any other value as it is."""
    return value() if callable(value) else value


def flags(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The command-line flags of an :func:`arg` field (its name for a positional one)."""
    meta = field.metadata["cli"]
    if meta["positional"]:
        return (field.name,)
    flag = meta["flag"] or "--" + field.name.replace("_", "-")
    return (flag,) if isinstance(flag, str) else tuple(flag)


def deprecated_flags(field: dataclasses.Field[Any]) -> dict[str, str]:
    """The old spellings of an :func:`arg` field's flag, each with the note printed when it is used."""
    return dict(field.metadata["cli"].get("deprecated_flags") or {})


def help_text(field: dataclasses.Field[Any]) -> str:
    """The help of an :func:`arg` field (a lazy one computed now)."""
    return str(resolved(field.metadata["cli"]["help"]) or "")


def cli_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` declared with :func:`arg` (those that have a flag)."""
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]
