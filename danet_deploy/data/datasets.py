"""Labelled datasets read as their own tools lay them out, and their labels as train indices.

``--data SPEC`` everywhere accuracy is measured:

* ``cityscapes:ROOT`` -- ``ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``ROOT/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``, or ``*_gtFine_labelIds.png`` mapped
  to the 19 train ids by the official label table (the ``cityscapesscripts`` package's own).
* ``ade20k:ROOT`` -- ``ROOT[/ADEChallengeData2016]/images/<split>/*.jpg`` with
  ``annotations/<split>/*.png``, reduce-zero-label (0 -> ignore, k -> k-1) as mmseg does.
* ``voc:ROOT`` -- ``ROOT[/VOCdevkit/VOC2012]/JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
  (palette PNG: the palette indices are the classes, 255 the ignored border) and
  ``ImageSets/Segmentation/<split>.txt``. A grey (mode ``L``) index PNG, as in SegmentationClassAug,
  is read the same way; an RGB colour label is refused (its colours are not class indices).
* ``folder:IMAGES,LABELS`` -- images and labels paired by file stem; label values are the
  model's own class indices (255 ignored).

Class matching: a dataset's classes are matched to the model's by name. Pixels of a dataset class
the model does not have become ``ignore``; a model class the dataset does not have is left out of
the means (its predictions still count as errors for the true class); no shared class is refused.

Bad data, each named by its file: a corrupt image or label, a 16-bit label, a label whose size
differs from its image, label values that are not classes, an RGB VOC label, an empty split are
errors (:class:`~danet_deploy.errors.InputError`, exit code 2). An image without a label file is
a documented skip: counted and listed (``Dataset.skipped``) and printed with the results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import (
    ConfigError,
    InputError,
    summarize_exception,
)
from ..model.releases import ADE20K_CLASSES, CITYSCAPES_CLASSES, VOC_CLASSES
from .images import IMAGE_SUFFIXES, read_image

IGNORE = 255
LAYOUTS = ("cityscapes", "ade20k", "voc", "folder")
DEFAULT_SPLIT = {"cityscapes": "val", "ade20k": "validation", "voc": "val", "folder": ""}
TRAIN_SPLIT = {"cityscapes": "train", "ade20k": "training", "voc": "train", "folder": ""}
_ADE_SPLITS = {"val": "validation", "train": "training"}
SPEC_HELP = (
    "cityscapes:ROOT, ade20k:ROOT, voc:ROOT or folder:IMAGES,LABELS (labelled data, read as each "
    "dataset's own tools lay it out)"
)


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: a layout and its root (for ``folder``: images and labels)."""

    layout: str
    root: Path
    labels: Path | None = None

    def __str__(self) -> str:
        return f"{self.layout}:{self.root}" + (f",{self.labels}" if self.labels else "")


def is_data_spec(text: object) -> bool:
    """Whether ``text`` names a dataset layout (``cityscapes:...``), as opposed to a plain folder."""
    return isinstance(text, str) and text.partition(":")[0].lower() in LAYOUTS and ":" in text


def parse_data_spec(text: str) -> DataSpec:
    """``cityscapes:ROOT`` ... -> :class:`DataSpec`; a :class:`ConfigError` naming the accepted forms."""
    layout, sep, rest = str(text).partition(":")
    layout = layout.strip().lower()
    if not sep or layout not in LAYOUTS or not rest.strip():
        raise ConfigError(f"--data {text!r} is not a dataset: use {SPEC_HELP}")
    if layout == "folder":
        images, comma, labels = rest.partition(",")
        if not comma or not images.strip() or not labels.strip():
            raise ConfigError(
                f"--data {text!r}: a folder dataset is folder:IMAGES,LABELS (two folders, paired by file stem)"
            )
        return DataSpec(layout, _path(images, text), _path(labels, text))
    return DataSpec(layout, _path(rest, text))


def _path(text: str, spec: str) -> Path:
    try:
        return Path(text.strip()).expanduser()
    except RuntimeError as exc:  # "~user" of a user this machine does not have
        raise ConfigError(f"--data {spec!r}: {exc}; write the folder out in full") from None


