"""An artifact against its reference, as ``danet-parity`` runs it: the request, its checks, the report files.

``check_parity(ParityRequest("out/ort-int8", generated=8))`` is ``danet-parity out/ort-int8 --generated 8``:
:func:`danet_deploy.verify.parity.run_parity` (per-precision tolerances), or with ``per_layer`` the per-layer
report of :func:`danet_deploy.verify.perlayer_run.run_per_layer` (SQNR, cosine, NaN/Inf per tensor, a plot).
Every argument and output path is checked before the comparison starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..request_fields import arg, parse_size

SOURCE = "source"


@dataclass(frozen=True)
class ParityRequest:
    """What ``danet-parity`` was asked (the CLI is generated from these fields); checked when made."""

    artifact: str = arg(help="artifact folder (or .onnx/.xml file)", positional=True, required=True)
    reference: str | None = arg(None, "preset name or checkpoint (default: the artifact's own model)")
    images: str | None = arg(None, "folder of images to compare on", exclusive=SOURCE)
    generated: int | None = arg(None, "number of generated validation scenes (with labels)", exclusive=SOURCE)
    data: str | None = arg(
        None,
        "a labelled dataset's validation split: cityscapes:ROOT, ade20k:ROOT, voc:ROOT or "
        "folder:IMAGES,LABELS (mIoU vs its labels, classes matched by name)",
        metavar="SPEC",
        exclusive=SOURCE,
    )
    data_count: int = arg(8, "images of --data to compare on (default 8)")
    size: tuple[int, int] | None = arg(None, "input size for dynamic artifacts", parser=parse_size, metavar="HxW")
    precision: str | None = arg(None, "tolerance set (default: the artifact's)", choices=("fp32", "fp16", "int8"))
    threads: int | None = arg(None, "engine threads (default: the backend's)")
    output: str | None = arg(None, "write the JSON report here")
    no_manifest: bool = arg(False, "do not record the report in the manifest")
    as_json: bool = arg(False, "print the report as JSON", flag="--json")
    per_layer: bool = arg(
        False,
        "compare every intermediate tensor with the FP32 reference ONNX (re-exported from "
        "the manifest, or --reference FILE.onnx): SQNR, cosine, max error, NaN/Inf, FP16 range; "
        "worst first",
    )
    plot: str | None = arg(None, "with --per-layer: write the SQNR-along-depth plot (PNG) here")
    force: bool = arg(False, "replace --output / --plot files that already exist")

    def __post_init__(self) -> None:
        """Counts out of range, a dataset spec that does not parse, flags that do not go together."""
        if sum(x is not None for x in (self.images, self.generated, self.data)) > 1:
            raise ConfigError("give one of --images, --generated and --data")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.generated is not None and self.generated < 1:
            raise ConfigError(f"--generated must be >= 1 (scenes to compare on), got {self.generated}")
        if self.data_count < 1:
            raise ConfigError(f"--data-count must be >= 1, got {self.data_count}")
        if self.data:
            from ..data.datasets import parse_data_spec

            parse_data_spec(self.data)
        if self.plot and not self.per_layer:
            raise ConfigError("--plot draws the per-layer report: add --per-layer, or drop --plot")

    @property
    def plot_path(self) -> str | None:
        """--plot, or with --per-layer and --output the PNG beside the JSON report."""
        if not self.per_layer:
            return None
        return self.plot or (f"{str(self.output).rsplit('.', 1)[0]}.png" if self.output else None)


@dataclass
class ParityOutcome:
    """The report (:class:`~danet_deploy.verify.parity.ParityReport` or the per-layer one) and whether it passed."""

    report: Any
    passed: bool


def _check_outputs(request: ParityRequest) -> None:
    """Outputs that cannot be written or would replace a file: refused before the comparison."""
    from ..util.result_files import check_output_file, check_output_paths

    plot, label = request.plot_path, "--plot" if request.plot else "--plot (from --output)"
    check_output_paths({"--output": request.output, label: plot})
    if request.output:
        check_output_file(request.output, request.force)
    if plot:
        check_output_file(plot, request.force, label)


def _log(message: str) -> None:
    print(f"[danet-parity] {message}", file=sys.stderr, flush=True)


def check_parity(request: ParityRequest, log: Callable[[str], None] = _log) -> ParityOutcome:
    """Compare; write ``output`` (and the plot); the per-layer report fails on any NaN/Inf tensor."""
    _check_outputs(request)
    if request.per_layer:
        return _per_layer(request, log)
    from .parity import run_parity, write_report

    report = run_parity(
        request.artifact,
        reference=request.reference,
        images=request.images,
        generated=request.generated,
        size=request.size,
        threads=request.threads,
        precision=request.precision,
        write_manifest=not request.no_manifest,
        data=request.data,
        data_count=request.data_count,
    )
    if request.output:
        write_report(report, request.output)
    return ParityOutcome(report, bool(report.passed))


def _per_layer(request: ParityRequest, log: Callable[[str], None]) -> ParityOutcome:
    from .perlayer import plot_sqnr, write_json
    from .perlayer_run import run_per_layer

    if request.reference and not str(request.reference).endswith(".onnx"):
        raise ConfigError(
            "with --per-layer, --reference takes an FP32 .onnx file (default: re-exported from the artifact's manifest)"
        )
    if request.precision:
        raise ConfigError("--precision sets parity tolerances; --per-layer reports every layer and has none")
    report = run_per_layer(
        request.artifact,
        images=request.images,
        generated=request.generated,
        size=request.size,
        threads=request.threads,
        reference=request.reference,
        log=log,
    )
    if request.output:
        write_json(report, request.output)
    if request.plot_path:
        plot_sqnr(report, request.plot_path)
        log(f"wrote {request.plot_path}")
    return ParityOutcome(report, not any(layer.nonfinite for layer in report.layers))
