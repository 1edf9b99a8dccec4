"""Memory planning for position attention: how big the N x N energy gets, and how to chunk it.

Position attention stores ``B x N x N`` energies with ``N = (H/os) * (W/os)``: 4 GiB in FP32 for
one 1024x2048 frame at output stride 8, and TensorRT refuses any tensor above 2^31 - 1 elements.
Chunking the queries into ``n`` blocks is exact and divides that tensor by ``n``. The planner picks
``n`` from a byte budget (or takes it as given) and explains its choice; pure arithmetic, no torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

TENSORRT_MAX_ELEMENTS = 2**31 - 1
DEFAULT_ATTENTION_BUDGET = 256 * 2**20  # bytes: presets stay unchunked up to 512x1024; 1024x2048 -> 16 chunks
MAX_CHUNKS = 256  # chunks are unrolled in the exported graph: one attention block per chunk
MIN_FEATURE_CELLS = 4  # below 4x4 feature-map cells the network gives one-class masks
_BYTES = {"fp32": 4, "fp16": 2, "int8": 4}  # INT8 graphs keep attention in float (FP32) by default
_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KB": 2**10,
    "KIB": 2**10,
    "M": 2**20,
    "MB": 2**20,
    "MIB": 2**20,
    "G": 2**30,
    "GB": 2**30,
    "GIB": 2**30,
}


def parse_bytes(text: str | int) -> int:
    """``"512MB"``, ``"1.5GiB"``, ``"800M"`` or an int -> bytes (binary units)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise ConfigError(f"cannot read {text!r} as a memory size; write e.g. 512MB or 1.5GB")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise ConfigError(f"memory size must be positive, got {text!r}")
    return value


def feature_size(size: int, output_stride: int) -> int:
    """Spatial size after the backbone: stem conv (s2), max-pool (s2), then strided stages."""
    n = size
    for _ in range(int(math.log2(output_stride))):
        n = (n - 1) // 2 + 1  # each stride-2 layer: k=3, p=1 (or 1x1 s2) -> ceil(n / 2)
    return n


@dataclass(frozen=True)
class AttentionPlan:
    """The position-attention memory plan for one input size, batch and precision."""

    input_size: tuple[int, int]
    batch: int
    precision: str
    positions: int  # N = h * w of the feature map
    energy_elements: int  # B * N * N, the unchunked energy
    energy_bytes: int
    chunks: int
    chunk_elements: int  # largest energy block actually held: B * ceil(N / chunks) * N
    chunk_bytes: int
    largest_tensor_elements: int  # max over the energy block and the feature maps
    fits_tensorrt: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    def summary(self) -> str:
        mib = 2**20
        return (
            f"attention N={self.positions}: energy {self.energy_bytes / mib:.0f} MiB unchunked, "
            f"{self.chunks} chunk(s) of {self.chunk_bytes / mib:.0f} MiB; {self.reason}"
        )


