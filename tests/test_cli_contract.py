"""The command-line contract: each command's parser is generated from the library's request dataclasses.

Why: ``danet-export`` used to re-declare ~30 flags and the defaults of ``ExportRequest`` and copy them
field by field, so ``--help`` and the library drifted. A generated command has every field as a flag
with help, no flag that is not a field, a small CLI module (parsing only) and ``cli_main`` around its
``main``. Commands not converted yet are listed in :data:`HAND_WRITTEN` with the reason; a new command
module must appear in one list or the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from pathlib import Path

import pytest

from danet_deploy.cli import dataclass_args
from danet_deploy.request_fields import arg, cli_fields, deprecated_flags, flags, help_text

CLI = Path(__file__).resolve().parent.parent / "danet_deploy" / "cli"
HELPERS = {"__init__", "common", "dataclass_args"}

#: command module -> the dataclasses its parser is generated from ("module:Class")
GENERATED = {
    "export": ("danet_deploy.export.pipeline:ExportRequest", "danet_deploy.export.command:ExportFlags"),
    "eval": ("danet_deploy.verify.evaluate:EvalRequest",),
    "run": ("danet_deploy.segment:RunRequest",),
    "demo": ("danet_deploy.demo:DemoRequest",),
    "parity": ("danet_deploy.verify.parity_check:ParityRequest",),
    "serve": ("danet_deploy.serve.server:ServeArtifact", "danet_deploy.serve.server:ServeOptions"),
    "client": ("danet_deploy.serve.load_request:LoadTestRequest",),
    "train": ("danet_deploy.training.loop:TrainFlags", "danet_deploy.training.loop:TrainConfig"),
    "bench": ("danet_deploy.bench.request:BenchRequest",),
}
#: command module -> why its parser is still written by hand (none left; a new exception says why here)
HAND_WRITTEN: dict[str, str] = {}
MAX_LINES = 80


def _classes(command: str) -> list[type]:
    out = []
    for spec in GENERATED[command]:
        module, _, name = spec.partition(":")
        out.append(getattr(importlib.import_module(module), name))
    return out


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"danet_deploy.cli.{command}")
    own = getattr(module, "build_parser", None)
    if own is not None and own.__module__ == module.__name__:  # the command's own (with its epilog, extras)
        return own()
    first, *rest = _classes(command)
    return dataclass_args.build_parser(first, f"danet-{command}", "", also=rest)


def _problems(classes: list[type], parser: argparse.ArgumentParser) -> list[str]:
    """What breaks the contract: a field without help or flag, a flag that is no field (a field's
    deprecated spellings, declared in its metadata, are its flags too)."""
    actions: dict[str, list[argparse.Action]] = {}
    for a in parser._actions:
        if not isinstance(a, argparse._HelpAction):
            actions.setdefault(a.dest, []).append(a)
    problems, dests = [], set()
    for cls in classes:
        for f in cli_fields(cls):
            dests.add(f.name)
            if not help_text(f).strip():
                problems.append(f"{cls.__name__}.{f.name} has no help")
            found = actions.get(f.name)
            spelled = sorted(s for a in found or () for s in a.option_strings)
            if found is None:
                problems.append(f"{cls.__name__}.{f.name} has no flag")
            elif spelled and set(spelled) != {*flags(f), *deprecated_flags(f)}:
                problems.append(f"{cls.__name__}.{f.name}: flags {spelled} != {flags(f)} + {list(deprecated_flags(f))}")
        plain = [f.name for f in dataclasses.fields(cls) if f.init and "cli" not in f.metadata]
        problems += [f"{cls.__name__}.{name} is not declared with arg()" for name in plain]
    problems += [
        f"{', '.join(a.option_strings) or dest} is no request field"
        for dest, found in actions.items()
        for a in found
        if dest not in dests
    ]
    return problems


def test_every_command_module_is_listed_once():
    modules = {p.stem for p in CLI.glob("*.py")} - HELPERS
    assert set(GENERATED) | set(HAND_WRITTEN) == modules
    assert not set(GENERATED) & set(HAND_WRITTEN)


@pytest.mark.parametrize("command", sorted(GENERATED))
def test_generated_parser_has_every_field_as_a_flag_with_help(command):
    assert _problems(_classes(command), _parser(command)) == []


@pytest.mark.parametrize("command", sorted(GENERATED))
def test_generated_command_is_parsing_only_and_goes_through_cli_main(command):
    module = importlib.import_module(f"danet_deploy.cli.{command}")
    lines = len((CLI / f"{command}.py").read_text().splitlines())
    assert lines <= MAX_LINES, f"cli/{command}.py has {lines} lines: move the work into the library"
    assert getattr(module.main, "__wrapped__", None) is not None, f"danet-{command}'s main is not wrapped by cli_main"


@pytest.mark.parametrize("command", sorted(GENERATED))
def test_defaults_of_the_command_are_the_dataclass_defaults(command):
    """A flag not given leaves the field's own default (or its factory's)."""
    parser = _parser(command)
    for cls in _classes(command):
        for f in cli_fields(cls):
            action = next(a for a in parser._actions if a.dest == f.name)
            if f.metadata["cli"]["positional"]:  # nargs="*": argparse's empty list, made a tuple
                continue
            if f.default is not dataclasses.MISSING:
                assert action.default == f.default, (
                    f"{f.name}: --help says {action.default!r}, the dataclass {f.default!r}"
                )
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                assert action.default in (None, []), f.name  # left out, so the factory fills it


def test_the_check_finds_a_field_without_help_and_a_hand_added_flag():
    @dataclasses.dataclass
    class Planted:
        good: int = arg(1, "a documented field")
        silent: int = arg(2)
        plain: int = 3

    parser = dataclass_args.build_parser(Planted, "planted", "")
    parser.add_argument("--extra", help="added by hand")
    assert _problems([Planted], parser) == [
        "Planted.silent has no help",
        "Planted.plain is not declared with arg()",
        "--extra is no request field",
    ]


def test_a_deprecated_spelling_is_a_flag_of_its_field_that_says_so(capsys):
    @dataclasses.dataclass
    class Renamed:
        engines: str = arg("a", "the new name", deprecated_flags={"--targets": "use --engines"})

    parser = dataclass_args.build_parser(Renamed, "renamed", "")
    assert _problems([Renamed], parser) == []
    assert "--targets ENGINES  deprecated spelling of --engines" in parser.format_help()  # the new flag's metavar
    assert parser.parse_args(["--targets", "b"]).engines == "b"
    assert capsys.readouterr().err == "note: --targets is deprecated: use --engines\n"
    assert parser.parse_args([]).engines == "a" and capsys.readouterr().err == ""

    @dataclasses.dataclass
    class Switch:
        quiet: bool = arg(False, "a switch", deprecated_flags={"--silent": "use --quiet"})

    with pytest.raises(TypeError, match="only a value flag"):
        dataclass_args.build_parser(Switch, "switch", "")


def test_export_request_from_the_command_line_equals_one_built_in_python():
    from danet_deploy.cli.export import build_parser
    from danet_deploy.export import ExportRequest

    ns = build_parser().parse_args(["--input-size", "64x96", "--model-option", "deep_stem=false", "-o", "out/x"])
    built = ExportRequest(**dataclass_args.request_values(ExportRequest, ns))
    assert built == ExportRequest(input_size=(64, 96), model_options={"deep_stem": "false"}, output="out/x")
