"""Output folders and files of the commands that write results (danet-run, danet-bench, danet-demo, danet-parity).

A read-only or unwritable location is a typed error before any work, never a traceback after
it; files are written whole (temporary sibling + rename), and two inputs never write the same
output name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .files import atomic_output, name_length_problem, writable_ancestor


def check_output_name(path: str | Path, option: str = "--output") -> Path:
    """Refuse, creating and statting nothing, an output whose name the file system cannot hold
    (:func:`~danet_deploy.util.files.name_length_problem`): a 300-character ``-o`` was a traceback."""
    problem = name_length_problem(path)
    if problem:
        raise ConfigError(f"{option}: {problem}")
    return Path(path)


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """The path with symbolic links resolved, and the file's (device, inode) when it exists (hard links)."""
    try:
        stat = path.stat()
        inode = (stat.st_dev, stat.st_ino) if path.is_file() else None
    except OSError:
        inode = None
    return os.path.realpath(path), inode


def check_output_paths(outputs: Mapping[str, str | Path | None]) -> None:
    """The one up-front check of a command's output options (``{"--output": path, "--report": path}``,
    ``None`` for an option not given): each name fits the file system, and no two name the same file
    after resolving symbolic links (or hard links to one file).

    Why: ``danet-train --output w.safetensors --report w.safetensors`` wrote the report over the
    trained weights, and ``danet-parity --output X --plot X`` the plot over the report, both
    exiting 0; every command with several outputs calls this before any work.
    """
    given = {option: Path(path) for option, path in outputs.items() if path is not None and str(path)}
    for option, path in given.items():
        check_output_name(path, option)
    seen: dict[object, tuple[str, Path]] = {}
    for option, path in given.items():
        real, inode = _identity(path)
        for key in (real, inode):
            if key is None:
                continue
            if key in seen:
                other, other_path = seen[key]
                same = f"{other} {other_path} and {option} {path}"
                raise ConfigError(
                    f"{same} name the same file, so one would overwrite the other; give each its own "
                    "path (nothing was written)"
                )
            seen[key] = (option, path)


def _unwritable(option: str, path: Path, exc: OSError) -> ConfigError:
    """The one message for a folder that cannot take files, whether found by probing or by writing."""
    return ConfigError(
        f"cannot write into {option} {path} ({exc.strerror or exc}: read-only or no permission); "
        "choose a folder you can write to"
    )


def check_output_folder(path: str | Path, option: str = "--output") -> Path:
    """Check, creating nothing, that folder ``path`` exists or could be created, and accepts files."""
    path = check_output_name(path, option)
    try:
        writable_ancestor(path)
    except NotADirectoryError as exc:
        raise ConfigError(f"{option} {path}: {exc} is a file; pass a folder") from None
    except OSError as exc:
        raise _unwritable(option, path, exc) from exc
    return path


def prepare_output_folder(path: str | Path, option: str = "--output") -> Path:
    """Create ``path`` (and parents) and check that files can be written in it."""
    path = check_output_folder(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkstemp(prefix=".danet-probe-", dir=path)[1]).unlink()
    except OSError as exc:
        raise _unwritable(option, path, exc) from exc
    return path


def refuse_overwrite(
    folder: str | Path, names: Sequence[str], force: bool, flag: str = "--force", option: str = "--output"
) -> None:
    """Refuse, before any work, to replace files already in ``folder`` unless ``force``.

    Why: an output folder may hold the user's own files, or results of an earlier run they want to
    keep; nothing they own is overwritten silently. Checked up front, so a refusal costs nothing
    and a run never stops half-way with some outputs replaced.
    """
    if force:
        return
    folder = Path(folder)
    clashes = [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]
    if clashes:
        shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise ConfigError(
            f"{option} {folder} already has {shown}; pass {flag} to replace "
            f"{'it' if len(clashes) == 1 else 'them'}, or choose another {option}"
        )


def check_output_file(path: str | Path, force: bool, option: str = "--output", flag: str = "--force") -> Path:
    """Check, before any work, that file ``path`` can be written: not a folder, in a folder that
    accepts files, and not an existing file unless ``force`` (the user's own file is never replaced
    silently)."""
    path = check_output_name(path, option)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; name a file in it")
    check_output_folder(path.parent, option)
    if not force and (path.exists() or path.is_symlink()):
        raise ConfigError(f"{option} {path} already exists; pass {flag} to replace it, or choose another {option}")
    return path


BENCHMARK_RUNS = Path("runs") / "benchmarks"  # git-ignored: a run never lands on the committed results


def benchmark_result_paths(
    out: str | Path | None, names: Sequence[str], root: str | Path, force: bool, option: str = "--out"
) -> list[Path]:
    """The files a benchmark script writes, checked before it measures anything.

    ``out`` given: that file and its siblings named by the other suffixes in ``names`` (e.g. the
    ``.json`` beside a ``.md``), each refused when it exists unless ``force``. ``out`` None: a fresh
    ``<root>/runs/benchmarks/<stem>-<UTC time>-<pid>/`` folder, so a plain run never writes over
    ``benchmarks/results/`` (the committed numbers the README quotes).
    """
    if out is None:
        stem = Path(names[0]).stem
        folder = Path(root) / BENCHMARK_RUNS / f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
        first = folder / names[0]
    else:
        first = Path(out)
    paths = [first] + [first.with_suffix(Path(name).suffix) for name in names[1:]]
    for path in paths:
        check_output_file(path, force, option)
    return paths


def writable(path: str | Path) -> bool:
    """Whether a new file can be created in folder ``path`` (probed, so read-only mounts count)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".danet-probe-", dir=path)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def output_stems(names: Sequence[str | Path]) -> list[str]:
    """One distinct file stem per input: ``x`` for a unique stem; ``x-1``, ``x-2`` ... (in input order)
    for inputs whose stems collide (``a/x.png b/x.jpg``), avoiding the other inputs' stems too."""
    stems = [Path(n).stem for n in names]
    taken = set(stems)
    out: list[str] = []
    counts: dict[str, int] = {}
    for stem in stems:
        if stems.count(stem) == 1:
            out.append(stem)
            continue
        index = counts.get(stem, 0)
        while True:
            index += 1
            candidate = f"{stem}-{index}"
            if candidate not in taken:
                break
        counts[stem] = index
        taken.add(candidate)
        out.append(candidate)
    return out


def save_png(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a PNG atomically; a failure is a :class:`ConfigError` naming the file."""
    from PIL import Image

    try:
        with atomic_output(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}); choose another --output") from exc
