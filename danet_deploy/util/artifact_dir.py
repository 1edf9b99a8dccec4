"""Where an artifact folder may be written, and how a new one replaces an old one safely.

Rules (checked by :func:`check_output_dir` *before* any export work, so a bad ``-o`` costs nothing):

* only a folder that is a danet-deploy artifact (its ``manifest.json`` is a danet-deploy manifest,
  not merely a file of that name), or an empty folder, is replaced; any other folder is refused
  unless ``force`` (``danet-export --force``);
* a file, a symbolic link, a mount point or a folder with one inside it (bind mounts included:
  read from the kernel's mount table, since ``os.path.ismount`` misses a bind mount on its own
  file system), the current folder or one above it, the home folder and the file-system root are
  never replaced, force or not;
* the parent must accept a new folder (read-only file systems, missing permissions): probed
  by creating and removing a scratch folder.

* an artifact that holds files or folders its manifest does not list (``results/``, ``NOTES.md``
  the user added) is refused unless ``force``: replacing it would delete them.

The new artifact is written to ``.NAME.tmp-PID-*`` beside the final name and swapped in with one
``renameat2(RENAME_EXCHANGE)`` where Linux offers it: at every instant the final name holds
either the whole old or the whole new artifact. Elsewhere the swap is two renames through
``.NAME.old-PID``; a kill between them is repaired on the next export to that name
(:func:`recover_stale`), which also removes the ``.NAME.tmp-PID-*`` and ``danet-export-PID-*``
scratch folders that a killed export (SIGKILL) left behind. Every such folder carries an owner
file (:data:`OWNER_NAME`: the PID and the process's start time) from the moment it is made; a
folder is touched only if that file names the PID in its name and that process is gone. A folder
merely named like one (``.art.old-2024``, ``.art.tmp-backup``) is the user's and is left alone. On SIGTERM the handler of
:func:`terminate_as_exit` removes this process's live scratch folders itself and exits 143; it
does not raise, because an exception raised while a C extension is calling back into Python
(an import inside nanobind, a torch hook) aborts the process instead of unwinding it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from ..errors import ArtifactError, ConfigError
from .files import remove_live_scratch, removed_on_terminate, writable_ancestor

MANIFEST_NAME = "manifest.json"
SCRATCH_PREFIX = "danet-export-"
OWNER_NAME = ".danet-owner"  # inside scratch folders: "PID START" of the process that made them
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextlib.contextmanager
def _terminate_deferred() -> Iterator[None]:
    """Hold SIGTERM back while an artifact is swapped in, so the swap is never cut in half."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_MANIFEST_MAX_BYTES = 16 << 20
_MANIFEST_KEYS = ("format_version", "primary", "files")


def is_artifact(path: Path) -> bool:
    """A folder danet-deploy wrote: its ``manifest.json`` is a JSON object with a danet-deploy
    manifest's keys (any format version, so an older artifact can still be replaced).

    Why not just the file name: web apps, npm packages and browser extensions keep a
    ``manifest.json`` too, and such a folder must not be replaced without ``--force``.
    """
    manifest = path / MANIFEST_NAME
    try:
        if not path.is_dir() or not manifest.is_file() or manifest.stat().st_size > _MANIFEST_MAX_BYTES:
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in _MANIFEST_KEYS)


def _unescape_mount_path(field: str) -> str:
    """``/proc/self/mountinfo`` writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _read_mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ""


def _mount_points(mountinfo: str | None = None) -> list[str]:
    """Every mount point of this process's mount namespace (``/proc/self/mountinfo``, field 5)."""
    if mountinfo is None:
        mountinfo = _read_mountinfo()
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape_mount_path(fields[4]))
    return points


def is_mount_point(path: Path, mountinfo: str | None = None) -> bool:
    """Whether ``path`` is a mount point, bind mounts on the same file system included.

    ``os.path.ismount`` compares device numbers with the parent's, so a bind mount of a folder of
    the same file system looks like an ordinary folder; replacing it then fails with EBUSY only
    after the whole export ran. The kernel's mount table knows every mount point.
    """
    return os.path.ismount(path) or os.path.realpath(path) in _mount_points(mountinfo)


