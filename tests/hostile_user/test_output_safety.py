"""The user's files survive every command: an existing folder or file that is not an artifact is
refused (replaced only with ``--force``), danet-run keeps outputs of inputs sharing a stem apart and
never overwrites, read-only locations fail with a typed error, and ``-o .`` or a mount point is
refused before any work. Each test snapshots the surrounding folder before and after."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hostile_user.hostile_support import (
    MODEL,
    copy_artifact,
    read_only,
    run_cli,
    snapshot,
    write_image,
)

pytest.importorskip("onnxruntime")


def test_existing_unrelated_folder_is_refused_then_replaced_only_with_force(tmp_path, capsys):
    target = tmp_path / "d"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.txt").write_text("x")
    before = snapshot(tmp_path)
    argv = ["--model", MODEL, "--input-size", "64x64", "-o", str(target)]
    assert run_cli("export", argv) == 2
    assert "--force" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert run_cli("export", [*argv, "--force"]) == 0
    assert (target / "manifest.json").is_file() and not (target / "thesis.txt").exists()
    assert run_cli("export", argv) == 0  # an artifact is replaced without --force
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no .d.tmp-* / .d.old-* left


def test_existing_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("mine")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        assert run_cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(target), *extra]) == 2
        assert "existing file" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_folder_with_someone_elses_manifest_json_is_not_an_artifact(tmp_path, monkeypatch, capsys):
    from danet_deploy.export import pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda r: (_ for _ in ()).throw(AssertionError("work started")))
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text(json.dumps({"name": "my app", "start_url": "/", "icons": []}))
    (webapp / "index.html").write_text("<html></html>")
    before = snapshot(tmp_path)
    assert run_cli("export", ["--input-size", "64x64", "-o", str(webapp)]) == 2
    assert "not a danet-deploy artifact" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    for broken in ("[1, 2]", "{not json", "\\x00" * 8):
        (webapp / "manifest.json").write_text(broken)
        assert run_cli("export", ["--input-size", "64x64", "-o", str(webapp)]) == 2


def test_run_keeps_every_result_of_inputs_sharing_a_stem(artifact, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_image(tmp_path / "a" / "x.png", seed=1)
    second = write_image(tmp_path / "b" / "x.jpg", seed=2)
    out = tmp_path / "out"
    assert run_cli("run", ["--model", str(artifact), str(first), str(second), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    masks = [json.loads(line)["mask"] for line in captured.out.splitlines()]
    assert len(set(masks)) == 2 and all(Path(m).is_file() for m in masks)
    assert "share a file name stem" in captured.err
    assert len(list(out.glob("*_mask.png"))) == 2


def test_run_never_overwrites_existing_outputs_without_force(artifact, tmp_path, capsys):
    image = write_image(tmp_path / "x.png", seed=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_overlay.png").write_text("the user's own file")
    assert run_cli("run", ["--model", str(artifact), str(image), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already has x_overlay.png" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["x_overlay.png"]  # refused before writing anything
    assert (out / "x_overlay.png").read_text() == "the user's own file"
    assert run_cli("run", ["--model", str(artifact), str(image), "-o", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_color.png", "x_mask.png", "x_overlay.png"]
    capsys.readouterr()
    assert run_cli("run", ["--model", str(artifact), str(image), "-o", str(out)]) == 2  # a rerun keeps the results
    assert "x_mask.png, x_color.png, x_overlay.png" in capsys.readouterr().err


def test_read_only_outputs_fail_cleanly(artifact, tmp_path, capsys):
    image = write_image(tmp_path / "img.png")
    with read_only(tmp_path / "ro") as ro:
        before = snapshot(tmp_path)
        assert run_cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(ro / "art")]) == 2
        assert run_cli("run", ["--model", str(artifact), str(image), "-o", str(ro / "masks")]) == 2
        from danet_deploy.cli.bench import main as bench_main

        assert bench_main(["--model", MODEL, "--output", str(ro / "bench")]) == 2
        assert run_cli("parity", [str(artifact), "--output", str(ro / "report.json")]) == 2
        errors = capsys.readouterr().err
        assert errors.count("read-only or no permission") >= 3 and "Traceback" not in errors
        assert snapshot(tmp_path) == before


def test_parity_on_a_read_only_artifact_skips_the_manifest_with_a_note(artifact, tmp_path, capsys):
    holder = tmp_path / "ro"
    copy_artifact(artifact, holder / "art")
    with read_only(holder):
        before = snapshot(holder)
        assert run_cli("parity", [str(holder / "art"), "--generated", "1"]) in (0, 1)
        assert "read-only" in capsys.readouterr().err
        assert snapshot(holder) == before


def test_dot_and_mount_point_are_refused_before_work(tmp_path, monkeypatch, capsys):
    from danet_deploy.export import pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda r: (_ for _ in ()).throw(AssertionError("work started")))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    for out in (".", "..", str(tmp_path)):
        assert run_cli("export", ["--input-size", "64x64", "-o", out, "--force"]) == 2
    mount = tmp_path / "mnt"
    mount.mkdir()
    (mount / "manifest.json").write_text("{}")  # even an artifact-looking mount point
    before = snapshot(tmp_path)
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mount or real_ismount(p))
    assert run_cli("export", ["--input-size", "64x64", "-o", str(mount)]) == 2
    assert "mount point" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_bind_mount_on_the_same_file_system_is_a_mount_point(tmp_path, capsys):
    from danet_deploy.util.artifact_dir import is_mount_point

    spaced = tmp_path / "a b"
    spaced.mkdir()
    table = (
        f"36 35 98:0 /x {str(spaced).replace(' ', chr(92) + '040')} rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 98:0 / / rw - ext4 /dev/sda1 rw\n"
    )
    assert is_mount_point(spaced, table)  # the kernel's escaped space is read back
    assert not is_mount_point(tmp_path, table)
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(mount), str(mount)], check=False, capture_output=True).returncode != 0:
        pytest.skip("no permission to bind-mount here; the mount table parsing is tested above")
    try:
        assert is_mount_point(mount)
        assert run_cli("export", ["--input-size", "64x64", "-o", str(mount), "--force"]) == 2
        assert "mount point" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)
    # an artifact folder with something mounted inside it: replacing it would delete the mounted files
    precious, art = tmp_path / "precious", tmp_path / "art"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"format_version": 1, "primary": "m.onnx", "files": {}}))
    (art / "data").mkdir()
    assert (
        subprocess.run(
            ["mount", "--bind", str(precious), str(art / "data")], check=False, capture_output=True
        ).returncode
        == 0
    )
    try:
        assert run_cli("export", ["--input-size", "64x64", "-o", str(art), "--force"]) == 2
        assert "holds a mount point" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(art / "data")], check=False, capture_output=True)
    assert (precious / "important.txt").read_text() == "keep me"
