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
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def is_plain_name(name: Any) -> bool:
    """Whether ``name`` is one non-empty path component that stays in its folder: not ``.``/``..``,
    no path separator (``/``, ``\\`` or the OS's) and no NUL.

    Why one rule: names that come from options or manifests (a report stem, a shipped-weights
    name) become files inside a folder the program chose; a separator or ``..`` would move them
    out of it.
    """
    separators = {"/", "\\", "\0", os.sep, *([os.altsep] if os.altsep else [])}
    return (
        isinstance(name, str)
        and bool(name.strip())
        and name not in (".", "..")
        and not any(sep in name for sep in separators)
    )


#: bytes a temporary sibling adds to a name: ``.NAME.tmp-PID-XXXXXXXX`` (artifact folders),
#: ``.NAME.XXXXXXXX.SUFFIX`` (:func:`atomic_output`); a name is refused unless this much is left.
SCRATCH_NAME_RESERVE = 32


def _limit(probe: Path, name: str, default: int) -> int:
    """``os.pathconf`` of the nearest existing folder at or above ``probe`` (``default`` if unknown)."""
    while probe.parent != probe and not os.path.isdir(probe):  # isdir: False (no error) on a too-long name
        probe = probe.parent
    try:
        return int(os.pathconf(probe, name))
    except (OSError, ValueError, AttributeError):
        return default


def name_length_problem(path: str | Path, reserve: int = SCRATCH_NAME_RESERVE) -> str | None:
    """Why ``path`` cannot be created here (a name or the whole path longer than the file system
    allows, counting the ``reserve`` bytes of the temporary sibling it is first written as), or
    ``None``.

    Why: the kernel answers such a name with ENAMETOOLONG, which surfaced as a traceback from the
    first ``stat``; checked by length alone (no system call touches the name), callers turn the
    reason into their own typed error before any work.
    """
    path = Path(path)
    parts = [part for part in path.parts if part not in (path.anchor, "")]
    if not parts:
        return None
    name_max = _limit(Path(os.path.abspath(path)).parent, "PC_NAME_MAX", 255)
    for i, part in enumerate(parts):
        allowed = name_max - (reserve if i == len(parts) - 1 else 0)
        size = len(os.fsencode(part))
        if size > allowed:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            extra = (
                f" ({reserve} of the {name_max} are kept for the temporary name it is written under first)"
                if i == len(parts) - 1
                else ""
            )
            return (
                f"the name {shown!r} is {size} bytes long; this file system allows {allowed} per name{extra}: "
                "choose a shorter name"
            )
    full = len(os.fsencode(os.path.abspath(path))) + reserve
    path_max = _limit(Path(os.path.abspath(path)).parent, "PC_PATH_MAX", 4096)
    if full > path_max:
        return (
            f"the path is {full - reserve} bytes long; this system allows {path_max - reserve}: choose a shorter path"
        )
    return None


def not_a_file_reason(path: str | Path) -> str:
    """Why ``path`` is not a regular file to read, as words that follow its name: ``does not exist``,
    ``is a folder``, ``is a named pipe (FIFO)`` ... (``is a regular file`` if it is one).

    Why: a FIFO or ``/dev/stdin`` (a pipe or a terminal) fails ``Path.is_file()`` like a missing file,
    and was reported as "does not exist" although it is right there; they cannot be read as files
    (no size, no seeking, read once), so the message says what they are and what to pass instead.
    Only ``stat`` is called: opening a FIFO to look would block until a writer comes.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return "is a regular file"
    if stat.S_ISDIR(mode):
        return "is a folder"
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a character device (a terminal, or /dev/stdin)"
        if stat.S_ISCHR(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return (
        f"is {kind}, not a file: it can be read only once and not seeked, which reading this needs; save the data "
        "to a file and pass that"
    )


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