@dataclass(frozen=True)
class Sample:
    """One image and its label file (``None``: no label; skipped and counted when scoring)."""

    name: str
    image: Path
    label: Path | None


@dataclass
class Dataset:
    """The samples of one split, the dataset's classes and how its label files become train ids."""

    spec: DataSpec
    split: str
    samples: list[Sample]
    classes: tuple[str, ...]
    lut: np.ndarray | None = None  # 256-entry uint8 table: file value -> train id (or IGNORE)
    reduce_zero_label: bool = False
    index_labels: bool = True  # VOC: palette/grey index PNGs only
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of images without a label

    def __len__(self) -> int:
        return len(self.samples)

    def labelled(self) -> list[Sample]:
        """The samples with a label (those without are in :attr:`skipped`)."""
        return [s for s in self.samples if s.label is not None]

    def read_image(self, sample: Sample) -> np.ndarray:
        return read_image(sample.image)

    def read_label(self, sample: Sample, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The label as train ids (``uint8 [H, W]``, :data:`IGNORE` where not scored); ``shape``: the
        image's ``(H, W)``, which the label must match."""
        assert sample.label is not None
        raw = read_label_file(sample.label, allow_rgb=not self.index_labels)
        if shape is not None and raw.shape != tuple(shape):
            raise InputError(
                f"label {sample.label} is {raw.shape[1]}x{raw.shape[0]} but its image {sample.image} is "
                f"{shape[1]}x{shape[0]}: labels must have their image's size (wrong pairing or a "
                "resized file)"
            )
        if self.reduce_zero_label:
            label = raw.astype(np.int16) - 1
            label[raw == 0] = IGNORE
            label[raw == IGNORE] = IGNORE
            raw = label.astype(np.uint8)
        elif self.lut is not None:
            mapped = self.lut[raw]
            unknown = mapped == _UNMAPPED
            if unknown.any():
                raise InputError(
                    f"label {sample.label} holds values {_values(raw[unknown])} that the "
                    f"{self.spec.layout} label table does not know: not a *_labelIds.png of this layout"
                )
            raw = mapped
        bad = (raw != IGNORE) & (raw >= len(self.classes))
        if bad.any():
            raise InputError(
                f"label {sample.label} holds values {_values(raw[bad])} beyond the {len(self.classes)} "
                f"{self.spec.layout} classes (0..{len(self.classes) - 1}, {IGNORE} ignored): wrong "
                "label files or the wrong --data layout"
            )
        return raw

    def pairs(self) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
        """``(sample, image, label)`` of every labelled sample, read and checked."""
        for sample in self.labelled():
            image = self.read_image(sample)
            yield sample, image, self.read_label(sample, image.shape[:2])

    def describe(self) -> dict[str, object]:
        return {
            "data": str(self.spec),
            "layout": self.spec.layout,
            "split": self.split,
            "images": len(self.samples),
            "labelled": len(self.labelled()),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "classes": len(self.classes),
            "reduce_zero_label": self.reduce_zero_label,
        }


_UNMAPPED = 254  # a LUT entry for file values that no label-table row names (254 is not a class anywhere here)


def _values(values: np.ndarray) -> str:
    found = np.unique(values)
    text = ", ".join(str(int(v)) for v in found[:8])
    return text + (f" ... ({len(found)} distinct)" if len(found) > 8 else "")


def read_label_file(path: Path, allow_rgb: bool = False) -> np.ndarray:
    """An 8-bit label PNG as ``uint8 [H, W]``: palette (``P``) or grey (``L``) values as they are.

    A 16-bit or RGB label is refused, naming the file: its values are not class indices, and
    reading them through a conversion would score the wrong classes silently.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise InputError(
                    f"label {path} is a {mode} (16/32-bit) image: labels are 8-bit PNGs of class "
                    "indices; convert it (e.g. Pillow: img.point(lambda v: v).convert('L') after "
                    "checking its values are below 256)"
                )
            if mode not in ("P", "L"):
                hint = (
                    " (an RGB colour rendering of the classes; use the palette PNG from SegmentationClass)"
                    if not allow_rgb
                    else ""
                )
                raise InputError(
                    f"label {path} is a {mode} image, not a palette or grey index PNG{hint}: "
                    "label pixels must be class indices"
                )
            return np.asarray(img, dtype=np.uint8).copy()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"label {path} cannot be read: corrupt or truncated ({summarize_exception(exc)}); replace or remove it"
        ) from None


# -- label tables ------------------------------------------------------------------------------
def _cityscapes_labels(what: str) -> list:
    """The official label table (``cityscapesscripts.helpers.labels.labels``), or a
    :class:`~danet_deploy.errors.MissingExtraError` naming ``pip install 'danet-deploy[datasets]'``."""
    from ..extras import require

    return list(require("cityscapesscripts.helpers.labels", what).labels)


def cityscapes_label_table() -> np.ndarray:
    """``lut[label_id] -> train id`` from the official table (``cityscapesscripts.helpers.labels``);
    ids whose train id is 255 or -1 map to :data:`IGNORE`, values no row names to ``_UNMAPPED``."""
    labels = _cityscapes_labels(
        "Cityscapes *_labelIds.png (or write *_gtFine_labelTrainIds.png with cityscapesscripts' createTrainIdLabelImgs)"
    )
    lut = np.full(256, _UNMAPPED, np.uint8)
    for row in labels:
        if 0 <= row.id < 256:
            lut[row.id] = IGNORE if row.trainId in (255, -1) or row.ignoreInEval else row.trainId
    return lut


def cityscapes_label_ids() -> dict[str, int]:
    """Class name -> Cityscapes label id of the 19 evaluated classes (for writing ``*_labelIds.png``)."""
    rows = _cityscapes_labels("writing Cityscapes label ids")
    return {row.name: row.id for row in rows if not row.ignoreInEval and 0 <= row.trainId < 255}


# -- the layouts -------------------------------------------------------------------------------
def open_dataset(
    spec: str | DataSpec, split: str | None = None, limit: int | None = None, need_labels: bool = True
) -> Dataset:
    """The samples of ``spec``'s ``split`` (default: the layout's validation split), first ``limit``;
    ``need_labels=False`` (calibration) accepts a split without label files."""
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    split = split or DEFAULT_SPLIT[spec.layout]
    reader = {"cityscapes": _cityscapes, "ade20k": _ade20k, "voc": _voc, "folder": _folder}[spec.layout]
    data = reader(spec, split)
    if not data.samples:
        raise InputError(f"{spec} split {split!r} holds no images ({_where(spec, split)}): wrong root or split")
    data.samples.sort(key=lambda s: s.name)
    if limit is not None:
        data.samples = data.samples[:limit]
    data.skipped = [(str(s.image), "no label file") for s in data.samples if s.label is None]
    if need_labels and not data.labelled():
        raise InputError(
            f"{spec} split {split!r}: none of its {len(data.samples)} images has a label file ({_where(spec, split)})"
        )
    return data


def _where(spec: DataSpec, split: str) -> str:
    return {
        "cityscapes": f"looked for {spec.root}/leftImg8bit/{split}/*/*_leftImg8bit.png",
        "ade20k": f"looked for images/{split}/*.jpg under {spec.root}",
        "voc": f"read ImageSets/Segmentation/{split}.txt under {spec.root}",
        "folder": f"looked for images in {spec.root}",
    }[spec.layout]


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a folder")
    return path


def _cityscapes(spec: DataSpec, split: str) -> Dataset:
    images = _need_dir(spec.root / "leftImg8bit" / split, "Cityscapes image folder")
    gt = spec.root / "gtFine" / split
    samples, need_table = [], False
    for image in sorted(images.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        train, ids = (gt / image.parent.name / f"{stem}_gtFine_{kind}.png" for kind in ("labelTrainIds", "labelIds"))
        label = train if train.is_file() else ids if ids.is_file() else None
        need_table |= label == ids
        samples.append(Sample(f"{image.parent.name}/{stem}", image, label))
    if any(s.label is not None and s.label.name.endswith("_labelIds.png") for s in samples) and any(
        s.label is not None and s.label.name.endswith("_labelTrainIds.png") for s in samples
    ):
        raise InputError(
            f"{gt} mixes *_labelTrainIds.png and *_labelIds.png: give every image the same kind "
            "(cityscapesscripts' createTrainIdLabelImgs writes the train ids for all)"
        )
    return Dataset(spec, split, samples, CITYSCAPES_CLASSES, lut=cityscapes_label_table() if need_table else None)


def _ade20k(spec: DataSpec, split: str) -> Dataset:
    root = spec.root / "ADEChallengeData2016" if (spec.root / "ADEChallengeData2016").is_dir() else spec.root
    split = _ADE_SPLITS.get(split, split)
    images = _need_dir(root / "images" / split, "ADE20K image folder")
    labels = root / "annotations" / split
    samples = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = labels / f"{image.stem}.png"
        samples.append(Sample(image.stem, image, label if label.is_file() else None))
    return Dataset(spec, split, samples, ADE20K_CLASSES, reduce_zero_label=True)


def _voc(spec: DataSpec, split: str) -> Dataset:
    root = spec.root
    for sub in ("VOCdevkit/VOC2012", "VOC2012"):
        if (root / sub / "JPEGImages").is_dir():
            root = root / sub
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise InputError(f"VOC split file {listing} does not exist: wrong root or --split (train, val, trainval)")
    samples = []
    for line in listing.read_text().split():
        image = root / "JPEGImages" / f"{line}.jpg"
        if not image.is_file():
            raise InputError(f"{listing} lists {line!r} but {image} does not exist")
        label = root / "SegmentationClass" / f"{line}.png"
        samples.append(Sample(line, image, label if label.is_file() else None))
    return Dataset(spec, split, samples, VOC_CLASSES)


def _folder(spec: DataSpec, split: str) -> Dataset:
    images = _need_dir(spec.root, "image folder")
    labels = _need_dir(spec.labels, "label folder") if spec.labels is not None else images
    by_stem = {p.stem: p for p in labels.iterdir() if p.suffix.lower() == ".png"}
    samples = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        samples.append(Sample(image.stem, image, by_stem.get(image.stem)))
    return Dataset(spec, split, samples, ())  # the model's own classes: set by match_classes


# -- classes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMatch:
    """How a dataset's train ids map onto a model's classes (matched by name)."""

    lut: np.ndarray  # dataset train id (0..255) -> model class index, or IGNORE
    evaluated: tuple[int, ...]  # model classes the dataset has (the ones the means cover)
    model_only: tuple[str, ...]  # model classes the dataset lacks (left out of the means)
    dataset_only: tuple[str, ...]  # dataset classes the model lacks (their pixels ignored)

    @property
    def identity(self) -> bool:
        return (
            not self.model_only
            and not self.dataset_only
            and bool(np.array_equal(self.lut[: len(self.evaluated)], np.arange(len(self.evaluated))))
        )

    def apply(self, label: np.ndarray) -> np.ndarray:
        return label if self.identity else self.lut[label]

    def to_dict(self) -> dict[str, object]:
        return {
            "matched": len(self.evaluated),
            "model_only": list(self.model_only),
            "dataset_only": list(self.dataset_only),
        }


def _norm(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def match_classes(model_classes: Sequence[str], dataset: Dataset) -> ClassMatch:
    """Match by name (case and ``_``/space insensitive); refuse when no class is shared."""
    model = [_norm(c) for c in model_classes]
    if not dataset.classes:  # a folder dataset holds the model's own indices
        dataset.classes = tuple(model_classes)
    lut = np.full(256, IGNORE, np.uint8)
    evaluated = []
    for i, name in enumerate(dataset.classes):
        if _norm(name) in model:
            j = model.index(_norm(name))
            lut[i] = j
            evaluated.append(j)
    if not evaluated:
        raise ConfigError(
            f"the model's classes ({', '.join(model_classes[:6])}...) share no name with the "
            f"{dataset.spec.layout} classes ({', '.join(dataset.classes[:6])}...): this model was not "
            "trained for this dataset"
        )
    data_names = {_norm(c) for c in dataset.classes}
    return ClassMatch(
        lut,
        tuple(sorted(evaluated)),
        tuple(c for c in model_classes if _norm(c) not in data_names),
        tuple(c for c in dataset.classes if _norm(c) not in model),
    )
