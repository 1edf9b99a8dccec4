"""Bounded calibration memory for ModelOpt's ONNX INT8 ("max" calibration).

Why: ModelOpt's ONNX PTQ calibrates through ONNX Runtime's MinMax calibrator (ReduceMin/ReduceMax
appended to every activation), but opens the augmented graph in a session of its own
(``ort_patching._create_inference_session_with_ep_config``) with the default execution order,
which runs every reduction after the whole network: all activations of an image are alive at
once (6.1 GB peak RSS for ``danet_demo`` at 1024x2048 before this module).

The fix is the one the ONNX Runtime path already uses (:mod:`.calib_memory`): reorder the
augmented graph so each activation is reduced right after it is produced, and run the node list
as given (``ExecutionOrder.PRIORITY_BASED``). ModelOpt's session factory still builds the
session (its providers and options); this wrapper reorders the file before it and re-opens the
session with the priority-based order after it. Min/max reductions do not depend on the order,
so the scales and the Q/DQ graph are identical (tested).

ModelOpt installs its factory on ``CalibraterBase`` each time ``quantize`` runs, reading the
module attribute, so wrapping that attribute for the duration of one call is enough; if a later
ModelOpt renames it, :func:`memory_ordered_calibration` says so and calibration stays unbounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

FACTORY = "_create_inference_session_with_ep_config"


@contextlib.contextmanager
def memory_ordered_calibration(roots: Sequence[str], log: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Within the block, ModelOpt's calibration sessions run a memory-ordered graph.

    Yields the list of augmented model paths that were reordered (empty when ModelOpt never
    opened a calibration session, or when its factory could not be found).
    """
    reordered: list[str] = []
    try:
        from modelopt.onnx.quantization import ort_patching
    except ImportError:
        yield reordered
        return
    original = getattr(ort_patching, FACTORY, None)
    if original is None:
        if log is not None:
            log(
                f"ModelOpt {getattr(ort_patching, '__name__', '')} has no {FACTORY}: calibration memory "
                "is not bounded (use --option quantizer=onnxruntime for the bounded path)"
            )
        yield reordered
        return

    def bounded(calibrator: Any, **kwargs: Any) -> None:
        path = kwargs.get("model_path") or calibrator.augmented_model_path
        _reorder_file(Path(path), list(roots))
        original(calibrator, **kwargs)
        settings = _session_settings(calibrator.infer_session)
        calibrator.infer_session = None  # free the first session before the second one exists
        calibrator.infer_session = _priority_based(path, *settings)
        reordered.append(str(path))

    setattr(ort_patching, FACTORY, bounded)
    try:
        yield reordered
    finally:
        setattr(ort_patching, FACTORY, original)


def _reorder_file(path: Path, roots: list[str]) -> None:
    """Rewrite the augmented model at ``path`` in memory order (reductions beside their producers)."""
    import onnx

    from .calib_memory import memory_order

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    memory_order(model, roots=[r for r in roots if r in present] or None)
    onnx.save(model, str(path))


def _session_settings(session: Any) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """``session``'s options, providers and provider options, to open the same model again."""
    providers = session.get_providers()
    provider_options = session.get_provider_options()
    return session.get_session_options(), providers, [provider_options.get(p, {}) for p in providers]


def _priority_based(
    path: str | Path, options: Any, providers: list[str], provider_options: list[dict[str, Any]]
) -> Any:
    """Open ``path`` with ModelOpt's settings, running its node list in the order given."""
    import onnxruntime as ort

    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    return ort.InferenceSession(str(path), sess_options=options, providers=providers, provider_options=provider_options)