def mounts_inside(path: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points below ``path``: replacing ``path`` would delete the files of whatever is mounted
    there (``shutil.rmtree`` descends into mounts), so such a folder is never replaced."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    return [point for point in _mount_points(mountinfo) if point.startswith(prefix)]


def _mount_point_error(path: Path) -> ArtifactError:
    return ArtifactError(
        f"output {path} is a mount point and cannot be replaced; pass a folder inside it, e.g. {path / 'artifact'}"
    )


def check_output_dir(final: str | Path, force: bool = False) -> Path:
    """Raise a typed error if ``final`` may not become an artifact folder; return it as a Path."""
    from .result_files import check_output_name

    final = check_output_name(final)
    if final.name in ("", ".", ".."):
        raise ConfigError(
            f"output {str(final)!r} names the current or a parent folder, which is never replaced; "
            "pass a new folder name, e.g. -o artifacts/my-model"
        )
    target, cwd = final.resolve(), Path.cwd().resolve()
    protected = {cwd, Path(target.anchor), *cwd.parents}
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        protected.add(Path.home().resolve())
    if target in protected:
        raise ConfigError(
            f"output {str(final)!r} is the current folder, a folder above it, the home folder or the "
            "root; pass a new folder name"
        )
    if final.is_symlink():
        raise ArtifactError(f"output {final} is a symbolic link; pass the folder it points to, or another name")
    if final.exists():
        if not final.is_dir():
            raise ArtifactError(
                f"output {final} is an existing file, not an artifact folder; choose another --output "
                "(nothing was changed)"
            )
        mountinfo = _read_mountinfo()  # one read of the mount table for both checks
        if is_mount_point(final, mountinfo):
            raise _mount_point_error(final)
        inside = mounts_inside(final, mountinfo)
        if inside:
            raise ArtifactError(
                f"output {final} holds a mount point ({inside[0]}): replacing the folder would delete "
                "the mounted files; unmount it or choose another --output (nothing was changed)"
            )
        if not is_artifact(final) and any(final.iterdir()) and not force:
            raise ArtifactError(
                f"output {final} exists and is not a danet-deploy artifact (no {MANIFEST_NAME}); "
                "refusing to replace it and its files. Choose another --output, or pass --force to "
                "replace the whole folder"
            )
        extra = unlisted_entries(final) if is_artifact(final) and not force else []
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise ArtifactError(
                f"output {final} is an artifact, but it also holds {shown}, which its manifest does "
                "not list: replacing it would delete them. Move them out, choose another --output, or "
                "pass --force to replace the whole folder (nothing was changed)"
            )
    _probe_writable(final.parent)
    return final


def _probe_writable(parent: Path) -> None:
    """The nearest existing ancestor of ``parent`` must accept a new folder."""
    try:
        writable_ancestor(parent)
    except NotADirectoryError as exc:
        raise ArtifactError(f"cannot create {parent}: {exc} is a file, not a folder; choose another --output") from None
    except OSError as exc:
        raise ArtifactError(
            f"cannot write into {parent} ({exc.strerror or exc}: read-only or no permission); "
            "choose an output folder you can write to"
        ) from exc


def unlisted_entries(folder: Path) -> list[str]:
    """Files and folders inside artifact ``folder`` that its manifest neither lists nor needs (a folder
    counts when no listed file lies below it), as ``name`` / ``name/``; symbolic links are not followed.

    Why: users keep results and notes beside the model files; the folder is replaced as a whole, so
    anything not listed would be deleted by the next export to that name.
    """
    try:
        listed = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    files = set(listed) if isinstance(listed, dict) else set()
    needed = {parent.as_posix() for name in files for parent in PurePosixPath(name).parents}
    extra: list[str] = []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(names):
            path = (rel / name).as_posix()
            if path not in files and path not in (MANIFEST_NAME, OWNER_NAME):
                extra.append(path)
        for name in sorted(dirs):
            path = (rel / name).as_posix()
            if path not in needed:
                extra.append(path + "/")
        dirs[:] = [d for d in dirs if (rel / d).as_posix() in needed]
    return extra


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (``/proc/PID/stat`` field 22, clock ticks since boot), or
    ``None`` where unknown: with the PID it names one process, even after the PID is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim(folder: Path, pid: int | None = None) -> None:
    """Write ``folder``'s owner file: this process (or ``pid``) and its start time, so a later export
    can tell that the folder is scratch of a process that is gone (:func:`recover_stale`)."""
    pid = os.getpid() if pid is None else pid
    (folder / OWNER_NAME).write_text(f"{pid} {_process_start(pid) or '-'}\n", encoding="utf-8")


def _release(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / OWNER_NAME).unlink()


def _owner_gone(entry: Path, pid: int) -> bool:
    """Whether ``entry``'s owner file names process ``pid`` (the one in its name), and that process is
    gone (not running, or its PID now belongs to a process started later). No owner file: ``False``."""
    try:
        owner, start = (entry / OWNER_NAME).read_text(encoding="utf-8").split()[:2]
        if int(owner) != pid:
            return False
    except (OSError, ValueError):
        return False
    if not _alive(pid):
        return True
    now = _process_start(pid)
    return start != "-" and now is not None and now != start


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _own_folder(entry: Path) -> bool:
    with contextlib.suppress(OSError):
        return entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
    return False


def recover_stale(final: str | Path) -> list[str]:
    """Repair what a killed export to ``final`` left: put a stranded ``.NAME.old-PID`` back under the
    final name if that name is empty, and remove stale ``.NAME.tmp-*`` / ``.NAME.old-*`` folders of
    dead processes: only folders whose owner file names the PID in their name and a process that
    is gone (:func:`_owner_gone`). Returns what was done (for the log)."""
    final = Path(final)
    parent, name = final.parent, final.name
    done: list[str] = []
    if not parent.is_dir():
        return done
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)(?:-.*)?$")
    for entry in sorted(parent.iterdir()):
        match = pattern.match(entry.name)
        if not match or not _own_folder(entry) or not _owner_gone(entry, int(match.group(2))):
            continue
        # the stranded folder is whatever the swap moved aside (an artifact, or a folder replaced
        # with force): put it back, never delete it
        if match.group(1) == "old" and not final.exists() and not final.is_symlink() and entry.is_dir():
            os.replace(entry, final)
            _release(final)
            done.append(f"restored {final} from {entry.name} (an earlier export was interrupted mid-swap)")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed stale {entry}")
    return done


