"""Whole-or-nothing file writes and file hashes, shared by every module that writes to disk.

A reader (a robot loading an engine, a second export reusing a cache, a user opening a plot)
must never see a half-written file: everything is written to a temporary sibling and renamed
into place only when complete. Temporary files get ordinary permissions (``mkstemp`` makes them
0600), since artifacts are meant to be copied and shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def is_plain_name(name: Any) -> bool:
    """Whether ``name`` is one non-empty path component that stays in its folder: not ``.``/``..``,
    no path separator (``/``, ``\\`` or the OS's) and no NUL.

    Why one rule: names that come from options or manifests (a report stem, a shipped-weights
    name) become files inside a folder the program chose; a separator or ``..`` would move them
    out of it.
    """
    separators = {"/", "\\", "\0", os.sep, *([os.altsep] if os.altsep else [])}
    return (isinstance(name, str) and bool(name.strip()) and name not in (".", "..")
            and not any(sep in name for sep in separators))


def weights_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a shipped-weights name (``ModelConfig.weights``), or ``None`` if it can.

    Why a rule by name: the field is read back from artifact manifests, so it must only ever pick a
    file of this package's weights folder, never steer the loader to a path of the manifest's choosing.
    Here, not in ``model``, because the manifest checks it on a runtime-only install.
    """
    if not isinstance(name, str) or not name.strip():
        return "is not a file name"
    if not is_plain_name(name) or ":" in name:
        return "is not a plain file name (no folders, drive, '..' or absolute path)"
    return None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LIVE_SCRATCH: set[Path] = set()  # temporary files and folders this process removes if SIGTERM arrives


@contextlib.contextmanager
def removed_on_terminate(path: Path) -> Iterator[Path]:
    """Register ``path`` for :func:`remove_live_scratch` while the block runs.

    Why: the console scripts' SIGTERM handler exits with ``os._exit`` (raising there can abort
    the process inside a C extension), so no ``finally`` block runs; whatever must not be left
    behind is registered here instead.
    """
    _LIVE_SCRATCH.add(path)
    try:
        yield path
    finally:
        _LIVE_SCRATCH.discard(path)


def remove_live_scratch() -> None:
    """Delete every registered temporary file and folder (called from the SIGTERM handler)."""
    for path in list(_LIVE_SCRATCH):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so libraries pick the right format);
    it replaces ``path`` if the block completes and is removed if it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with removed_on_terminate(tmp):
            yield tmp
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def working_directory(path: str | Path) -> Iterator[Path]:
    """Run a block with ``path`` as the working directory (converters that leave temporary files
    in the current directory are run inside a scratch folder). ``contextlib.chdir`` needs 3.11."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(old)


def writable_ancestor(path: str | Path) -> Path:
    """The nearest existing folder at or above ``path``, checked to accept a new entry (creating nothing
    that stays). Raises :class:`NotADirectoryError` when that ancestor is a file and :class:`OSError` when
    it is read-only; callers turn both into their own typed, user-facing errors."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(str(probe))
    Path(tempfile.mkdtemp(prefix=".danet-probe-", dir=probe)).rmdir()
    return probe
