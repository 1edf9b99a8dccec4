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

from ..targets.options import _base_type

R = TypeVar("R")


def arg(default: Any = None, help: str = "", *, flag: str | None = None,
        choices: Sequence[Any] | None = None, parser: Callable[[str], Any] | None = None,
        positional: bool = False, nargs: str | None = None, metavar: str | None = None,
        group: str | None = None) -> Any:
    """A request field with what its command-line flag needs (``flag`` defaults to ``--field-name``).

    ``parser``: turns the text into the field's value (raise ``argparse.ArgumentTypeError`` or a
    ``ValueError`` for a bad one, shown as a usage error); ``nargs``: argparse's, e.g. ``"+"``.
    """
    meta = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None, "parser": parser,
            "positional": positional, "nargs": nargs, "metavar": metavar, "group": group}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default (dataclass fields must not share a mutable default)")
    return dataclasses.field(default=default, metadata={"cli": meta})


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], dict[str, Any]]]:
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(cls) if "cli" in f.metadata]


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one argument per :func:`arg` field of ``cls``."""
    from .common import HelpFormatter

    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f, meta in _fields(cls):
        kind, _ = _base_type(hints[f.name])
        target = p if meta["group"] is None else groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        kwargs: dict[str, Any] = {"help": meta["help"]}
        if kind is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = meta["parser"] or (kind if kind in (int, float) else str)
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["nargs"]:
                kwargs["nargs"] = meta["nargs"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        if meta["positional"]:
            target.add_argument(f.name, **kwargs)
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            target.add_argument(meta["flag"] or "--" + f.name.replace("_", "-"), dest=f.name, default=default,
                                **kwargs)
    return p


def parse_request(cls: type[R], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> R:
    """Parse ``argv`` into ``cls`` (a list from ``nargs`` becomes a tuple)."""
    ns = parser.parse_args(argv)
    values = {f.name: getattr(ns, f.name) for f, _ in _fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)
