"""Re-exporting over an artifact deletes nothing the user owns.

An artifact folder may be replaced without ``--force`` only while it holds what its manifest lists;
files the user added (``results/``, ``NOTES.md``) make it refused. Scratch folders beside it are
removed (or a stranded old artifact restored) only when an owner file inside names a process that
is gone: a folder merely named like one (``.art.old-2024``, ``.art.tmp-backup``) is left alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import ArtifactError
from danet_deploy.export import ExportRequest, export
from danet_deploy.util import artifact_dir as ad

ARGS = ["--model", "danet_demo", "--input-size", "64x64"]


def _quiet(_: str) -> None:
    pass


def _cli(argv: list[str]) -> int:
    from danet_deploy.cli.export import main

    return main(argv)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def exported(demo_artifact_64):
    """The suite's shared static 64x64 danet_demo ONNX artifact (``art`` copies it)."""
    return demo_artifact_64


@pytest.fixture
def art(exported, tmp_path):
    """A fresh copy of one exported artifact, as ``tmp_path/art``."""
    return Path(shutil.copytree(exported, tmp_path / "art"))


def test_an_artifact_holding_unlisted_files_is_not_replaced_without_force(art, tmp_path, capsys):
    (art / "results").mkdir()
    (art / "results" / "miou.txt").write_text("0.71")
    (art / "NOTES.md").write_text("my notes")
    before = _snapshot(tmp_path)
    assert _cli([*ARGS, "-o", str(art)]) == 2
    err = capsys.readouterr().err
    assert "NOTES.md" in err and "results" in err and "--force" in err
    assert _snapshot(tmp_path) == before
    assert _cli([*ARGS, "-o", str(art), "--force"]) == 0  # asked for: the whole folder is replaced
    assert not (art / "NOTES.md").exists()
    runtime.load(art).close()


def test_an_empty_user_folder_inside_an_artifact_counts_too(art, tmp_path):
    (art / "plots").mkdir()
    with pytest.raises(ArtifactError, match="plots"):
        ad.check_output_dir(art)


def test_a_clean_artifact_is_replaced_and_has_no_owner_file(art, tmp_path):
    export(ExportRequest("danet_demo", input_size=(64, 64), output=art), log=_quiet)
    assert not (art / ad.OWNER_NAME).exists()
    runtime.load(art).close()


def test_sibling_folders_named_like_scratch_are_left_alone(art, tmp_path):
    backup = tmp_path / ".art.old-2024"
    backup.mkdir()
    (backup / "important.txt").write_text("keep")
    other = tmp_path / ".art.tmp-backup"
    other.mkdir()
    (other / "x").write_text("keep")
    os.utime(other, (0, 0))  # ancient: once removed as a "legacy" scratch folder
    dead = tmp_path / f".art.tmp-{_dead_pid()}-abcd"  # a dead pid in the name, but no owner file
    dead.mkdir()
    before = _snapshot(tmp_path)
    export(ExportRequest("danet_demo", input_size=(64, 64), output=art), log=_quiet)
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("art/")} == {
        k: v for k, v in before.items() if not k.startswith("art/")
    }


def test_scratch_of_a_dead_owner_is_removed_and_of_a_live_owner_kept(tmp_path):
    final = tmp_path / "art"
    dead_pid = _dead_pid()
    stale = tmp_path / f".art.tmp-{dead_pid}-abcd"
    stale.mkdir()
    ad.claim(stale, pid=dead_pid)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".art.tmp-{live.pid}-efgh"
        busy.mkdir()
        ad.claim(busy, pid=live.pid)
        mismatch = tmp_path / f".art.tmp-{dead_pid}-ijkl"  # owner file naming another pid than the name
        mismatch.mkdir()
        ad.claim(mismatch, pid=live.pid)
        notes = ad.recover_stale(final)
        assert not stale.exists() and busy.exists() and mismatch.exists()
        assert any("removed stale" in n for n in notes)
    finally:
        live.kill()
        live.wait()


def test_a_stranded_old_artifact_with_its_owner_file_is_restored(art, tmp_path):
    pid = _dead_pid()
    ad.claim(art, pid=pid)  # what the two-rename swap writes before moving the old artifact aside
    stranded = tmp_path / f".art.old-{pid}"
    os.replace(art, stranded)
    notes = ad.recover_stale(art)
    assert "restored" in notes[0] and art.is_dir() and not stranded.exists()
    assert not (art / ad.OWNER_NAME).exists()
    runtime.load(art).close()
