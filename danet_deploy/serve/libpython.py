"""The libpython trap of PyTriton's Python backend: detect it, fix it for the server, explain it.

PyTriton starts a real ``tritonserver`` whose Python backend runs each model instance in a
``triton_python_backend_stub`` process. The stub links ``libpython3.X.so.1.0`` dynamically and
finds it through the ordinary loader search, so on a machine with a second Python of the same
minor version (pyenv, conda or a venv over a self-built Python next to the distribution's
``/usr/lib/.../libpython3.X.so``) it loads the *other* libpython, whose patch release differs from
the interpreter's standard library, and model start-up fails deep inside ``multiprocessing`` with
``'_thread.RLock' object has no attribute '_recursion_count'``. PyTriton's install notes fix it
by putting the interpreter's ``sysconfig`` ``LIBDIR`` first on ``LD_LIBRARY_PATH``; the server
process (and the stubs it spawns) inherit the variable, so danet-serve sets it before starting.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

TRAP_SIGNATURE = "_recursion_count"


@dataclass(frozen=True)
class LibpythonStatus:
    """Which libpython the stub would load, against the one this interpreter runs on."""

    expected: Path | None  # the interpreter's shared libpython (None: statically linked Python)
    resolved: Path | None  # what the loader resolves for the stub (None: unknown, e.g. no ldd)
    libdir: str | None

    @property
    def ok(self) -> bool:
        if self.expected is None or self.resolved is None:
            return True  # nothing to compare: the failure, if any, is explained after start-up
        return self.resolved.resolve() == self.expected.resolve()

    def explain(self) -> str:
        return (
            f"the Triton Python backend stub would load {self.resolved}, not this interpreter's "
            f"{self.expected} (sys.version {sys.version.split()[0]}); model start-up then fails with "
            f"\"'_thread.RLock' object has no attribute '{TRAP_SIGNATURE}'\". Fix: export "
            f"LD_LIBRARY_PATH={self.libdir}:$LD_LIBRARY_PATH (danet-serve does this for the server "
            "unless --keep-ld-library-path is given)"
        )


def interpreter_libpython() -> tuple[Path | None, str | None]:
    """(the shared libpython this interpreter uses, its LIBDIR), or (None, LIBDIR) for a static build."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not soname:
        return None, libdir
    path = Path(libdir) / soname
    return (path if path.exists() else None), libdir


def stub_path() -> Path | None:
    """PyTriton's Python backend stub for this interpreter's version, if PyTriton is installed."""
    try:
        from pytriton.utils.distribution import get_stub_path
    except ImportError:
        return None
    path = Path(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"))
    return path if path.is_file() else None


def resolve_with_ldd(binary: Path, env: dict[str, str]) -> Path | None:
    """The libpython ``binary`` loads under ``env`` (``ldd``); None when ldd is missing or silent."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run([ldd, str(binary)], env=env, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"libpython\S*\s+=>\s+(\S+)", out)
    return Path(match.group(1)) if match and match.group(1) != "not" else None


def check(env: dict[str, str] | None = None, binary: Path | None = None) -> LibpythonStatus:
    """Compare the stub's libpython under ``env`` (default: this process's) with the interpreter's."""
    expected, libdir = interpreter_libpython()
    binary = binary or stub_path()
    resolved = resolve_with_ldd(binary, dict(os.environ if env is None else env)) if binary else None
    return LibpythonStatus(expected=expected, resolved=resolved, libdir=libdir)


def with_libdir_first(env: MutableMapping[str, str]) -> str | None:
    """Put the interpreter's LIBDIR first on ``env["LD_LIBRARY_PATH"]``; returns it, or None if not needed."""
    expected, libdir = interpreter_libpython()
    if expected is None or not libdir:
        return None
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if parts and parts[0] == libdir:
        return None
    env["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in parts if p != libdir]])
    return libdir


def explain_failure(text: str) -> str | None:
    """An explanation when a server error message is the libpython trap, else None."""
    if TRAP_SIGNATURE not in text:
        return None
    expected, libdir = interpreter_libpython()
    return (
        "the Triton Python backend stub loaded a different libpython than this interpreter "
        f"({expected or 'a static build'}): set LD_LIBRARY_PATH={libdir}:$LD_LIBRARY_PATH (the interpreter's "
        "sysconfig LIBDIR, as PyTriton's install notes say) and start again"
    )
