"""``danet-parity ARTIFACT --per-layer``: an artifact's layers against its re-exported FP32 reference.

The comparison itself (:mod:`danet_deploy.verify.perlayer`) imports only the ``util`` helpers, so
``export`` may use it (the accuracy budget ranks layers with it); this module sits above ``export``: it
reads the artifact folder, re-exports the FP32 reference ONNX through the export pipeline from the
manifest, and feeds both the runtime's own preprocessing of the chosen images.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .perlayer import PerLayerReport, compare_layers

if TYPE_CHECKING:
    from ..manifest import Manifest


def artifact_onnx(folder: Path, manifest: Manifest) -> Path:
    """The ONNX graph of an artifact: the primary file, or a TensorRT bundle's prepared ONNX."""
    if manifest.primary.endswith((".onnx", ".xml")):  # an OpenVINO IR is compared by its tensor names
        return folder / manifest.primary
    bundle = (manifest.extra or {}).get("bundle") or {}
    if isinstance(bundle, dict) and bundle.get("onnx"):
        from ..manifest import artifact_path

        onnx_file = artifact_path(folder, bundle["onnx"], "bundle ONNX")  # never a file outside the folder
        if onnx_file.is_file():
            return onnx_file
    raise ConfigError(
        f"--per-layer compares ONNX graphs or OpenVINO IRs; {folder} is a {manifest.target} artifact "
        f"({manifest.primary}) without one. It works for ONNX Runtime and OpenVINO artifacts and "
        "TensorRT bundles"
    )


def reference_onnx(
    folder: Path,
    manifest: Manifest,
    size: tuple[int, int],
    batch: int,
    directory: Path,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Re-export the FP32 ONNX the artifact in ``folder`` was made from (its manifest's model, the
    checkpoint copy the folder carries, and its settings)."""
    from ..export.pipeline import ExportRequest, export
    from ..manifest import artifact_checkpoint

    carried = artifact_checkpoint(folder, manifest)  # contained and hash-checked, never a path from elsewhere
    ckpt = str(carried) if carried is not None else None
    exp = manifest.export
    request = ExportRequest(
        model=ckpt or manifest.model.name,
        arch=manifest.model.name if ckpt else None,
        num_classes=manifest.num_classes,
        precision="fp32",  # the default target: plain ONNX
        output=directory / "reference-fp32",
        input_size=(size[0], size[1]),
        batch=batch,
        opset=exp.opset or 17,
        exporter=exp.exporter or "legacy",
        attention_chunks=manifest.model.attention_chunks or None,
    )
    path, _ = export(request, log=log or (lambda _m: None))
    return path / "model.onnx"


def run_per_layer(
    artifact: str | Path,
    images: Sequence[np.ndarray] | str | Path | None = None,
    generated: int | None = None,
    size: tuple[int, int] | None = None,
    threads: int | None = None,
    reference: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> PerLayerReport:
    """Per-layer report of an artifact folder against the FP32 reference ONNX.

    ``reference``: an FP32 ONNX to compare with (default: re-exported from the manifest).
    Inputs default to 4 generated validation scenes at the artifact's static size (or ``size``).
    """
    import onnx

    from ..manifest import read_manifest
    from ..runtime.preprocess import preprocess

    folder = Path(artifact)
    if not folder.is_dir():
        raise ConfigError(f"--per-layer needs an artifact folder with a manifest, got {artifact}")
    manifest = read_manifest(folder, verify=True)
    graph_path = artifact_onnx(folder, manifest)
    from ..inputs import FLOAT, from_rgb, image_batch, to_nchw

    accept = manifest.input.accept
    shape = to_nchw(manifest.input.shape, manifest.input.layout)
    static = len(shape) == 4 and all(isinstance(d, int) for d in shape[2:])
    hw = tuple(shape[2:]) if static else (size or manifest.export.input_size or (512, 512))
    batch = shape[0] if static and isinstance(shape[0], int) else 1
    if isinstance(images, (str, Path)):
        from ..data.images import read_image_folder

        images = read_image_folder(images)
    if images is None:
        from .parity import generated_inputs

        images, _ = generated_inputs(int(generated or 4), hw)
    if not images:
        raise ConfigError("no images to compare on")
    tensors, fed = [], []
    for image in images:
        tensor = preprocess([image], manifest.preprocessing, hw)
        tensors.append(np.repeat(tensor, batch, axis=0) if batch > 1 else tensor)
        if accept != FLOAT:  # the artifact's graph takes the uint8 image and normalises it itself
            pixels = image_batch([from_rgb(image, accept)], hw)
            fed.append(np.repeat(pixels, batch, axis=0) if batch > 1 else pixels)
    with tempfile.TemporaryDirectory(prefix="danet-perlayer-") as tmp:
        if reference is None:
            if log:
                log("re-exporting the FP32 reference ONNX from the manifest")
            ref_path = reference_onnx(folder, manifest, hw, batch, Path(tmp), log)
        else:
            ref_path = Path(reference)
        ref_model = _load_reference(ref_path)
        art_model = graph_path if graph_path.suffix == ".xml" else onnx.load(str(graph_path))
        layers = compare_layers(ref_model, art_model, tensors, threads, progress=log, artifact_inputs=fed or None)
    return PerLayerReport(
        artifact=str(artifact),
        precision=manifest.precision,
        images=len(tensors),
        size=list(hw),
        layers=layers,
        reference_onnx=None if reference is None else str(reference),
    )


def _load_reference(path: Path) -> Any:
    """The FP32 reference ONNX, or a :class:`ConfigError` naming it when it is missing or not ONNX
    (a truncated download or a copy cut short fails in protobuf's parser, with no file name)."""
    import onnx

    if not path.is_file():
        raise ConfigError(f"--reference {path}: no such file; pass an FP32 .onnx (or omit --reference to re-export it)")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, or external data that is missing
        raise ConfigError(
            f"--reference {path} is not a readable ONNX model ({type(exc).__name__}: "
            f"{str(exc)[:120]}); re-export it or omit --reference"
        ) from None
