"""Helpers shared by the tests of a hostile-but-realistic user (odd paths, hand-edited manifests,
kills, threads, huge inputs): folder snapshots, manifest edits, CLI calls, read-only folders."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

MODEL = "danet_demo"


def quiet(_: str) -> None:
    pass


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the sha256 of files (``dir``/``link -> target`` otherwise)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def copy_artifact(artifact: Path, dest: Path) -> Path:
    shutil.copytree(artifact, dest)
    return dest


def edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_threads(work, count: int = 8, timeout_s: float = 120.0) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released together by a barrier; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return errors


def run_cli(name: str, argv: list[str]) -> int:
    module = __import__(f"danet_deploy.cli.{name}", fromlist=["main"])
    return module.main(argv)


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for this process: chmod for a normal user, a read-only bind mount as root."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if (
        shutil.which("mount") is None
        or subprocess.run(["mount", "--bind", str(path), str(path)], check=False, capture_output=True).returncode != 0
    ):
        pytest.skip("running as root without the right to bind-mount: cannot make a read-only folder")
    try:
        if (
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=False, capture_output=True).returncode
            != 0
        ):
            pytest.skip("cannot remount read-only here")
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False, capture_output=True)


def write_image(path: Path, hw=(40, 50), seed=0) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)
    return path
