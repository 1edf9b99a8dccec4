"""TensorRT facts shared by the exporter and the runtime: profiles, the 2^31 limit, compatibility.

Pure Python on purpose (no torch, no tensorrt import at module level): the bundle is prepared on a
machine without a GPU, the engine is built on one with TensorRT, and the runtime on a robot checks
the engine's manifest against the TensorRT and GPU it finds *before* deserialising, so a mismatch
is a clear :class:`~danet_deploy.errors.EngineCompatibilityError`, not a crash inside TensorRT.
The checks take the running environment as a plain dict, so they are testable anywhere.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import BackendUnavailableError, ConfigError, EngineCompatibilityError
from ..planner import TENSORRT_MAX_ELEMENTS, AttentionPlan, plan_attention

# Manifest ``extra["tensorrt"]["stage"]`` values.
STAGE_PREPARED = "prepared"  # TensorRT-ready ONNX, runs in ONNX Runtime for verification
STAGE_ENGINE = "engine"  # serialised engine for one TensorRT version and GPU


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)``; non-numeric suffixes (``.post1``, ``rc``) are dropped."""
    parts = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ConfigError(f"cannot read TensorRT version {text!r}; expected e.g. 10.3.0")
    return tuple(parts)


def major(version: str) -> int:
    return parse_version(version)[0]


