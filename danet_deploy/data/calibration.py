"""Calibration sets for every INT8 path (ONNX Runtime, OpenVINO/NNCF, TensorRT/ModelOpt).

Why one module: INT8 quality depends on the calibration images *and* on feeding them exactly as
the runtime will. Every quantizer therefore gets its tensors from :func:`load_calibration`, which
preprocesses with the runtime's own :func:`danet_deploy.runtime.preprocess.preprocess` (one code
path), hashes what went in, and caches the preprocessed tensors so a second export with the same
set reuses them (and quantizers can key their own statistics on the same hash).

Sources:
    * a folder of images (``.jpg .jpeg .png .bmp``, searched recursively, sorted by relative path);
      unreadable/corrupt files are skipped and reported; grayscale, palette, 16-bit and RGBA
      images are *converted* to RGB (alpha dropped) and reported, because a camera's mono frame is
      still a valid sample of the scene statistics, whereas refusing it would make real folders
      unusable. When the folder has more usable images than ``count``, an evenly spaced subset of
      the sorted list is taken (deterministic, and spread over the whole folder rather than its
      first sequence).
    * ``"generated"``: the ``calib`` split of the procedural scene generator (disjoint from train/val).
    * ``"photos"``: the real photographs bundled with scikit-image (:mod:`danet_deploy.data.photos`).
    * an ``.npz`` of already preprocessed float32 NCHW tensors (validated: ``[N, 3, H, W]`` at
      ``size``, finite, ``N >= count``); loaded with ``allow_pickle=False``.

Only numpy, Pillow and tqdm are needed here; the adapters import their quantizer lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CalibrationError, summarize_exception
from ..util.files import atomic_output, atomic_write_text, not_a_file_reason, sha256_file
from ..util.progress import track
from .images import IMAGE_SUFFIXES, decode_rgb, list_images, verify_image

CACHE_ENV = "DANET_DEPLOY_CACHE"
_CACHE_LAYOUT = 1  # bump when the cached file layout or the hashing scheme changes


def default_cache_dir() -> Path:
    """``$DANET_DEPLOY_CACHE/calib`` if set, else ``~/.cache/danet-deploy/calib``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "danet-deploy") / "calib"


