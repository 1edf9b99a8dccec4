"""Output options are checked together before any work: no two name one file, every name fits.

``danet-train --output w --report w`` wrote the report over the trained weights and
``danet-parity --output X --plot X`` the plot over the report (both exit 0); ``danet-export -o``
with a 300-character name was an ENAMETOOLONG traceback. Each command now refuses such outputs
with exit 2 through ``result_files.check_output_paths`` and leaves the folder as it was.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from danet_deploy.errors import ConfigError

LONG = "n" * 300


def _cli(name: str, argv: list[str]) -> int:
    module = __import__(f"danet_deploy.cli.{name}", fromlist=["main"])
    return module.main(argv)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


_TINY_TRAIN = [
    "--steps",
    "1",
    "--batch-size",
    "1",
    "--crops-per-scene",
    "1",
    "--crops",
    "64x64",
    "--eval-count",
    "1",
    "--eval-sizes",
    "64x64",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.mark.parametrize("same", ["equal", "symlink", "default-report"])
def test_train_refuses_a_report_on_the_weights(tmp_path, monkeypatch, capsys, same):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "w.json"
    if same == "equal":
        extra = ["--output", str(weights), "--report", str(weights)]
    elif same == "symlink":
        (tmp_path / "link.json").symlink_to(weights)  # dangling: resolved all the same
        extra = ["--output", str(weights), "--report", str(tmp_path / "link.json")]
    else:  # the default report is the weights' name with .json: weights named .json collide
        extra = ["--output", str(weights)]
    before = _snapshot(tmp_path)
    assert _cli("train", [*_TINY_TRAIN, *extra]) == 2
    assert "name the same file" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_parity_refuses_a_plot_on_the_report(tmp_path, capsys):
    report = tmp_path / "r.png"
    before = _snapshot(tmp_path)
    for argv in (
        ["--output", str(report), "--plot", str(report)],
        ["--output", str(report)],
    ):  # the default plot is the report's name with .png
        assert _cli("parity", ["missing-artifact", "--per-layer", *argv]) == 2
        assert "name the same file" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_export_refuses_a_timing_cache_on_the_artifact(tmp_path, capsys):
    target = tmp_path / "x"
    code = _cli(
        "export", ["--target", "tensorrt", "--input-size", "64x64", "--timing-cache", str(target), "-o", str(target)]
    )
    assert code == 2 and "name the same file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_hard_links_to_one_file_are_the_same_output(tmp_path):
    from danet_deploy.util.result_files import check_output_paths

    first = tmp_path / "a.json"
    first.write_text("{}")
    os.link(first, tmp_path / "b.json")
    with pytest.raises(ConfigError, match="--output .* and --report .* name the same file"):
        check_output_paths({"--output": first, "--report": tmp_path / "b.json"})
    check_output_paths({"--output": first, "--report": tmp_path / "c.json", "--plot": None})


@pytest.mark.parametrize(
    "command, argv",
    [
        ("export", ["--input-size", "64x64", "-o", "{long}"]),
        ("export", ["--input-size", "64x64", "-o", "{long}/art"]),
        ("run", ["--model", "danet_demo", "img.png", "-o", "{long}"]),
        ("bench", ["--model", "danet_demo", "--output", "{long}"]),
        ("bench", ["--model", "danet_demo", "--artifacts", "{long}"]),
        ("demo", ["-o", "{long}"]),
        ("parity", ["missing-artifact", "--output", "{long}"]),
        ("train", ["--output", "{long}"]),
        ("train", ["--output", "w.safetensors", "--report", "{long}"]),
    ],
)
def test_a_name_too_long_for_the_file_system_is_a_clear_error(tmp_path, monkeypatch, capsys, command, argv):
    monkeypatch.chdir(tmp_path)
    code = _cli(command, [a.format(long=LONG) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "300 bytes long" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_name_just_short_enough_is_accepted(tmp_path):
    from danet_deploy.util.result_files import check_output_paths

    check_output_paths({"--output": tmp_path / ("n" * 200)})
    with pytest.raises(ConfigError, match="shorter path"):
        check_output_paths({"--output": tmp_path.joinpath(*(["d" * 200] * 25))})