def parse_capability(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"8.7"`` or ``(8, 7)`` -> ``(8, 7)``."""
    if isinstance(text, (tuple, list)):
        return int(text[0]), int(text[1])
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    if not match:
        raise ConfigError(f"cannot read compute capability {text!r}; expected e.g. 8.7")
    return int(match.group(1)), int(match.group(2))


# -- optimisation profiles -------------------------------------------------------------------
def profile_from_input_spec(spec: dict[str, Any]) -> dict[str, list[int]]:
    """min/opt/max shapes of the network input, from a manifest input entry.

    A static input gives min = opt = max = its shape; a dynamic one needs the bounds that
    ``ExportContext.input_spec(bounded=True)`` writes (TensorRT cannot build without them).
    """
    shape = spec["shape"]
    if all(isinstance(d, int) and d > 0 for d in shape):
        return {"min": list(shape), "opt": list(shape), "max": list(shape)}
    missing = [k for k in ("min_shape", "opt_shape", "max_shape") if not spec.get(k)]
    if missing:
        raise ConfigError(
            f"the input {spec.get('name', 'input')!r} has dynamic dims {shape} but no {missing}: "
            "TensorRT needs an optimisation profile; re-prepare with --min-size/--max-size/--max-batch"
        )
    profile = {"min": list(spec["min_shape"]), "opt": list(spec["opt_shape"]), "max": list(spec["max_shape"])}
    for axis in range(len(shape)):
        lo, mid, hi = profile["min"][axis], profile["opt"][axis], profile["max"][axis]
        if not 1 <= lo <= mid <= hi:
            raise ConfigError(
                f"optimisation profile axis {axis} must satisfy 1 <= min <= opt <= max, got "
                f"{lo}, {mid}, {hi}; check --min-size, --input-size and --max-size"
            )
    return profile


# -- the 2^31 - 1 element limit --------------------------------------------------------------
def check_attention_limit(
    max_shape: list[int] | tuple[int, ...],
    chunks: int,
    output_stride: int,
    feature_channels: int,
    precision: str = "fp32",
) -> AttentionPlan:
    """Refuse a build whose largest profile shape makes a tensor above 2^31 - 1 elements.

    Returns the plan when it fits. Otherwise the :class:`ConfigError` says how many attention
    chunks the size needs and the largest input of the same aspect ratio the bundle's chunking
    supports, and points to --attention-chunks / --attention-memory.
    """
    batch, _, h, w = (int(d) for d in max_shape)
    plan = plan_attention((h, w), batch, precision, output_stride, feature_channels, chunks=chunks)
    if plan.fits_tensorrt:
        return plan
    needed = minimum_chunks(max_shape, output_stride, feature_channels, precision)
    fit_h, fit_w = largest_fitting_size((h, w), batch, chunks, output_stride, feature_channels, precision)
    raise ConfigError(
        f"the maximum profile shape {batch}x3x{h}x{w} gives a position-attention tensor of "
        f"{plan.largest_tensor_elements:,} elements with {chunks} chunk(s), above TensorRT's limit of "
        f"{TENSORRT_MAX_ELEMENTS:,}; with {chunks} chunk(s) the largest input of this aspect ratio that fits is "
        f"{batch}x3x{fit_h}x{fit_w}. Re-prepare the bundle with --attention-chunks {needed} or more (or a "
        f"smaller --attention-memory), or lower --max-size/--max-batch"
    )


def minimum_chunks(
    max_shape: list[int] | tuple[int, ...], output_stride: int, feature_channels: int, precision: str = "fp32"
) -> int:
    """The fewest position-attention query chunks that keep ``max_shape`` under the element limit."""
    batch, _, h, w = (int(d) for d in max_shape)
    n = plan_attention((h, w), batch, precision, output_stride, feature_channels, chunks=1).positions
    chunks = max(1, math.ceil(batch * n * n / TENSORRT_MAX_ELEMENTS))
    while (
        chunks < n
        and not plan_attention((h, w), batch, precision, output_stride, feature_channels, chunks=chunks).fits_tensorrt
    ):
        chunks += 1
    return chunks


def largest_fitting_size(
    size: tuple[int, int], batch: int, chunks: int, output_stride: int, feature_channels: int, precision: str = "fp32"
) -> tuple[int, int]:
    """The largest (H, W), multiples of ``output_stride`` with ``size``'s aspect ratio, that fits."""
    h, w = size
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection on the scale factor; the plan is monotonic in the size
        mid = (lo + hi) / 2
        mh = max(output_stride, int(h * mid) // output_stride * output_stride)
        mw = max(output_stride, int(w * mid) // output_stride * output_stride)
        if plan_attention((mh, mw), batch, precision, output_stride, feature_channels, chunks=chunks).fits_tensorrt:
            lo = mid
        else:
            hi = mid
    return (
        max(output_stride, int(h * lo) // output_stride * output_stride),
        max(output_stride, int(w * lo) // output_stride * output_stride),
    )


# -- engine compatibility --------------------------------------------------------------------
def check_engine_compatibility(engine_info: dict[str, Any], running: dict[str, Any]) -> list[str]:
    """Raise :class:`EngineCompatibilityError` unless the engine can run in ``running``.

    Args:
        engine_info: the engine manifest's ``extra["tensorrt"]`` (``version``, ``compute_capability``,
            ``gpu``, optional ``version_compatible``, ``hardware_compatibility``, ``dla_core``).
        running: ``{"tensorrt": "10.3.0", "compute_capability": "8.7", "gpu": "Orin",
            "dla_cores": 2}``.
    Returns:
        warnings that do not prevent loading (same architecture, different GPU model).

    TensorRT's rules: an engine runs only with the TensorRT version that built it, unless it was
    built version-compatible (then any later version of the same major); and only on GPUs of the
    compute capability it was built for, unless built hardware-compatible (Ampere and later).
    """
    if engine_info.get("stage") != STAGE_ENGINE:
        raise EngineCompatibilityError(
            f"this artifact is a TensorRT bundle at stage {engine_info.get('stage')!r}, not an engine; build the "
            "engine on the target device with: danet-export --target tensorrt --from BUNDLE_DIR --output ENGINE_DIR"
        )
    notes: list[str] = []
    built, have = engine_info.get("version"), running.get("tensorrt")
    if not built:
        raise EngineCompatibilityError(
            "the engine manifest does not record the TensorRT version that built it; "
            "rebuild the engine with danet-export --target tensorrt --from BUNDLE_DIR"
        )
    if not have:
        raise BackendUnavailableError(
            "TensorRT is not installed here (pip install tensorrt, or use JetPack's "
            f"python3-libnvinfer); the engine needs TensorRT {built}"
        )
    b, r = parse_version(built)[:3], parse_version(have)[:3]
    if engine_info.get("version_compatible"):
        if b[0] != r[0] or r < b:
            raise EngineCompatibilityError(
                f"the engine was built version-compatible with TensorRT {built}: it runs on TensorRT {b[0]}.x at "
                f">= {built}, but this machine has {have}; rebuild it here from the bundle (danet-export --target "
                "tensorrt --from BUNDLE_DIR)"
            )
    elif b != r:
        raise EngineCompatibilityError(
            f"the engine was built with TensorRT {built} but this machine has TensorRT {have}; engines only load in "
            "the TensorRT version that built them. Rebuild it here from the bundle (danet-export --target tensorrt "
            f"--from BUNDLE_DIR), or install TensorRT {'.'.join(map(str, b))}"
        )
    cap_built, cap_have = engine_info.get("compute_capability"), running.get("compute_capability")
    if not cap_have:
        raise BackendUnavailableError(
            "no CUDA GPU was found (or its compute capability could not be read); the "
            f"engine needs an NVIDIA GPU of compute capability {cap_built}"
        )
    if cap_built:
        cb, ch = parse_capability(cap_built), parse_capability(cap_have)
        level = str(engine_info.get("hardware_compatibility") or "none").lower()
        if level in ("ampere_plus", "ampere+"):
            if ch < (8, 0):
                raise EngineCompatibilityError(
                    f"the engine was built hardware-compatible for Ampere and later (compute capability >= 8.0) but "
                    f"this GPU ({running.get('gpu', '?')}) has {cap_have}; rebuild it here from the bundle"
                )
        elif cb != ch:
            raise EngineCompatibilityError(
                f"the engine was built for compute capability {cap_built} ({engine_info.get('gpu', '?')}) but this GPU "
                f"({running.get('gpu', '?')}) has {cap_have}; engines are specific to a GPU architecture. Rebuild it "
                "here from the bundle (danet-export --target tensorrt --from BUNDLE_DIR)"
            )
        elif engine_info.get("gpu") and running.get("gpu") and engine_info["gpu"] != running["gpu"]:
            notes.append(
                f"engine built on {engine_info['gpu']}, running on {running['gpu']} (same compute capability "
                f"{cap_have}): it loads, but tactics were timed on the other GPU; rebuild for best speed"
            )
    dla = engine_info.get("dla_core")
    if dla is not None and int(running.get("dla_cores") or 0) <= int(dla):
        raise EngineCompatibilityError(
            f"the engine runs on DLA core {dla}, but this device has {running.get('dla_cores') or 0} DLA core(s); "
            "use it on a Jetson with DLA, or rebuild without --dla-core"
        )
    return notes


# -- DLA and hardware compatibility: refused before any build ----------------------------------
DLA_PRECISIONS = ("fp16", "int8")
DLA_MAX_BATCH = 4096  # TensorRT's DLA restrictions: batch <= 4096,
DLA_MAX_DIM = 8192  # every non-batch dimension <= 8192
DLA_LAST_10 = (10, 7)  # "TensorRT 10.7 was the last 10.x release that supported DLA"
DLA_RETURNED = (11, 4, 1)  # DLA on Jetson AGX Orin came back in TensorRT 11.4.1 (JetPack >= 7.2.2)


def check_dla_request(
    dla_core: int | str | None,
    precision: str,
    profile: dict[str, list[int]] | None,
    tensorrt_version: str | None = None,
    hardware_compatible: bool = False,
) -> None:
    """Refuse a ``--dla-core`` build that cannot run on DLA, before anything is built.

    DLA computes in FP16 or INT8 only and has no dynamic shapes (TensorRT: "the profile's min,
    max and opt values must be equal"); with GPU fallback such a build would silently run on the
    GPU while the manifest says DLA. Plain arguments (precision and profile from the bundle's
    manifest) so the check runs, and is tested, without TensorRT. ``tensorrt_version`` adds the
    releases NVIDIA documents without DLA on Jetson: 10.8 through 11.4.0.
    """
    if dla_core is None:
        return
    try:
        core = int(dla_core)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--dla-core must be a DLA core number (0 or 1 on Jetson AGX Orin), got {dla_core!r}"
        ) from None
    if core < 0:
        raise ConfigError(f"--dla-core must be 0 or more, got {core}")
    if precision not in DLA_PRECISIONS:
        raise ConfigError(
            f"DLA runs FP16 and INT8 only, this bundle is {precision}: with --dla-core it would run on "
            "the GPU while the manifest says DLA. Prepare an FP16 or INT8 bundle (danet-export --target "
            "tensorrt --precision fp16|int8), or leave --dla-core out to build for the GPU"
        )
    if profile:
        if not (profile["min"] == profile["opt"] == profile["max"]):
            raise ConfigError(
                f"DLA has no dynamic shapes, but this bundle's profile is {describe_profile(profile)}: "
                "prepare a static bundle at the deployment size (danet-export --target tensorrt without "
                "--dynamic, --input-size HxW --batch N), or leave --dla-core out to build for the GPU"
            )
        shape = [int(d) for d in profile["max"]]
        if shape[0] > DLA_MAX_BATCH or any(d > DLA_MAX_DIM for d in shape[1:]):
            raise ConfigError(
                f"DLA supports batch <= {DLA_MAX_BATCH} and dimensions <= {DLA_MAX_DIM}, the input is "
                f"{'x'.join(map(str, shape))}; use a smaller --input-size/--batch or build for the GPU"
            )
    if hardware_compatible:
        raise ConfigError(
            "hardware-compatible engines (AMPERE_PLUS) are a GPU feature; drop --option "
            "hardware_compatible or --dla-core"
        )
    if tensorrt_version:
        version = parse_version(tensorrt_version)
        if version[:2] > DLA_LAST_10 and version[:3] < DLA_RETURNED:
            raise ConfigError(
                f"TensorRT {tensorrt_version} has no DLA support on Jetson (10.7 was the last 10.x with "
                "DLA; it is back in 11.4.1 with JetPack >= 7.2.2 on Jetson AGX Orin; Jetson Thor has no "
                "DLA). Use JetPack 6's TensorRT 10.x or TensorRT >= 11.4.1, or leave --dla-core out"
            )


def check_hardware_compatible_build(capability: str | tuple[int, int], gpu: str = "this GPU") -> None:
    """``AMPERE_PLUS`` engines are built on, and run on, compute capability >= 8.0 only."""
    if parse_capability(capability) < (8, 0):
        raise ConfigError(
            f"hardware-compatible (AMPERE_PLUS) engines need a build GPU of compute capability >= 8.0 "
            f"(Ampere or later), {gpu} has {capability}; build on an Ampere-or-later GPU or drop "
            "--option hardware_compatible"
        )


_DLA_WORD = re.compile(r"(?<![A-Za-z])(DLA|Dla|dla)(?![a-z])")  # "DLA", "DlaLayer", "dla_0"; not "middlayer"


def count_dla_layers(engine_information: str | dict[str, Any]) -> dict[str, int]:
    """``{"layers": n, "dla_layers": k}`` from the engine inspector's JSON (``LayerInformationFormat.JSON``).

    With ``ProfilingVerbosity.DETAILED`` each layer is an object whose ``LayerType`` (and for
    DLA subgraphs the name and tactic) says DLA; with names only each layer is a string. A layer
    counts as DLA when one of those fields names DLA. Built on TensorRT's documented advice
    ("verify DLA layer assignments in the engine inspector output"), not yet checked on a Jetson.
    """
    import json

    info = json.loads(engine_information) if isinstance(engine_information, str) else engine_information
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    dla = 0
    for layer in layers:
        # a detailed-verbosity layer is a dict; a layer-names-only one is its name
        fields = (
            [layer.get(k) for k in ("LayerType", "Name", "TacticName", "Metadata")]
            if isinstance(layer, dict)
            else [layer]
        )
        if any(isinstance(f, str) and _DLA_WORD.search(f) for f in fields):
            dla += 1
    return {"layers": len(layers), "dla_layers": dla}


def describe_profile(profile: dict[str, list[int]]) -> str:
    def fmt(shape: Any) -> str:
        return "x".join(str(d) for d in shape)

    return f"min {fmt(profile['min'])}, opt {fmt(profile['opt'])}, max {fmt(profile['max'])}"
