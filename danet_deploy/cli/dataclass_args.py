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
import sys
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from ..request_fields import arg, cli_fields, deprecated_flags, flags, help_text, resolved
from ..targets.options import base_type

R = TypeVar("R")
__all__ = ["arg", "build_parser", "cli_fields", "flags", "help_text", "parse_request", "request_values"]


def build_parser(
    cls: type, prog: str, description: str, epilog: str | None = None, also: Sequence[type] = ()
) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one argument per :func:`arg` field of ``cls`` (then of each of ``also``:
    the flags of a command that are not part of its request, e.g. ``--json`` or ``--list-models``)."""
    from .common import HelpFormatter

    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for kind_cls in (cls, *also):
        hints = typing.get_type_hints(kind_cls)
        for f in cli_fields(kind_cls):
            meta = f.metadata["cli"]
            target = (
                p if meta["group"] is None else groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
            )
            if meta.get("exclusive"):
                if meta["exclusive"] not in exclusive:
                    exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group()
                target = exclusive[meta["exclusive"]]
            kwargs = _argument(f, meta, base_type(hints[f.name])[0])
            target.add_argument(*flags(f), **kwargs)
            for old, note in deprecated_flags(f).items():
                target.add_argument(old, **_deprecated_argument(f, kwargs, note))
    return p


def _deprecated_argument(f: dataclasses.Field[Any], kwargs: dict[str, Any], note: str) -> dict[str, Any]:
    """``add_argument`` keywords of an old spelling of a value flag: parsed like the flag, into the same field."""
    if "type" not in kwargs or f.metadata["cli"]["append"]:
        raise TypeError(f"{f.name}: only a value flag taken once can have a deprecated spelling")
    same = {k: v for k, v in kwargs.items() if k in ("type", "choices", "nargs")}
    return {
        **same,
        "dest": f.name,
        "metavar": kwargs.get("metavar", f.name.upper()),
        "default": argparse.SUPPRESS,
        "action": _DeprecatedFlag,
        "note": note,
        "help": f"deprecated spelling of {flags(f)[0]}",
    }


class _DeprecatedFlag(argparse.Action):
    """An old spelling of a flag: stores like the new one and says, on stderr, that it is deprecated."""

    def __init__(self, *args: Any, note: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.note = note

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"note: {option_string} is deprecated: {self.note}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _argument(f: dataclasses.Field[Any], meta: dict[str, Any], kind: Any) -> dict[str, Any]:
    """``add_argument`` keywords of one field."""
    kwargs: dict[str, Any] = {"help": help_text(f)}
    if not meta["positional"]:
        kwargs["dest"] = f.name
        kwargs["default"] = [] if meta["append"] else (f.default if f.default is not dataclasses.MISSING else None)
        if meta.get("required"):
            kwargs["required"] = True
    if kind is bool:  # a flag turns the field's default around (a True default: the flag says what it turns off)
        kwargs["action"] = "store_false" if f.default is True else "store_true"
        return kwargs
    kwargs["type"] = meta["parser"] or (kind if kind in (int, float) else str)
    if meta["append"]:
        kwargs["action"] = "append"
    for key in ("choices", "nargs", "metavar"):
        if meta[key]:
            kwargs[key] = resolved(meta[key])
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