def clean_stale_scratch(root: str | Path | None = None) -> list[str]:
    """Remove ``danet-export-PID-*`` scratch folders of dead processes from the temp folder."""
    root = Path(root or tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(SCRATCH_PREFIX)}(\d+)-.*$")
    done = []
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            match = pattern.match(entry.name)
            if match and _own_folder(entry) and _owner_gone(entry, int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                done.append(f"removed stale {entry}")
    return done


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private scratch folder named with this process's PID (so a later run can tell it is stale)."""
    with (
        tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as tmp,
        removed_on_terminate(Path(tmp)) as path,
    ):
        claim(path)
        yield path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); ``False`` where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    if code == errno.EBUSY:
        raise _mount_point_error(b)
    raise OSError(code, os.strerror(code), str(b))


def _aside(final: Path, pid: int | str) -> Path:
    """Where the two-rename swap keeps the old ``final`` between its renames: ``.NAME.old-PID``."""
    return final.with_name(f".{final.name}.old-{pid}")


def stranded_copies(final: str | Path) -> list[Path]:
    """Folders a swap killed between its renames left aside for ``final`` (restored by the next
    export to that name)."""
    final = Path(final)
    if not final.name or not final.parent.is_dir():
        return []
    return sorted(p for p in final.parent.glob(_aside(final, "*").name) if p.is_dir())


def swap_into_place(tmp: Path, final: Path) -> None:
    """Make the complete folder ``tmp`` appear as ``final``, replacing an old ``final`` recoverably."""
    if not final.exists():
        os.replace(tmp, final)
        return
    if _exchange(tmp, final):  # tmp now holds the old artifact
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = _aside(final, os.getpid())
    claim(final)  # so the next export can tell `old` is this process's and restore it
    try:
        os.replace(final, old)  # a kill here: the next export to this name restores `old`
    except BaseException:
        _release(final)
        raise
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        _release(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def artifact_dir(final: str | Path, force: bool = False, log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``final`` only if the block completes (see the module doc)."""
    final = check_output_dir(final, force)
    for line in recover_stale(final) + clean_stale_scratch():
        if log is not None:
            log(line)
    final = check_output_dir(final, force)  # a restored artifact is checked like any other
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    except OSError as exc:
        raise ArtifactError(
            f"cannot create {final} ({exc.strerror or exc}); choose an output folder you can write to"
        ) from exc
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        with removed_on_terminate(tmp):
            claim(tmp)
            yield tmp
        _release(tmp)  # not part of the artifact (nor hashed: Manifest.hash_files skips it)
        with _terminate_deferred():
            swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM removes this process's scratch folders and half-written artifacts,
    and the temporary files of atomic writes (:func:`~danet_deploy.util.files.removed_on_terminate`), then
    exits ``143`` (the default action would kill the process on the spot and leave them).

    The handler exits with ``os._exit`` rather than raising ``SystemExit``: Python runs signal
    handlers between bytecodes, which may be inside a C extension's callback (a nanobind module
    import, a torch hook), and an exception escaping there aborts the process (SIGABRT)."""

    def handler(signum: int, frame: object) -> None:
        remove_live_scratch()
        with contextlib.suppress(Exception):
            sys.stderr.write(f"interrupted by signal {signum}: temporary files removed, nothing half-written left\n")
            sys.stderr.flush()
            sys.stdout.flush()
        os._exit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
