"""Checks of danet-bench's arguments that must fail before minutes of exporting and timing."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..util.files import is_plain_name


def check_bench_args(model: str, output: Path, artifacts: Path | None = None) -> None:
    """Refuse an artifact folder as ``--model`` (bench takes presets and checkpoints, and exports the
    artifacts it times) and unwritable ``--output`` / ``--artifacts`` folders."""
    from ..util.result_files import check_output_folder

    path = Path(model)
    if path.is_dir():
        from ..manifest import read_manifest

        hint = ""
        try:
            name = read_manifest(path, verify=False).model.name
            hint = f" (this artifact was exported from --model {name})" if name else ""
        except Exception:
            pass
        raise ConfigError(
            f"--model {model} is a folder: danet-bench takes a preset name or a checkpoint file (with "
            f"--arch) and exports the artifacts it times into --artifacts{hint}. To check one artifact "
            "use danet-parity; to time it, pass its preset and the folder holding it as --artifacts"
        )
    check_output_folder(output)
    if artifacts is not None:
        check_output_folder(artifacts, "--artifacts")


def check_report_stem(stem: str) -> str:
    """Refuse a ``--stem`` that is not a plain file name (empty, ``.``/``..``, a path separator or NUL).

    Why: the reports are written as ``OUTPUT/<stem>.json`` etc.; a stem such as ``../../x`` would
    put them outside ``--output``, where they could replace files the user owns.
    """
    if not is_plain_name(stem):
        raise ConfigError(
            f"--stem {stem!r} must be a plain file name (no path separator, not '.' or '..', not "
            "empty), e.g. --stem bench; choose the folder with --output"
        )
    return stem
