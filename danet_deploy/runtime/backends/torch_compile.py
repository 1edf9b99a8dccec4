"""``torch.compile`` (Inductor, CPU) over the reference model: the peer a PyTorch user would pick.

Not the reference (eager PyTorch stays the FP32 yardstick): a separate engine, so every
benchmark shows the exported engines against what ``torch.compile`` gives in the same run.
Compilation happens on the first call for each input shape (``dynamic=False``: one graph per
shape, as a deployment would use); its time is measured here and reported as ``compile_s`` by
:meth:`describe`, never folded into a latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...manifest import Manifest
from ...targets.options import option
from .torch import TorchBackend, TorchEngineOptions

MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class TorchCompileEngineOptions(TorchEngineOptions):
    """``runtime.load(..., backend="torch-compile", **options)``: the torch backend's, plus ``mode``."""

    mode: str = option("default", "torch.compile mode", choices=MODES)


class TorchCompileBackend(TorchBackend):
    """The eager reference model wrapped in ``torch.compile(backend="inductor")``.

    Options: :class:`TorchCompileEngineOptions` (the torch backend's, plus ``mode``).
    """

    name = "torch-compile"
    options_class: ClassVar[type[TorchCompileEngineOptions]] = TorchCompileEngineOptions

    def __init__(self, model_file: Path | None, manifest: Manifest | None, **values: Any) -> None:
        super().__init__(model_file, manifest, **values)  # parses them with TorchCompileEngineOptions
        assert isinstance(self.options, TorchCompileEngineOptions), "options_class parsed them"
        mode = self.mode = self.options.mode
        self.eager = self.model
        self.model = self._torch.compile(
            self.eager, backend="inductor", mode=None if mode == "default" else mode, dynamic=False
        )
        self.compile_seconds: dict[str, float] = {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        key = "x".join(map(str, batch.shape))
        if key in self.compile_seconds:
            return super().infer(batch)
        started = time.perf_counter()
        out = super().infer(batch)  # first call for this shape: Inductor traces and compiles now
        self.compile_seconds[key] = round(time.perf_counter() - started, 3)
        return out

    def describe(self) -> dict[str, Any]:
        compiled = self.compile_seconds
        return {
            **super().describe(),
            "backend": self.name,
            "compiler": "torch.compile (inductor)",
            "mode": self.mode,
            "compile_s": round(sum(compiled.values()), 3) if compiled else None,
            "compile_s_per_shape": dict(compiled),
        }
