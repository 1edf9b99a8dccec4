"""How much memory an export's batch needs, planned and checked before the network is traced.

Why: torch traces the network on a ``zeros(batch, 3, H, W)`` example, and the tracer keeps every
intermediate tensor of that forward pass alive until the graph is built; the ONNX check and
``--verify`` run the graph at that batch again. The peak therefore grows with the batch times
one image's activations: ``danet-export --batch 100000`` ran until the kernel killed it at
22.5 GB. As with class counts (``MAX_CLASSES``) and parameter counts (``MAX_PARAMETERS``), a
batch above :data:`MAX_BATCH` is refused outright, and any batch whose planned peak exceeds the
memory this machine has available is refused before tracing, naming the largest batch that fits.

The plan per image: the input, three times the largest module output (measured with forward
hooks at a small size and scaled by the pixel count) and the position-attention energy and its
softmax from the attention plan (quadratic, so not scaled); plus the weights and a base for the
interpreter and libraries. An estimate stated up front and recorded in the manifest. Measured on
danet_demo at 256x256 (loaded 2-core machine): peak RSS 707 MB at batch 16 and 1166 MB at batch
64, 9.6 MiB per image, against 14.8 MiB planned; the sum of every module output (49 MiB per
image) overstated it five-fold, since the tracer frees each tensor once it is used.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..planner import AttentionPlan, minimum_input_size

MAX_BATCH = 1024  # static batch danet-export traces; a dynamic-batch graph serves larger batches
BASE_BYTES = 700 * 2**20  # interpreter, torch, onnx, onnxruntime loaded (measured: ~0.6-0.7 GB before tracing)
LIVE_ACTIVATIONS = 3  # largest module outputs alive at once per image (see activations_per_image)


def check_batch(batch: int, option: str = "--batch") -> None:
    """Refuse a batch outside ``1..MAX_BATCH`` before anything is loaded."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"{option} must be a whole number >= 1, got {batch!r:.40}")
    if batch > MAX_BATCH:
        raise ConfigError(
            f"{option} {batch} is above {MAX_BATCH}, the largest batch danet-export traces (the whole "
            "batch's activations are held while tracing); export --dynamic, whose graph serves any batch, "
            f"with --batch 1 (and --max-batch {batch} for a TensorRT profile), or a smaller --batch"
        )


def available_bytes() -> int | None:
    """Memory this process may still take: ``MemAvailable``, lowered by a cgroup v2 limit if one is set."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(0, int(limit) - used))
    return min(found) if found else None


def activations_per_image(model: Any, size: tuple[int, int]) -> int:
    """Bytes one image keeps alive while the graph is traced and checked, apart from attention: the
    input plus :data:`LIVE_ACTIVATIONS` times the largest module output (a layer's input, output and
    residual are alive together). The largest output is measured with forward hooks at a small
    size (milliseconds) and scaled by the pixel count; position attention's quadratic energy is
    not a module output, and :func:`plan_batch_memory` adds it from the attention plan."""
    import torch

    side = 2 * minimum_input_size(int(model.config.output_stride))
    largest = 0

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal largest
        for value in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(value, torch.Tensor):
                largest = max(largest, value.numel() * value.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    finally:
        for handle in handles:
            handle.remove()
    pixels = size[0] * size[1]
    return 3 * pixels * 4 + math.ceil(LIVE_ACTIVATIONS * largest * pixels / (side * side))


@dataclass(frozen=True)
class BatchMemoryPlan:
    """The expected peak of tracing and checking an export at one batch."""

    batch: int
    per_image_bytes: int
    weights_bytes: int
    expected_peak_bytes: int
    available_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        mib = 2**20
        text = (
            f"export memory: batch {self.batch} x {self.per_image_bytes / mib:.1f} MiB per image "
            "(input, live activations, attention); "
            f"expected peak ~{self.expected_peak_bytes / mib:.0f} MiB"
        )
        if self.available_bytes is not None:
            text += f" of {self.available_bytes / mib:.0f} MiB available"
        return text


def plan_batch_memory(
    model: Any, size: tuple[int, int], batch: int, attention: AttentionPlan, available: int | None = None
) -> BatchMemoryPlan:
    """Plan the export's peak for ``batch`` images of ``size`` and refuse it if it cannot fit.

    Args:
        attention: the attention plan (its energy block per image is added: energy and softmax).
        available: bytes to compare with (default: :func:`available_bytes`; ``None`` if unknown).
    """
    per_image = activations_per_image(model, size) + 2 * attention.chunk_bytes // max(1, attention.batch)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    peak = BASE_BYTES + weights + batch * per_image
    available = available_bytes() if available is None else available
    plan = BatchMemoryPlan(batch, per_image, weights, peak, available)
    if available is not None and peak > available:
        fits = max(0, (available - BASE_BYTES - weights) // per_image)
        gib = 2**30
        advice = f"pass --batch {fits} or less, or " if fits >= 1 else ""
        raise ConfigError(
            f"--batch {batch} at {size[0]}x{size[1]} needs ~{peak / gib:.1f} GiB to trace and check the "
            f"graph ({per_image / 2**20:.0f} MiB of activations per image), more than the "
            f"{available / gib:.1f} GiB this machine has available; {advice}export --dynamic --batch 1, "
            "whose graph serves any batch"
        )
    return plan
