"""What ``danet-export`` does besides one :class:`~.pipeline.ExportRequest`, as functions a Python user calls.

The command's flags are :class:`ExportRequest`'s fields plus :class:`ExportFlags` (listings, ``--from``,
``--json``, the TensorRT shortcuts for ``--option``); ``danet_deploy.cli.export`` only parses them.
From Python: ``export_and_verify(ExportRequest(...))`` is ``danet-export ... [--verify]``, and
:func:`export_from` is ``danet-export --target tensorrt|triton --from ARTIFACT``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..manifest import Manifest
from ..request_fields import arg
from ..targets import DEFAULT_CALIB_METHOD, get_target, target_names, targets
from .pipeline import ExportRequest, _print, export

#: Option names the :class:`ExportFlags` shortcuts set (``--dla-core 0`` = ``--option dla_core=0``).
OPTION_FLAGS = ("workspace", "dla_core", "timing_cache")


@dataclass(frozen=True)
class ExportFlags:
    """The flags of ``danet-export`` that are not part of one :class:`ExportRequest`."""

    calib_dir: str | None = arg(None, "folder of calibration images (INT8)")
    from_artifact: str | None = arg(
        None,
        "second stage from an existing artifact: --target tensorrt builds the engine from a prepared bundle "
        "(needs TensorRT and a GPU); --target triton writes a Triton model repository for any ONNX, OpenVINO or "
        "TensorRT artifact",
        flag="--from",
        metavar="ARTIFACT_DIR",
    )
    workspace: str | None = arg(None, "TensorRT builder workspace, e.g. 2GB")
    dla_core: int | None = arg(None, "TensorRT: build for this DLA core (GPU fallback on)")
    timing_cache: str | None = arg(None, "TensorRT timing cache file (read and updated)")
    legacy_calibrator: bool = arg(False, "TensorRT <= 10: implicit INT8 with the entropy calibrator instead of Q/DQ")
    verify_images: int = arg(4, "generated scenes used by --verify")
    as_json: bool = arg(False, "print the summary as JSON", flag="--json")
    list_models: bool = arg(False, "list presets and exit")
    list_targets: bool = arg(False, "list targets (precisions, engine, extra) and exit")
    list_options: bool = arg(False, "list the options of --target (or of every target)")

    def with_shortcuts(self, options: dict[str, Any]) -> dict[str, Any]:
        """``--option`` pairs with the shortcut flags given folded in (a shortcut wins)."""
        merged = dict(options)
        merged.update({key: getattr(self, key) for key in OPTION_FLAGS if getattr(self, key) is not None})
        if self.legacy_calibrator:
            merged["legacy_calibrator"] = True
        return merged


def export_from(
    artifact: str | Path,
    target: str,
    output: str | Path | None = None,
    options: dict[str, Any] | None = None,
    force: bool = False,
    log: Callable[[str], None] = _print,
) -> Any:
    """Second stage from an existing artifact: ``target`` ``tensorrt`` builds the engine of a prepared
    bundle, ``triton`` writes a model repository; returns the target's result (printable)."""
    spec = get_target(target)
    if spec.from_builder is None:
        with_from = [t.name for t in targets() if t.from_builder]
        raise ConfigError(
            f"--target {spec.name} has no second stage; --from works with --target {' or '.join(with_from) or '(none)'}"
        )
    from ..targets import resolve

    build_from = resolve(spec.from_builder, f"--target {spec.name} --from")
    return build_from(artifact, output, spec.parse_options(options or {}), force=force, log=log)


@dataclass
class ExportOutcome:
    """An export's folder and manifest, and the parity report when it was verified."""

    path: Path
    manifest: Manifest
    parity: Any = None  # ParityReport | None

    @property
    def passed(self) -> bool:
        """False only when a verification ran and failed."""
        return self.parity is None or bool(self.parity.passed)

    def to_dict(self) -> dict[str, Any]:
        """The summary ``danet-export --json`` prints."""
        m = self.manifest
        data = {
            "artifact": str(self.path),
            "target": m.target,
            "precision": m.precision,
            "backend": m.backend,
            "files": m.files,
            "input": m.input.to_dict(),
            "attention_plan": m.export.attention_plan,
            "calibration": m.calibration,
            "accuracy_budget": m.extra.get("accuracy_budget"),
        }
        if self.parity is not None:
            data["parity"] = self.parity.to_dict()
        return data

    def line(self) -> str:
        """The one-line summary ``danet-export`` prints."""
        m = self.manifest
        plan = m.export.attention_plan or {}
        shape = "x".join(str(d) for d in m.input.shape)
        return (
            f"{self.path}  target={m.target} precision={m.precision} input={shape} "
            f"attention_chunks={plan.get('chunks', 1)}"
            + (f" parity={'PASS' if self.passed else 'FAIL'}" if self.parity is not None else "")
        )


def export_and_verify(
    request: ExportRequest, verify_images: int = 4, log: Callable[[str], None] = _print
) -> ExportOutcome:
    """:func:`~.pipeline.export`, then (``request.verify``) danet-parity on ``verify_images`` generated
    scenes, its table logged."""
    path, manifest = export(request, log=log)
    outcome = ExportOutcome(path, manifest)
    if request.verify:
        from ..verify.parity import run_parity

        outcome.parity = run_parity(path, generated=verify_images)
        print(outcome.parity.table(), file=sys.stderr)
    return outcome


def options_listing(only: str | None = None) -> str:
    """``--list-options``: each target's typed options (of ``only``, or of every target)."""
    lines = []
    for spec in targets() if only is None else [get_target(only)]:
        rows = spec.options_class.describe()
        lines.append(f"--target {spec.name}: " + ("no options" if not rows else ""))
        for name, kind, default, text in rows:  # a help that explains its default is not given a second one
            lines.append(f"  {name}={kind}" + ("" if "default" in text else f" (default {default})") + f": {text}")
        if spec.calib_methods:
            lines.append(f"  --calib-method {'|'.join(spec.calib_methods)} (default {DEFAULT_CALIB_METHOD['int8']})")
    return "\n".join(lines)


def models_listing() -> str:
    """``--list-models``: each preset and its description."""
    from ..model import get_config, list_models

    return "\n".join(f"{name:20s} {get_config(name).description}" for name in list_models())


def default_target() -> str:
    """The target an export without ``--target`` makes (the registry's first)."""
    return target_names()[0]