@dataclass
class CalibrationSet:
    """Preprocessed calibration tensors plus what identifies them.

    Attributes:
        tensors: float32 ``[N, 3, H, W]``, normalised exactly as the runtime normalises.
        hash: sha256 over the source identity (sorted file list + content hashes, or generator
            seeds), preprocessing, size and count: equal hashes mean equal tensors.
        source: what was asked for (folder path, ``generated``, ``photos`` or an .npz path).
        files: the items used, in order (relative file names, seeds or photo names).
        skipped: ``{"file", "reason"}`` for every unreadable file left out.
        converted: files converted to RGB (grayscale, palette, RGBA, 16-bit).
        cache_dir: this set's folder in the cache (quantizers may store statistics there), or ``None``.
        from_cache: whether the tensors were read from the cache instead of being recomputed.
    """

    tensors: np.ndarray
    hash: str
    source: str
    size: tuple[int, int]
    preprocessing: dict[str, Any]
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.tensors.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        """One ``[1, 3, H, W]`` batch per image (what every calibrator expects)."""
        return self.batches(1)

    def batches(self, batch: int = 1) -> Iterator[np.ndarray]:
        """``[batch, 3, H, W]`` groups of consecutive images, for graphs with a static batch > 1.

        The last group is completed with images from the start of the set, so every image is
        seen and every group has the graph's shape.
        """
        n = len(self)
        for start in range(0, n, batch):
            idx = [(start + j) % n for j in range(batch)]
            yield self.tensors[idx] if batch > 1 else self.tensors[start : start + 1]

    def describe(self) -> dict[str, Any]:
        """The manifest's ``calibration`` entry."""
        return {
            "source": self.source,
            "count": len(self),
            "size": list(self.size),
            "hash": self.hash,
            "skipped": len(self.skipped),
            "skipped_files": self.skipped[:20],
            "converted_to_rgb": len(self.converted),
            "from_cache": self.from_cache,
            "preprocessing": self.preprocessing,
        }

    # -- quantizer-owned statistics, keyed by this set's hash + the quantizer's settings ------
    def statistics_path(self, quantizer: str, settings: dict[str, Any], suffix: str = ".json") -> Path | None:
        """Where ``quantizer`` may cache statistics for this set and ``settings`` (``None``: no cache)."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.cache_dir / f"{quantizer}-{key}{suffix}"

    # -- adapters ------------------------------------------------------------------------------
    def ort_reader(self, input_name: str = "input", batch: int = 1) -> Any:
        """An ``onnxruntime.quantization.CalibrationDataReader`` over ``[batch, 3, H, W]`` groups."""
        return ort_reader(list(self.batches(batch)), input_name)

    def nncf_dataset(self, input_name: str | None = None, batch: int = 1) -> Any:
        """An ``nncf.Dataset`` yielding ``[batch, 3, H, W]`` arrays (or ``{input_name: array}``)."""
        import nncf

        items = list(self.batches(batch))
        if input_name is None:
            return nncf.Dataset(items)
        return nncf.Dataset(items, lambda x: {input_name: x})

    def arrays(self, input_name: str = "input") -> dict[str, np.ndarray]:
        """``{input_name: float32 [N, 3, H, W]}`` for ModelOpt / TensorRT calibrators."""
        return {input_name: self.tensors}


def ort_reader(batches: Sequence[np.ndarray], input_name: str = "input") -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` yielding ``{input_name: batch}`` for each batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._index >= len(batches):
                return None
            self._index += 1
            return {input_name: batches[self._index - 1]}

        def rewind(self) -> None:
            self._index = 0

        def __len__(self) -> int:
            return len(batches)

    return _Reader()


# -- public entry point -------------------------------------------------------------------------
def load_calibration(
    source: str | os.PathLike[str],
    count: int,
    size: tuple[int, int],
    preprocessing: Mapping[str, Any],
    log: Callable[[str], None] = print,
    cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
) -> CalibrationSet:
    """Load ``count`` calibration images from ``source`` at ``size``, preprocessed like the runtime.

    Args:
        source: an image folder, ``"generated"``, ``"photos"``, an ``.npz`` of float32 NCHW tensors, or
            a dataset (``cityscapes:ROOT`` ...: the images of its train split, labels unused).
        count: images to use (``--calib-count``); fewer usable images is an error, not a silent change.
        size: ``(H, W)`` of the network input.
        preprocessing: the model's preprocessing dict (mean/std/colour order).
        log: where progress lines and skip reports go.
        cache_dir: cache root (default :func:`default_cache_dir`); ``False`` disables caching.
    Raises:
        CalibrationError: empty/unknown source, too few usable images, or a bad .npz.
    """
    if count < 1:
        raise CalibrationError(f"calibration count must be >= 1, got {count}; pass --calib-count 32 or so")
    size = (int(size[0]), int(size[1]))
    root = None if cache_dir is False else Path(cache_dir) if cache_dir else default_cache_dir()
    text = os.fspath(source)
    from .datasets import is_data_spec

    if is_data_spec(text):
        loader: _Loader = _DatasetLoader(text, count)
    elif text == "generated":
        loader = _GeneratedLoader(count, size)
    elif text == "photos":
        loader = _PhotoLoader(count)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            loader = _FolderLoader(path, count)
        elif path.suffix.lower() == ".npz" and path.is_file():
            return _load_npz(path, count, size, preprocessing, log, root)
        elif path.suffix.lower() == ".npz" or (path.exists() and not path.is_file()):
            raise CalibrationError(
                f"calibration file {path} {not_a_file_reason(path)}; pass an existing .npz, an "
                "image folder, 'generated' or 'photos'"
            )
        elif not path.exists():
            raise CalibrationError(
                f"calibration source {text!r} does not exist; pass an existing image folder "
                "(--calib-dir FOLDER), an .npz of tensors, 'generated' or 'photos' (--calib ...)"
            )
        else:
            raise CalibrationError(
                f"calibration source {text!r} is a file but not an .npz; pass an image folder "
                "(--calib-dir FOLDER), an .npz of tensors, 'generated' or 'photos' (--calib ...)"
            )
    digest = _digest(loader.identity(), preprocessing, size, count)
    entry = root / digest if root is not None else None
    cached = _read_cache(entry, count, size)
    if cached is not None:
        log(f"calibration: {count} tensors from cache {entry}")
        tensors, meta = cached
        return CalibrationSet(
            tensors,
            digest,
            text,
            size,
            dict(preprocessing),
            files=meta.get("files", []),
            skipped=meta.get("skipped", []),
            converted=meta.get("converted", []),
            cache_dir=entry,
            from_cache=True,
        )
    from ..runtime.preprocess import preprocess

    tensors = np.empty((count, 3, *size), np.float32)
    images = track(loader.images(), total=count, desc="calibration images", unit="img", leave=False, disable=None)
    for i, image in enumerate(images):
        tensors[i] = preprocess([image], preprocessing, size)[0]
    if loader.skipped:
        log(
            f"calibration: skipped {len(loader.skipped)} unreadable file(s) in {text}: "
            + ", ".join(f"{s['file']} ({s['reason']})" for s in loader.skipped[:5])
            + (" ..." if len(loader.skipped) > 5 else "")
        )
    if loader.converted:
        log(f"calibration: converted {len(loader.converted)} non-RGB image(s) to RGB (grayscale/palette/alpha)")
    result = CalibrationSet(
        tensors,
        digest,
        text,
        size,
        dict(preprocessing),
        files=loader.names,
        skipped=loader.skipped,
        converted=loader.converted,
        cache_dir=entry,
    )
    if entry is not None:
        _write_cache(entry, result)
    log(f"calibration: {count} images from {text} at {size[0]}x{size[1]} (hash {digest[:12]})")
    return result


# -- sources ------------------------------------------------------------------------------------
class _Loader:
    """A source: ``identity()`` (cheap, for the hash) and ``images()`` (decoded uint8 RGB)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.converted: list[str] = []

    def identity(self) -> Any:
        raise NotImplementedError

    def images(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class _GeneratedLoader(_Loader):
    def __init__(self, count: int, size: tuple[int, int]) -> None:
        super().__init__()
        from . import scenes

        self.dataset = scenes.SceneDataset("calib", size=size, count=count)
        self.names = [f"seed:{self.dataset.seed(i)}" for i in range(count)]
        # the generator's source is part of the identity: a changed generator must not hit old caches
        self._version = hashlib.sha256(Path(scenes.__file__).read_bytes()).hexdigest()

    def identity(self) -> Any:
        return {"generated": "calib", "seeds": self.names, "generator": self._version}

    def images(self) -> Iterator[np.ndarray]:
        for image, _ in self.dataset:
            yield image


class _PhotoLoader(_Loader):
    def __init__(self, count: int) -> None:
        super().__init__()
        from .photos import sample_photos

        photos = sample_photos()
        if len(photos) < count:
            raise CalibrationError(
                f"only {len(photos)} bundled photos are available but {count} were asked for; "
                f"pass --calib-count {len(photos)} or use a folder of your own images"
            )
        self._photos = [photos[i] for i in _spread(len(photos), count)]
        self.names = [name for name, _ in self._photos]

    def identity(self) -> Any:
        return {
            "photos": [(n, hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()) for n, img in self._photos]
        }

    def images(self) -> Iterator[np.ndarray]:
        for _, image in self._photos:
            yield image


class _FolderLoader(_Loader):
    """Images under a folder; unreadable files are found (and skipped) before the subset is chosen."""

    def __init__(self, folder: Path, count: int) -> None:
        super().__init__()
        self.folder = folder
        files = list_images(folder)
        if not files:
            raise CalibrationError(
                f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "put a few dozen representative frames in it, or pass --calib generated"
            )
        usable: list[Path] = []
        # every file is decoded once (a few ms each) so that unreadable ones are known before the
        # subset is chosen: the subset then never depends on which files happened to be broken
        for path in track(files, total=len(files), desc="checking images", unit="img", leave=False, disable=None):
            reason = verify_image(path)
            if reason is None:
                usable.append(path)
            else:
                self.skipped.append({"file": path.relative_to(folder).as_posix(), "reason": reason})
        if not usable:
            first = f" (first: {self.skipped[0]['file']}: {self.skipped[0]['reason']})" if self.skipped else ""
            raise CalibrationError(
                f"calibration folder {folder} has no readable image: {len(self.skipped)} file(s) "
                f"could not be decoded{first}; put a few dozen representative RGB frames in it, or "
                "pass --calib generated"
            )
        if len(usable) < count:
            raise CalibrationError(
                f"calibration folder {folder} has {len(usable)} usable image(s) ({len(self.skipped)} unreadable "
                f"skipped) but {count} were asked for; add more images or pass --calib-count {max(len(usable), 1)}"
            )
        self.files = [usable[i] for i in _spread(len(usable), count)]
        self.names = [p.relative_to(folder).as_posix() for p in self.files]

    def identity(self) -> Any:
        return {"folder": [(name, sha256_file(path)) for name, path in zip(self.names, self.files)]}

    def images(self) -> Iterator[np.ndarray]:
        for name, path in zip(self.names, self.files):
            image, converted = decode_rgb(path)
            if converted:
                self.converted.append(name)
            yield image


class _DatasetLoader(_FolderLoader):
    """The images of a dataset's train split (``cityscapes:ROOT`` ...), spread evenly over the split."""

    def __init__(self, spec: str, count: int) -> None:  # _Loader.__init__, not the folder scan of the parent
        _Loader.__init__(self)
        from .datasets import TRAIN_SPLIT, open_dataset, parse_data_spec

        parsed = parse_data_spec(spec)
        data = open_dataset(parsed, TRAIN_SPLIT[parsed.layout] or None, need_labels=False)
        if len(data) < count:
            raise CalibrationError(
                f"{spec} split {data.split!r} has {len(data)} image(s) but {count} were asked for; "
                f"pass --calib-count {len(data)}"
            )
        self.folder = parsed.root
        self.files = [data.samples[i].image for i in _spread(len(data), count)]
        self.names = [p.relative_to(parsed.root).as_posix() for p in self.files]


# -- helpers ------------------------------------------------------------------------------------
def _spread(available: int, count: int) -> list[int]:
    """``count`` evenly spaced, distinct indices into ``range(available)`` (deterministic)."""
    if count >= available:
        return list(range(available))
    return [int(i) for i in np.linspace(0, available - 1, count).round().astype(np.int64)]


def _digest(identity: Any, preprocessing: Mapping[str, Any], size: tuple[int, int], count: int) -> str:
    # dict(): a manifest's preprocessing record hashes as the JSON it holds, like the dict it was read from
    payload = {
        "layout": _CACHE_LAYOUT,
        "identity": identity,
        "preprocessing": dict(preprocessing),
        "size": list(size),
        "count": count,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_cache(entry: Path | None, count: int, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Cached tensors for ``entry`` if present and well-formed; anything odd is a miss, not an error."""
    if entry is None:
        return None
    tensors_path, meta_path = entry / "tensors.npy", entry / "calibration.json"
    if not (tensors_path.is_file() and meta_path.is_file()):
        return None
    try:
        tensors = np.load(tensors_path, allow_pickle=False)
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if tensors.dtype != np.float32 or tensors.shape != (count, 3, *size) or not np.isfinite(tensors).all():
        return None
    return tensors, meta


def _write_cache(entry: Path, result: CalibrationSet) -> None:
    """Store tensors (.npy, no pickle) and the description atomically; a read-only cache is not fatal."""
    with contextlib.suppress(OSError):
        with atomic_output(entry / "tensors.npy") as tmp:
            np.save(tmp, result.tensors, allow_pickle=False)
        meta = {
            "files": result.files,
            "skipped": result.skipped,
            "converted": result.converted,
            "source": result.source,
            "size": list(result.size),
        }
        atomic_write_text(entry / "calibration.json", json.dumps(meta))


def _load_npz(
    path: Path,
    count: int,
    size: tuple[int, int],
    preprocessing: Mapping[str, Any],
    log: Callable[[str], None],
    root: Path | None,
) -> CalibrationSet:
    """Validate an .npz of preprocessed tensors (no pickle) and take ``count`` of them."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = next(
                (k for k in ("input", "tensors", "images", "calib") if k in keys), keys[0] if len(keys) == 1 else None
            )
            if key is None:
                raise CalibrationError(f"{path} holds arrays {keys}; store one array, or name it 'input'")
            data = archive[key]
    except CalibrationError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        reason = (
            "it holds Python objects, which are never unpickled"
            if "allow_pickle" in str(exc)
            else summarize_exception(exc)
        )
        raise CalibrationError(
            f"{path} is not a readable .npz ({reason}); save it with np.savez(path, input=float32_nchw)"
        ) from exc
    if not np.issubdtype(data.dtype, np.floating):
        raise CalibrationError(
            f"{path}: array {key!r} has dtype {data.dtype}; the .npz must hold *preprocessed* "
            "float32 NCHW tensors (or pass the image folder instead)"
        )
    expected = (3, *size)
    if data.ndim != 4 or tuple(data.shape[1:]) != expected:
        raise CalibrationError(
            f"{path}: array {key!r} has shape {tuple(data.shape)}, expected [N, 3, {size[0]}, "
            f"{size[1]}] (NCHW at the export size); re-save it at that size"
        )
    if data.shape[0] == 0:
        raise CalibrationError(
            f"{path}: array {key!r} holds no tensors; save at least one (--calib-count, default 32, of them are used)"
        )
    if data.shape[0] < count:
        raise CalibrationError(
            f"{path} holds {data.shape[0]} tensors but {count} were asked for; pass "
            f"--calib-count {data.shape[0]} or save more"
        )
    tensors = np.ascontiguousarray(data[_spread(data.shape[0], count)], dtype=np.float32)
    if not np.isfinite(tensors).all():
        raise CalibrationError(f"{path}: array {key!r} contains NaN or Inf; fix the preprocessing that wrote it")
    digest = _digest({"npz": sha256_file(path), "key": key}, preprocessing, size, count)
    log(f"calibration: {count} preprocessed tensors from {path} (hash {digest[:12]})")
    return CalibrationSet(
        tensors,
        digest,
        str(path),
        size,
        dict(preprocessing),
        files=[f"{key}[{i}]" for i in _spread(data.shape[0], count)],
        cache_dir=root / digest if root is not None else None,
    )
