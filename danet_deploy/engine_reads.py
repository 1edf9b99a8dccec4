"""Which other files an engine reads when it opens a model file, decided by the file's content.

Why content and not the suffix: OpenVINO's ``read_model`` recognises an IR by its XML, whatever
the file is called, and then reads the weights beside it (the name with ``.bin``); ONNX Runtime
and OpenVINO read an ONNX file's *external data* from the paths its tensors name. A rule keyed on
``.xml`` let a manifest naming its IR ``model.txt`` skip the check of ``model.bin``; the manifest
rules (inside the folder, listed, hashed) must cover every byte the engine loads, so the names
come from here.

Torch-free and numpy-free; the ``onnx`` package is used (lazily) only when a file may carry
external data, which a plain byte search tells: a tensor's external-data entry holds the literal
key ``location``, so a file without those bytes names no other file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import ArtifactError

#: the weights file an OpenVINO IR reads beside itself: the IR's name with this suffix
IR_WEIGHTS_SUFFIX = ".bin"
_HEAD = 512
_KEY = b"location"  # the key of every ONNX external-data entry (StringStringEntryProto)


def is_xml(path: str | Path) -> bool:
    """Whether ``path`` starts like an XML document (an OpenVINO IR), after a BOM and white space."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def _contains(path: Path, needle: bytes) -> bool:
    """Whether ``needle`` occurs in the file, read in blocks (models can be hundreds of MB)."""
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            if needle in tail + block[: len(needle) - 1] or needle in block:
                return True
            tail = block[-(len(needle) - 1) :]
    return False


def onnx_external_data(path: str | Path) -> list[str]:
    """The external-data locations (as written, relative to the file's folder) an ONNX file's tensors
    name, subgraphs included; ``[]`` for a file that is not ONNX or keeps its weights inside."""
    path = Path(path)
    if not _contains(path, _KEY):
        return []
    try:
        import onnx
        from onnx.external_data_helper import (
            ExternalDataInfo,
            _get_all_tensors,
            uses_external_data,
        )
    except ImportError:
        raise ArtifactError(
            f"{path} may name external data files (ONNX external data) that must be checked before it "
            "is loaded, which needs the onnx package: pip install onnx (or danet-deploy[onnx])"
        ) from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    names = [ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)]
    return list(dict.fromkeys(names))


def referenced_files(path: str | Path) -> list[str]:
    """Names (POSIX, relative to ``path``'s folder) of the other files an engine reads with ``path``:
    an IR's weights, an ONNX file's external data, nothing for anything else. A missing or
    unreadable file names nothing (the caller reports it)."""
    path = Path(path)
    try:
        if is_xml(path):
            return [PurePosixPath(path.name).with_suffix(IR_WEIGHTS_SUFFIX).as_posix()]
        return onnx_external_data(path)
    except OSError:
        return []


def ir_weights(path: str | Path) -> Path | None:
    """The weights file OpenVINO reads for ``path`` if it is an IR (by content), else ``None``."""
    path = Path(path)
    try:
        return path.with_suffix(IR_WEIGHTS_SUFFIX) if is_xml(path) else None
    except OSError:
        return None