def plan_attention(
    input_size: tuple[int, int],
    batch: int = 1,
    precision: str = "fp32",
    output_stride: int = 8,
    feature_channels: int = 512,
    budget: int | str | None = None,
    chunks: int | None = None,
    tensorrt: bool = False,
    _suggest: bool = True,
) -> AttentionPlan:
    """Choose the number of query chunks for ``input_size`` (the largest size the artifact serves).

    Args:
        budget: bytes (or ``"512MB"``) one energy block may take; default 512 MiB.
        chunks: force this many chunks (overrides ``budget``).
        tensorrt: also keep every tensor under TensorRT's 2^31 - 1 element limit.
    """
    h, w = input_size
    if h < 1 or w < 1 or batch < 1:
        raise ConfigError(f"input size and batch must be positive, got {h}x{w}, batch {batch}")
    if precision not in _BYTES:
        raise ConfigError(f"precision must be one of {sorted(_BYTES)}, got {precision!r}")
    n = feature_size(h, output_stride) * feature_size(w, output_stride)
    itemsize = _BYTES[precision]
    energy = batch * n * n
    budget_bytes = parse_bytes(budget) if budget is not None else DEFAULT_ATTENTION_BUDGET
    if chunks is not None:
        if chunks < 1:
            raise ConfigError(f"attention chunks must be >= 1, got {chunks}")
        chosen, reason = min(int(chunks), n), f"{chunks} chunk(s) requested"
    else:
        rows = budget_bytes // (batch * n * itemsize)  # query rows per block within the budget
        chosen = math.ceil(n / rows) if rows else n + 1  # n + 1: not even one row fits (refused below)
        reason = (
            "fits the budget unchunked"
            if chosen == 1
            else f"chunked to keep each energy block under the {budget_bytes / 2**20:.0f} MiB budget"
        )
    if tensorrt:
        needed = math.ceil(energy / TENSORRT_MAX_ELEMENTS)
        if needed > chosen:
            chosen, reason = needed, "chunked to keep every tensor under TensorRT's 2^31-1 element limit"
    if chosen > min(MAX_CHUNKS, n):
        if not _suggest:
            raise ConfigError(f"input {h}x{w} cannot be planned")
        fit = largest_plannable_size((h, w), batch, precision, output_stride, budget_bytes, tensorrt)
        raise ConfigError(
            f"input {h}x{w} (batch {batch}) needs position attention over N={n} positions: {energy * itemsize / 2**30:.1f} "
            f"GiB of energy, more than {MAX_CHUNKS} chunks of the {budget_bytes / 2**20:.0f} MiB budget can hold; the "
            f"largest input of this shape that can is {fit[0]}x{fit[1]} (or raise --attention-memory)"
        )
    chosen = min(chosen, n)
    block = batch * math.ceil(n / chosen) * n
    features = batch * feature_channels * n
    largest = max(block, features, batch * 3 * h * w)
    return AttentionPlan(
        (h, w),
        batch,
        precision,
        n,
        energy,
        energy * itemsize,
        chosen,
        block,
        block * itemsize,
        largest,
        largest <= TENSORRT_MAX_ELEMENTS,
        reason,
    )


def largest_plannable_size(
    size: tuple[int, int], batch: int, precision: str, output_stride: int, budget: int, tensorrt: bool = False
) -> tuple[int, int]:
    """The largest input with the aspect ratio of ``size`` (multiples of the output stride) whose
    attention fits ``MAX_CHUNKS`` chunks of ``budget`` bytes: what to suggest when a size is refused."""
    h, w = size

    def fits(height: int) -> bool:
        width = max(1, round(w * height / h))
        try:
            plan_attention(
                (height, width), batch, precision, output_stride, budget=budget, tensorrt=tensorrt, _suggest=False
            )
        except ConfigError:
            return False
        return True

    lo, hi = 1, max(1, h // output_stride)  # in units of the output stride
    while lo < hi:  # the largest height that fits (fits() shrinks monotonically with the height)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * output_stride) else (lo, mid - 1)
    height = lo * output_stride
    return height, max(output_stride, round(w * height / h) // output_stride * output_stride)


def minimum_input_size(output_stride: int) -> int:
    """Smallest height/width the network resolves: ``MIN_FEATURE_CELLS`` feature-map cells."""
    return MIN_FEATURE_CELLS * int(output_stride)


def check_input_size(size: tuple[int, int] | None, output_stride: int, option: str = "--input-size") -> None:
    """Refuse an input size below the network's minimum (smaller gives one-class masks)."""
    if size is None:
        return
    low = minimum_input_size(output_stride)
    if min(size) < low:
        raise ConfigError(
            f"{option} {size[0]}x{size[1]} is below the network's minimum of {low}x{low} (output stride "
            f"{output_stride} x {MIN_FEATURE_CELLS} cells; smaller inputs give one-class masks); pass at "
            f"least {max(size[0], low)}x{max(size[1], low)}"
        )
