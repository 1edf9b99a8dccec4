"""Command lines generated from a request dataclass: one field = one flag, its metadata = its help.

A console script's options used to be written twice, once as ``add_argument`` calls and once as
the library's keyword arguments, and drifted apart. A request dataclass declares each field with
:func:`arg` (help, flag, choices, a parser for the text, positional or not); :func:`build_parser`
turns it into an ``argparse`` parser and :func:`parse_request` into the request itself, so the
CLI module holds parsing only and a Python user builds the same request directly. Same idea as
:func:`danet_deploy.targets.options.option` (typed per-target options), for whole commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..targets.options import base_type

R = TypeVar("R")


Lazy = Callable[[], Any]


def arg(default: Any = None, help: str | Lazy = "", *, flag: str | tuple[str, ...] | None = None,
        choices: Sequence[Any] | Lazy | None = None, parser: Callable[[str], Any] | None = None,
        positional: bool = False, nargs: str | None = None, metavar: str | None = None,
        group: str | None = None, default_factory: Lazy | None = None, append: bool = False,
        convert: Callable[[Any], Any] | None = None) -> Any:
    """A request field with what its command-line flag needs (``flag`` defaults to ``--field-name``).

    ``flag``: one flag or several (``("--output", "-o")``); ``parser``: turns the text into the
    field's value (raise ``argparse.ArgumentTypeError`` or a ``ValueError`` for a bad one, shown as
    a usage error); ``nargs``: argparse's, e.g. ``"+"``; ``append``: the flag may be given again
    (a list); ``convert``: turns what argparse collected into the field's value (e.g. KEY=VALUE
    pairs into a dict). ``help`` and ``choices`` may be functions, called when the parser is built:
    a registry that plugins extend (the targets) is read then, not at import.
    ``default_factory``: the dataclass's; the flag's own default is then ``None`` (``[]`` with
    ``append``), and a flag not given leaves the field to the factory.
    """
    meta = {"help": help, "flag": flag, "choices": choices if callable(choices) or not choices else tuple(choices),
            "parser": parser, "positional": positional, "nargs": nargs, "metavar": metavar, "group": group,
            "append": append, "convert": convert}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default or default_factory (dataclass fields must not share a mutable default)")
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"cli": meta})
    return dataclasses.field(default=default, metadata={"cli": meta})


def _resolved(value: Any) -> Any:
    return value() if callable(value) else value


def flags(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The command-line flags of an :func:`arg` field (its name for a positional one)."""
    meta = field.metadata["cli"]
    if meta["positional"]:
        return (field.name,)
    flag = meta["flag"] or "--" + field.name.replace("_", "-")
    return (flag,) if isinstance(flag, str) else tuple(flag)


def help_text(field: dataclasses.Field[Any]) -> str:
    """The help of an :func:`arg` field (a lazy one computed now)."""
    return str(_resolved(field.metadata["cli"]["help"]) or "")


def cli_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` declared with :func:`arg` (those that have a flag)."""
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None,
                 also: Sequence[type] = ()) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one argument per :func:`arg` field of ``cls`` (then of each of ``also``:
    the flags of a command that are not part of its request, e.g. ``--json`` or ``--list-models``)."""
    from .common import HelpFormatter

    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    groups: dict[str, Any] = {}
    for kind_cls in (cls, *also):
        hints = typing.get_type_hints(kind_cls)
        for f in cli_fields(kind_cls):
            meta = f.metadata["cli"]
            target = p if meta["group"] is None else groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
            target.add_argument(*flags(f), **_argument(f, meta, base_type(hints[f.name])[0]))
    return p


def _argument(f: dataclasses.Field[Any], meta: dict[str, Any], kind: Any) -> dict[str, Any]:
    """``add_argument`` keywords of one field."""
    kwargs: dict[str, Any] = {"help": help_text(f)}
    if not meta["positional"]:
        kwargs["dest"] = f.name
        kwargs["default"] = [] if meta["append"] else (f.default if f.default is not dataclasses.MISSING else None)
    if kind is bool:
        kwargs["action"] = "store_true"
        return kwargs
    kwargs["type"] = meta["parser"] or (kind if kind in (int, float) else str)
    if meta["append"]:
        kwargs["action"] = "append"
    for key in ("choices", "nargs", "metavar"):
        if meta[key]:
            kwargs[key] = _resolved(meta[key])
    return kwargs


def request_values(cls: type, ns: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``cls`` from parsed flags: ``convert`` applied, a list from ``nargs`` made a
    tuple, a flag not given left out where the field has a ``default_factory``."""
    values: dict[str, Any] = {}
    for f in cli_fields(cls):
        value, convert = getattr(ns, f.name), f.metadata["cli"]["convert"]
        if convert is not None:
            value = convert(value)
        elif isinstance(value, list):
            value = tuple(value)
        if value is None and f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = value
    return values


def parse_request(cls: type[R], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> R:
    """Parse ``argv`` into ``cls`` (a list from ``nargs`` becomes a tuple)."""
    return cls(**request_values(cls, parser.parse_args(argv)))
