"""``--help`` of danet-export, danet-serve, danet-client and ``--list-options``: every flag and option explained,
each default said once."""

from __future__ import annotations

import re

import pytest

from danet_deploy.cli.export import build_parser
from danet_deploy.targets import targets


def _entries(help_text: str) -> dict[str, str]:
    """Flag -> its help text (continuation lines joined), from argparse's formatted help."""
    entries: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        match = re.match(r"  (-{1,2}[\w-]+)", line)
        if match:
            flag = match.group(1)
            entries[flag] = line
        elif flag and line.startswith("    "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


def test_every_export_flag_has_help_and_says_its_default_once(monkeypatch):
    """--precision and --input-size had no help (nor default); --arch, --target, --calib-method and
    --output said '(default: ...)' twice, the second time '(default: None)'."""
    monkeypatch.setenv("COLUMNS", "200")
    entries = _entries(build_parser().format_help())
    assert len(entries) > 30
    for flag, text in entries.items():
        words = re.sub(r"^\s*-{1,2}[\w-]+(, -{1,2}[\w-]+)*( [A-Z_{}x,|-]+)?", "", text).strip()
        assert words, f"{flag} has no help: {text!r}"
        assert text.lower().count("default") <= 1, f"{flag} states its default twice: {text!r}"
        assert "(default: None)" not in text and "(default: [])" not in text, text
    assert "(default: fp32)" in entries["--precision"] and "(default: 512x512)" in entries["--input-size"]


@pytest.mark.parametrize("module", ["serve", "client"])
def test_serve_and_client_flags_have_help_and_say_their_default_once(module, monkeypatch):
    import importlib

    monkeypatch.setenv("COLUMNS", "200")
    parser = importlib.import_module(f"danet_deploy.cli.{module}").build_parser()
    for flag, text in _entries(parser.format_help()).items():
        assert re.sub(r"^\s*-{1,2}[\w-]+( [A-Z_x]+)?", "", text).strip(), f"{flag} has no help"
        assert text.lower().count("default") <= 1, text


@pytest.mark.parametrize("spec", targets(), ids=lambda spec: spec.name)
def test_every_target_option_is_described(spec):
    """The triton target's options were listed with no description."""
    for name, _kind, _default, text in spec.options_class.describe():
        assert text.strip(), f"--target {spec.name}: option {name} has no description"


def test_list_options_states_each_default_once(capsys):
    from danet_deploy.cli.export import main

    assert main(["--list-options", "--target", "triton"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines and all(line.lower().count("default") <= 1 for line in lines), lines
