"""Parity: an artifact against the reference, on the same inputs, with explicit tolerances.

Like Polygraphy's comparisons between runners: both sessions see the same preprocessed tensors,
every metric is reported, and each precision has documented tolerances. Out of tolerance is a
failed report (``danet-parity`` exits 1), never a silent pass.

Metrics:
* ``max_abs_error`` / ``mean_abs_error`` of the logits, and ``max_rel_error`` (max abs error
  over the largest reference magnitude), cosine similarity and SQNR (dB) of the logits.
* ``argmax_agreement``: fraction of pixels whose class matches the reference's.
* ``margin_agreement``: the same, counted only where the reference's top-1/top-2 logit margin
  exceeds ``margin_delta`` (pixels the reference itself is unsure about cannot be held against
  a lower precision).
* ``miou_vs_reference``: mIoU of the artifact's masks taking the reference's masks as labels.
* ``miou_vs_labels`` / ``reference_miou_vs_labels`` when the inputs have labels.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.metrics import SegmentationMetrics
from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from ..manifest import Manifest


@dataclass(frozen=True)
class Tolerance:
    """Thresholds a report must meet; ``None`` disables a check."""

    max_rel_error: float | None = None
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_argmax_agreement: float | None = None
    min_margin_agreement: float | None = None
    max_miou_drop: float | None = None  # reference mIoU vs labels minus the artifact's (points of 1.0)


# fp32: an exact re-implementation of the same maths (kernel order differences only).
# fp16/int8: the product's accuracy targets (>= 99.5% / >= 99% pixels agree, <= 0.5 pt mIoU drop).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(
        max_rel_error=1e-3,
        min_cosine=0.99999,
        min_sqnr_db=50.0,
        min_argmax_agreement=0.999,
        min_margin_agreement=0.9999,
    ),
    "fp16": Tolerance(
        min_cosine=0.999, min_sqnr_db=25.0, min_argmax_agreement=0.995, min_margin_agreement=0.999, max_miou_drop=0.005
    ),
    "int8": Tolerance(
        min_cosine=0.99, min_sqnr_db=12.0, min_argmax_agreement=0.99, min_margin_agreement=0.995, max_miou_drop=0.005
    ),
}
MARGIN_DELTA = 0.5  # logits; "confident" reference pixels for margin_agreement


@dataclass
class Check:
    name: str
    value: float
    threshold: float
    passed: bool
    kind: str  # ">=" or "<="


@dataclass
class ParityReport:
    precision: str
    images: int
    shape: list[int]
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    cosine: float
    sqnr_db: float
    argmax_agreement: float
    margin_delta: float
    margin_agreement: float
    confident_fraction: float
    miou_vs_reference: float
    miou_vs_labels: float | None = None
    reference_miou_vs_labels: float | None = None
    finite: bool = True
    checks: list[Check] = field(default_factory=list)
    artifact: str | None = None
    reference: str | None = None

    @property
    def passed(self) -> bool:
        return self.finite and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return _json_safe(data)

    def table(self) -> str:
        """A readable two-column report with PASS/FAIL per checked metric."""
        by_name = {c.name: c for c in self.checks}
        rows = [
            ("artifact", self.artifact or "-"),
            ("reference", self.reference or "-"),
            ("precision", self.precision),
            ("images", f"{self.images} x {'x'.join(map(str, self.shape[1:]))}"),
        ]
        for name in (
            "max_abs_error",
            "mean_abs_error",
            "max_rel_error",
            "cosine",
            "sqnr_db",
            "argmax_agreement",
            "margin_agreement",
            "miou_vs_reference",
            "miou_vs_labels",
            "reference_miou_vs_labels",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            text = _fmt(value)
            check = by_name.get(name)
            if check is not None:
                text += f"   {'PASS' if check.passed else 'FAIL'} ({check.kind} {_fmt(check.threshold)})"
            rows.append((name, text))
        if "miou_drop" in by_name:
            c = by_name["miou_drop"]
            rows.append(("miou_drop", f"{_fmt(c.value)}   {'PASS' if c.passed else 'FAIL'} (<= {_fmt(c.threshold)})"))
        if not self.finite:
            rows.append(("finite", "NO: the artifact produced NaN/Inf   FAIL"))
        rows.append(("result", "PASS" if self.passed else "FAIL"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.5g}"
    return f"{value:.3e}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def compare_logits(
    reference: Sequence[np.ndarray] | np.ndarray,
    artifact: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[np.ndarray] | None = None,
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
    margin_delta: float = MARGIN_DELTA,
    class_names: Sequence[str] | None = None,
    evaluated: Sequence[int] | None = None,
) -> ParityReport:
    """Compare two sets of ``[C, H, W]`` (or ``[N, C, H, W]``) logits; labels are ``[H, W]`` masks
    (``evaluated``: the classes a labelled dataset shares with the model, for the mIoU vs labels)."""
    ref = (
        np.stack(list(reference)).astype(np.float64)
        if not isinstance(reference, np.ndarray)
        else reference.astype(np.float64)
    )
    art = (
        np.stack(list(artifact)).astype(np.float64)
        if not isinstance(artifact, np.ndarray)
        else artifact.astype(np.float64)
    )
    if ref.shape != art.shape or ref.ndim != 4:
        raise InputError(f"logit shapes differ or are not [N, C, H, W]: reference {ref.shape}, artifact {art.shape}")
    if precision not in TOLERANCES and tolerance is None:
        raise ConfigError(f"no tolerance for precision {precision!r}; choose one of {sorted(TOLERANCES)}")
    tol = tolerance or TOLERANCES[precision]
    num_classes = ref.shape[1]
    finite = bool(np.isfinite(art).all())
    art_safe = np.nan_to_num(art, nan=0.0, posinf=1e30, neginf=-1e30)
    diff = np.abs(art_safe - ref)
    signal = float(np.sum(ref**2))
    noise = float(np.sum((art_safe - ref) ** 2))
    sqnr = float("inf") if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
    denom = float(np.linalg.norm(ref) * np.linalg.norm(art_safe))
    cosine = float(np.sum(ref * art_safe) / denom) if denom > 0 else float("nan")
    ref_mask, art_mask = ref.argmax(1), art_safe.argmax(1)
    agree = ref_mask == art_mask
    top2 = np.sort(ref, axis=1)[:, -2:]
    confident = (top2[:, 1] - top2[:, 0]) > margin_delta
    margin_agreement = float(agree[confident].mean()) if confident.any() else 1.0
    vs_ref = SegmentationMetrics(num_classes, class_names)
    vs_ref.update(art_mask, ref_mask)
    miou_labels = ref_miou_labels = None
    if labels is not None:
        art_metrics, ref_metrics = (
            SegmentationMetrics(num_classes, class_names, evaluated=evaluated),
            SegmentationMetrics(num_classes, class_names, evaluated=evaluated),
        )
        for a, r, lab in zip(art_mask, ref_mask, labels):
            art_metrics.update(a, lab)
            ref_metrics.update(r, lab)
        miou_labels, ref_miou_labels = art_metrics.miou(), ref_metrics.miou()
    report = ParityReport(
        precision=precision,
        images=ref.shape[0],
        shape=list(ref.shape),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        max_rel_error=float(diff.max() / max(np.abs(ref).max(), 1e-12)),
        cosine=cosine,
        sqnr_db=sqnr,
        argmax_agreement=float(agree.mean()),
        margin_delta=margin_delta,
        margin_agreement=margin_agreement,
        confident_fraction=float(confident.mean()),
        miou_vs_reference=vs_ref.miou(),
        miou_vs_labels=miou_labels,
        reference_miou_vs_labels=ref_miou_labels,
        finite=finite,
    )
    report.checks = _checks(report, tol)
    return report


def compare_masks(
    reference: Sequence[np.ndarray],
    artifact_masks: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None = None,
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
    margin_delta: float = MARGIN_DELTA,
    class_names: Sequence[str] | None = None,
    evaluated: Sequence[int] | None = None,
) -> ParityReport:
    """Compare an artifact that emits only a class mask (``--emit mask``) with reference logits.

    The logit metrics (errors, cosine, SQNR) do not exist for such an artifact and are reported as
    n/a; pass/fail rests on argmax agreement, margin agreement and the mIoU drop.
    """
    ref = np.stack(list(reference)).astype(np.float64)
    masks = np.stack(list(artifact_masks))
    if ref.ndim != 4 or masks.shape != (ref.shape[0], *ref.shape[2:]):
        raise InputError(f"masks {masks.shape} do not match reference logits {ref.shape}")
    tol = tolerance or TOLERANCES[precision]
    mask_tol = Tolerance(
        min_argmax_agreement=tol.min_argmax_agreement,
        min_margin_agreement=tol.min_margin_agreement,
        max_miou_drop=tol.max_miou_drop,
    )
    # one-hot "logits" for the artifact give exactly its masks to the shared metric code
    one_hot = np.eye(ref.shape[1], dtype=np.float64)[masks.astype(np.int64)].transpose(0, 3, 1, 2)
    report = compare_logits(ref, one_hot, labels, precision, mask_tol, margin_delta, class_names, evaluated)
    nan = float("nan")
    report.max_abs_error = report.mean_abs_error = report.max_rel_error = report.cosine = report.sqnr_db = nan
    report.finite = bool(masks.min() >= 0 and masks.max() < ref.shape[1])  # a class index out of range is broken
    return report


def _checks(r: ParityReport, tol: Tolerance) -> list[Check]:
    checks = []

    def add(name: str, value: float | None, threshold: float | None, kind: str) -> None:
        if threshold is None or value is None:
            return
        ok = value >= threshold if kind == ">=" else value <= threshold
        checks.append(Check(name, float(value), float(threshold), bool(ok and not math.isnan(value)), kind))

    add("max_rel_error", r.max_rel_error, tol.max_rel_error, "<=")
    add("cosine", r.cosine, tol.min_cosine, ">=")
    add("sqnr_db", r.sqnr_db, tol.min_sqnr_db, ">=")
    add("argmax_agreement", r.argmax_agreement, tol.min_argmax_agreement, ">=")
    add("margin_agreement", r.margin_agreement, tol.min_margin_agreement, ">=")
    if r.miou_vs_labels is not None and r.reference_miou_vs_labels is not None:
        add("miou_drop", r.reference_miou_vs_labels - r.miou_vs_labels, tol.max_miou_drop, "<=")
    return checks


# -- inputs -----------------------------------------------------------------------------------
def generated_inputs(count: int, size: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` validation scenes (images, labels) from the scene generator."""
    from ..data.scenes import SceneDataset

    data = SceneDataset("val", size=size, count=count)
    pairs = [data[i] for i in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def run_parity(
    artifact: str | Path,
    reference: str | None = None,
    images: Sequence[np.ndarray] | str | Path | None = None,
    generated: int | None = None,
    size: tuple[int, int] | None = None,
    labels: Sequence[np.ndarray] | None = None,
    threads: int | None = None,
    precision: str | None = None,
    write_manifest: bool = True,
    progress: Callable[[str], None] | None = None,
    data: str | None = None,
    data_count: int = 8,
    **backend_options: Any,
) -> ParityReport:
    """Run ``artifact`` and the reference on the same inputs and compare them.

    ``data``: a labelled dataset (``cityscapes:ROOT`` ...): its first ``data_count`` validation
    images, with their labels matched to the artifact's classes by name, are the inputs.

    The reference defaults to the model recorded in the artifact's manifest (its preset, or its
    checkpoint). Inputs are preprocessed once, at the artifact's static size (or ``size``), and
    both sessions get the very same tensors. The report is written into the manifest unless
    ``write_manifest=False``.
    """
    from .. import runtime
    from ..manifest import read_manifest

    session = runtime.load(artifact, threads=threads, **backend_options)
    manifest = session.manifest
    spec = session.input_spec
    if size is not None and spec.static_hw is not None and tuple(size) != spec.static_hw:
        session.close()
        raise ConfigError(
            f"--size {size[0]}x{size[1]}: this artifact's input is fixed at {spec.static_hw[0]}x"
            f"{spec.static_hw[1]}; drop --size (it is for dynamic artifacts)"
        )
    height, width = spec.static_hw or size or manifest.export.input_size or (512, 512)
    hw = (int(height), int(width))
    batch = spec.static_batch or 1
    evaluated = None
    if data is not None:
        from ..data.validation import dataset_images

        stack, label_stack, evaluated, _ = dataset_images(data, data_count, hw, manifest.class_names)
        images, labels = list(stack), list(label_stack)
    if images is None and generated is None:
        generated = 4
    if isinstance(images, (str, Path)):
        from ..data.images import read_image_folder

        images = read_image_folder(images)
    if images is None:
        assert generated is not None, "set to 4 above when neither images nor data were given"
        images, labels = generated_inputs(int(generated), hw)
        from ..model.registry import DEMO_CLASSES

        if tuple(manifest.class_names) != DEMO_CLASSES:
            labels = None  # generated labels use the demo classes; meaningless for other class sets
    ckpt = _own_checkpoint(artifact, manifest) if reference is None else None
    ref_name = reference or ckpt or manifest.model.name
    if reference is not None and Path(reference).is_file():
        _note_other_checkpoint(reference, manifest)
    if ref_name == ckpt or Path(ref_name).is_file():  # a checkpoint: the artifact's architecture and classes
        from ..targets import reference_engine

        ref_session = runtime.load(
            ref_name,
            backend=reference_engine().name,
            model=manifest.model.name,
            num_classes=manifest.num_classes,
            config=manifest.model.to_dict(),
            threads=threads,
        )
    elif reference is None and (manifest.export.model_options or manifest.export.num_classes):
        # the artifact's own preset, changed at export: rebuild exactly what was exported
        ref_session = runtime.load(ref_name, config=manifest.model.to_dict(), threads=threads)
    else:
        ref_session = runtime.load(ref_name, threads=threads)
    if ref_session.num_classes != manifest.num_classes:
        ref_session.close()
        session.close()
        raise ConfigError(
            f"the reference {str(ref_name)!r} predicts {ref_session.num_classes} classes, the artifact "
            f"{manifest.num_classes} ({manifest.model.name}): compare with the model it was "
            "exported from (leave out --reference), or a checkpoint of the same classes"
        )
    from ..inputs import FLOAT
    from ..outputs import LOGITS, MASK
    from ..runtime.preprocess import preprocess

    masks_only = LOGITS not in session.outputs
    ref_logits, art_logits = [], []
    for i, image in enumerate(images):
        tensor = preprocess([image], manifest.preprocessing, hw)
        # an --accept artifact gets the same pixels as uint8 (resized alike) and normalises them in its graph
        fed = tensor if session.accepts == FLOAT else session.prepare([session.from_rgb(image)], hw)
        if batch > 1:
            tensor, fed = np.repeat(tensor, batch, axis=0), np.repeat(fed, batch, axis=0)
        art_logits.append(session.infer_outputs(fed)[MASK][0] if masks_only else session.infer(fed)[0])
        ref_logits.append(ref_session.infer(tensor)[0])
        if progress:
            progress(f"parity {i + 1}/{len(images)}")
    if labels is not None:
        labels = [_resize_label(lab, hw) for lab in labels]
    compare = compare_masks if masks_only else compare_logits
    report = compare(
        ref_logits,
        art_logits,
        labels,
        precision or manifest.precision,
        class_names=manifest.class_names or None,
        evaluated=evaluated,
    )
    report.artifact, report.reference = str(artifact), str(ref_name)
    session.close()
    ref_session.close()
    if write_manifest and Path(artifact).is_dir():
        from ..util.result_files import writable

        if writable(artifact):
            m = read_manifest(artifact, verify=False)
            m.parity = report.to_dict()
            m.write(artifact)
        else:
            print(
                f"note: {artifact} is read-only, so the report was not recorded in its manifest; pass --output "
                "FILE to keep it (or --no-manifest to skip this note)",
                file=sys.stderr,
            )
    return report


def _own_checkpoint(artifact: str | Path, manifest: Manifest) -> str | None:
    """The checkpoint copy an artifact folder carries (contained and hash-checked), or ``None``.

    Why not the manifest's path as written: a manifest may name only files inside its own
    folder, and a swapped checkpoint must fail as such, not as a parity FAIL of the artifact.
    """
    from ..manifest import artifact_checkpoint

    if not manifest.checkpoint or not Path(artifact).is_dir():  # a bare model file's metadata names none
        return None
    return str(artifact_checkpoint(artifact, manifest))


def _note_other_checkpoint(reference: str | Path, manifest: Manifest) -> None:
    """Say when a checkpoint given as ``--reference`` is not the one the artifact was exported from
    (a deliberate comparison stays allowed; an accidental one is named before its FAIL misleads)."""
    from ..util.files import sha256_file

    info = manifest.checkpoint
    # the original file, or the artifact's copy
    recorded = {info.sha256, info.carried_sha256} - {None} if info is not None else set()
    try:
        differs = bool(recorded) and sha256_file(reference) not in recorded
    except OSError:
        return  # unreadable: loading it names the problem
    if differs:
        print(
            f"note: {reference} is not the checkpoint this artifact was exported from (its sha256 differs from "
            "the manifest's checkpoint.sha256); differences below may come from the checkpoint, not the export",
            file=sys.stderr,
        )


def _resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if label.shape == size:
        return label
    from PIL import Image

    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.Resampling.NEAREST))


def write_report(report: ParityReport, path: str | Path) -> None:
    from ..util.files import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {path} ({exc.strerror or exc}); choose another --output"
        ) from exc
