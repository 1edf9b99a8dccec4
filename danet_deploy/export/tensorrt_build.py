"""Build a TensorRT engine from a prepared bundle, on the device (TensorRT + NVIDIA GPU).

The bundle's ONNX already carries every precision decision (FP16 casts, Q/DQ), so the build is
*strongly typed* wherever TensorRT supports it (10.x, and the only mode in 11): the engine follows
the precision policy exactly. On TensorRT 10, ``strongly_typed=False`` instead sets the FP16/INT8
builder flags (TensorRT then picks per-layer precision itself), and ``legacy_calibrator``
builds from the bundle's FP32 graph with ``IInt8EntropyCalibrator2`` (deprecated since 10.1,
removed in 11). Every build setting arrives as the ``--target tensorrt`` options dataclass
(:class:`~danet_deploy.targets.builtin.TensorRTOptions`), parsed once; the manifest still records
the setting under its historical key ``legacy_int8_calibrator``. The engine file is the plain
serialised plan (nothing prefixed, so ``trtexec --loadEngine`` reads it); its facts go to
``manifest.json`` beside it. No torch here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, ExportError
from ..inputs import to_nchw
from ..manifest import (
    ExportInfo,
    Manifest,
    artifact_checkpoint,
    artifact_path,
    atomic_artifact_dir,
    carry_checkpoint,
    read_manifest,
)
from ..planner import parse_bytes
from ..targets.builtin import TensorRTOptions
from ..tensorrt.compat import (
    STAGE_ENGINE,
    STAGE_PREPARED,
    check_attention_limit,
    check_dla_request,
    check_hardware_compatible_build,
    count_dla_layers,
    describe_profile,
    major,
)
from ..tensorrt.cuda import CUDA_PYTHON_PINS
from ..tensorrt.logger import shared_logger
from ..util.artifact_dir import check_output_dir
from ..util.files import atomic_write_bytes
from ..util.progress import progress_bar

ENGINE_FILE = "model.engine"
LEGACY_ONNX = "model_fp32.onnx"  # only in bundles prepared with legacy_calibrator
LEGACY_CALIBRATION = "calibration.npy"  # float32 NCHW, read with allow_pickle=False
# Builder flags for weakly typed builds (TensorRT 10 only; 11 removed them: strongly typed only)
PRECISION_FLAGS: dict[str, tuple[str, ...]] = {"fp16": ("FP16",), "int8": ("INT8", "FP16")}


def _print(message: str) -> None:
    print(f"[danet-export] {message}", file=sys.stderr, flush=True)


def require_tensorrt(device: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """``(tensorrt, cudart, gpu facts)`` or a :class:`BackendUnavailableError` that says what is missing.

    Also makes ``device`` the current CUDA device: TensorRT builds on the current device, so
    without ``cudaSetDevice`` a ``--device 1`` build would run (and be timed) on GPU 0 while the
    manifest names GPU 1.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "building a TensorRT engine needs TensorRT and an NVIDIA GPU: pip install tensorrt "
            f"'{CUDA_PYTHON_PINS[12]}' (CUDA 12 hosts; '{CUDA_PYTHON_PINS[13]}' on CUDA 13 hosts, driver >= 580) on "
            "an x86 machine with a GPU, or use JetPack's TensorRT on a Jetson; then run danet-export --target "
            f"tensorrt --from BUNDLE_DIR there ({exc})"
        ) from exc
    from ..tensorrt.cuda import check, device_properties, load_cudart

    cudart = load_cudart()
    gpu = device_properties(cudart, device)  # a missing device is a clear error before cudaSetDevice
    check(cudart, cudart.cudaSetDevice(int(device)), f"cudaSetDevice({device})")
    return trt, cudart, gpu


def _progress_monitor(trt: Any, log: Callable[[str], None]) -> Any:
    """A ``trt.IProgressMonitor`` (TensorRT >= 10) printing build phases to stderr, else ``None``."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = depth
            bar = progress_bar(
                total=num_steps, desc="  " * depth + phase_name, position=depth, leave=depth == 0, dynamic_ncols=False
            )
            if bar is not None:
                self.bars[phase_name] = bar
            elif depth == 0:
                log(f"TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.n = step + 1
                bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return _Monitor()


def calibration_batches(tensors: np.ndarray, shape: list[int] | tuple[int, ...]) -> list[np.ndarray]:
    """Full calibration batches of exactly ``shape`` (the network input, or the profile's opt shape).

    TensorRT reads ``prod(shape)`` floats from the pointer ``get_batch`` returns, whatever
    ``get_batch_size`` says, so every batch must be whole: a remainder smaller than the batch is
    dropped, fewer samples than one batch or other C/H/W is a :class:`ConfigError`.
    """
    shape = tuple(int(d) for d in shape)
    tensors = np.asarray(tensors)
    if tensors.ndim != 4 or tuple(tensors.shape[1:]) != shape[1:]:
        raise ConfigError(
            f"the calibration tensors are {tuple(tensors.shape)} but TensorRT calibrates at "
            f"{'x'.join(map(str, shape))}; re-prepare the bundle with --legacy-calibrator at the "
            "profile's opt size (--input-size)"
        )
    batch = shape[0]
    if len(tensors) < batch:
        raise ConfigError(
            f"{len(tensors)} calibration sample(s) cannot fill one batch of {batch}; re-prepare with "
            f"--calib-count {batch} or more"
        )
    usable = len(tensors) // batch * batch
    return [np.ascontiguousarray(tensors[i : i + batch], dtype=np.float32) for i in range(0, usable, batch)]


def _entropy_calibrator(
    trt: Any, cudart: Any, tensors: np.ndarray, cache_file: Path, shape: list[int] | tuple[int, ...]
) -> Any:
    """Legacy ``IInt8EntropyCalibrator2`` feeding full batches of ``shape`` (TensorRT <= 10).

    The device buffer is freed by ``_free()`` once the build is over (``build_engine`` does it).
    """
    from ..tensorrt.cuda import DeviceBuffer, check

    batches = calibration_batches(tensors, shape)

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.batches = batches
            self.buffer = DeviceBuffer(cudart)

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            ptr = self.buffer.ensure(batch.nbytes)
            check(
                cudart,
                cudart.cudaMemcpy(ptr, batch.ctypes.data, batch.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                "cudaMemcpy(calibration)",
            )
            return [ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            atomic_write_bytes(cache_file, memoryview(data))

        def _free(self) -> None:  # ours, not a TensorRT override (hence the underscore)
            self.buffer.free()

    return _Calibrator()


def dla_placement(trt: Any, logger: Any, plan: Any, dla_core: int) -> dict[str, int]:
    """How many of the built engine's layers run on DLA, from the engine inspector."""
    runtime = trt.Runtime(logger)
    runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ExportError("TensorRT could not deserialise the engine it just built to inspect its DLA layers")
    inspector = engine.create_engine_inspector()
    return count_dla_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def _check_build_request(
    trt: Any, gpu: dict[str, Any], precision: str, profile: dict[str, list[int]], options: TensorRTOptions
) -> bool:
    """Refuse what this TensorRT cannot build before a builder exists; return whether the build is
    strongly typed.

    Why before: a builder takes GPU memory and the parse takes seconds; a DLA request on TensorRT
    11, a hardware-compatible engine on a pre-Ampere GPU, or a weakly typed build where TensorRT
    removed the builder flags are known from the version and the GPU alone. Strongly typed is
    the default except for the legacy calibrator, which needs the INT8 builder flag.
    """
    version = str(trt.__version__)
    trt_major = major(version)
    legacy = options.legacy_calibrator
    check_dla_request(
        options.dla_core, precision, profile, tensorrt_version=version, hardware_compatible=options.hardware_compatible
    )
    if options.hardware_compatible:
        check_hardware_compatible_build(gpu["compute_capability"], gpu["gpu"])
    strongly_typed = not legacy if options.strongly_typed is None else options.strongly_typed
    if trt_major >= 11 and not strongly_typed:
        raise ConfigError(
            f"TensorRT {version} builds strongly typed networks only (BuilderFlag.FP16/INT8 and the "
            "INT8 calibrators were removed in 11); use the prepared FP16/Q-DQ bundle as it is"
        )
    if legacy and (trt_major >= 11 or not hasattr(trt, "IInt8EntropyCalibrator2")):
        raise ConfigError(
            f"TensorRT {version} has no implicit INT8 calibrators; build the Q/DQ bundle without --legacy-calibrator"
        )
    if strongly_typed and not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise ConfigError(
            f"TensorRT {version} cannot build strongly typed networks; upgrade to TensorRT >= 10 or "
            "pass --option strongly_typed=false"
        )
    return strongly_typed


def _parse_network(
    trt: Any,
    builder: Any,
    logger: Any,
    onnx_path: Path,
    strongly_typed: bool,
    gpu: dict[str, Any],
    log: Callable[[str], None],
) -> Any:
    """The network parsed from ``onnx_path`` (strongly typed: the ONNX's casts and Q/DQ decide each
    layer's precision). A parser error names the file and says to re-prepare: the bundle's ONNX
    was written by danet-export, so a rejection means a version mismatch, not a user mistake."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log(f"TensorRT {trt.__version__}: parsing {onnx_path.name} on {gpu['gpu']} (sm {gpu['compute_capability']})")
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ExportError(
            f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or 'no details'}; "
            "re-prepare the bundle with this danet-deploy version"
        )
    return network


def _add_profile(
    trt: Any, builder: Any, config: Any, network: Any, profile: dict[str, list[int]], legacy: bool
) -> tuple[int, ...]:
    """Add the bundle's optimisation profile when the input has dynamic dims; return the input dims.

    A static input needs none (TensorRT refuses a profile that disagrees with it). The legacy
    calibrator calibrates at the calibration profile's opt shape, so that profile is set too.
    """
    dims = tuple(int(d) for d in network.get_input(0).shape)
    if any(d < 0 for d in dims):
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(network.get_input(0).name, profile["min"], profile["opt"], profile["max"])
        config.add_optimization_profile(opt_profile)
        if legacy and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(opt_profile)
    return dims


def _set_precision_flags(trt: Any, config: Any, precision: str, strongly_typed: bool) -> list[str]:
    """The FP16/INT8 builder flags of a weakly typed build (TensorRT 10 picks per-layer precision
    within them); none for a strongly typed one, whose ONNX already says. Returns the flags set."""
    if strongly_typed:
        return []
    wanted = list(PRECISION_FLAGS.get(precision, ()))
    for flag in wanted:
        if not hasattr(trt.BuilderFlag, flag):
            raise ConfigError(f"TensorRT {trt.__version__} has no BuilderFlag.{flag}; build strongly typed instead")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    return wanted


def _attach_calibrator(
    trt: Any,
    cudart: Any,
    config: Any,
    dims: tuple[int, ...],
    profile: dict[str, list[int]],
    tensors: np.ndarray | None,
    cache_file: Path,
) -> Any:
    """The legacy entropy calibrator on ``config``, fed whole batches of the calibration shape.

    The shape is the static input's own, or the calibration profile's opt shape for a dynamic
    one, because TensorRT reads exactly that many floats per batch. The caller frees its device
    buffer after the build (``_serialize``)."""
    if not hasattr(config, "int8_calibrator"):
        raise ConfigError(
            f"TensorRT {trt.__version__} has no IBuilderConfig.int8_calibrator; build the Q/DQ bundle "
            "without --legacy-calibrator"
        )
    if tensors is None:
        raise ConfigError(
            "the legacy calibrator needs the bundle's calibration tensors; build it with "
            "danet-export --target tensorrt --from BUNDLE_DIR"
        )
    calib_shape = list(dims) if all(d > 0 for d in dims) else list(profile["opt"])
    calibrator = _entropy_calibrator(trt, cudart, tensors, cache_file, calib_shape)
    config.int8_calibrator = calibrator
    return calibrator


def _place_on_dla(trt: Any, builder: Any, config: Any, network: Any, dla_core: int, log: Callable[[str], None]) -> int:
    """Build for DLA core ``dla_core`` with GPU fallback; return how many network layers can run there.

    The core must exist on this device (Orin has two); detailed profiling verbosity lets the
    engine inspector say afterwards where each layer landed (:func:`_dla_facts`)."""
    available = int(getattr(builder, "num_DLA_cores", 0))
    if dla_core >= available:
        raise ConfigError(
            f"--dla-core {dla_core} does not exist: this device has {available} DLA core(s) "
            f"(Jetson AGX/NX Orin: 0..1); leave --dla-core out to build for the GPU"
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dla_capable = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(network.num_layers))
    log(f"DLA core {dla_core} with GPU fallback: {dla_capable} of {network.num_layers} network layers can run on DLA")
    return dla_capable


def _set_hardware_compatibility(trt: Any, config: Any) -> None:
    """An Ampere+ hardware-compatible engine (runs on any Ampere or newer GPU, at some speed cost)."""
    if not hasattr(config, "hardware_compatibility_level"):
        raise ConfigError(
            f"TensorRT {trt.__version__} cannot build hardware-compatible engines; drop --option hardware_compatible"
        )
    config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS


def _use_timing_cache(config: Any, timing_cache: str | None, log: Callable[[str], None]) -> Path | None:
    """Read the timing cache file (if it exists) into ``config``; return its path to write back.

    A cache from another TensorRT or GPU is refused (``ignore_mismatch=False``) rather than
    silently ignored, so a stale cache never makes a build slower without saying so."""
    if not timing_cache:
        return None
    cache_path = Path(timing_cache)
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ExportError(
            f"TensorRT rejected the timing cache {cache_path} (from another TensorRT version or "
            "GPU?); delete it or pass another --timing-cache"
        )
    log(f"timing cache {cache_path} ({'read ' + str(len(cache_bytes)) + ' bytes' if cache_bytes else 'new'})")
    return cache_path


def _serialize(
    builder: Any, network: Any, config: Any, calibrator: Any, engine_path: Path, log: Callable[[str], None]
) -> tuple[Any, float]:
    """Build and write the plan to ``engine_path`` atomically; return ``(plan, seconds)``.

    The calibrator's device buffer is freed whether or not the build succeeds; a failed build
    (TensorRT returns ``None``) names the usual fixes."""
    started = time.perf_counter()
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator._free()  # the calibration batches' device buffer
    if plan is None:
        raise ExportError(
            "TensorRT failed to build the engine (see the TensorRT log above); common fixes: a larger "
            "--workspace, a smaller --max-size/--max-batch, or more --attention-chunks"
        )
    seconds = time.perf_counter() - started
    atomic_write_bytes(engine_path, memoryview(plan))
    log(f"engine {engine_path.name}: {engine_path.stat().st_size / 2**20:.1f} MiB in {seconds:.0f} s")
    return plan, seconds


def _dla_facts(
    trt: Any, logger: Any, plan: Any, dla_core: int, dla_capable: int, strongly_typed: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Where the built engine's layers run (from the engine inspector), for the manifest and a warning
    when none landed on DLA. An inspection failure leaves the count unknown rather than failing a
    build that succeeded."""
    try:
        placement: dict[str, Any] = dla_placement(trt, logger, plan, dla_core)
    except Exception as exc:
        log(
            f"WARNING: could not inspect the engine's DLA layers ({exc}); check with trtexec --loadEngine "
            f"--useDLACore={dla_core} --dumpLayerInfo --profilingVerbosity=detailed"
        )
        placement = {"dla_layers": None, "layers": None}
    if placement["dla_layers"] == 0:
        weak_hint = major(str(trt.__version__)) < 11 and strongly_typed
        log(
            f"WARNING: no layer of the engine runs on DLA core {dla_core} (all fell back to the GPU; "
            f"{dla_capable} network layers were DLA-capable)"
            + ("; on TensorRT 10 try a weakly typed build: --option strongly_typed=false" if weak_hint else "")
        )
    elif placement["dla_layers"] is not None:
        log(f"{placement['dla_layers']} of {placement['layers']} engine layers run on DLA core {dla_core}")
    return {
        "dla_layers": placement["dla_layers"],
        "engine_layers": placement["layers"],
        "dla_capable_network_layers": dla_capable,
    }


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: dict[str, list[int]],
    precision: str,
    options: TensorRTOptions | None = None,
    *,
    input_name: str = "input",
    calibrator_tensors: np.ndarray | None = None,
    calibration_cache: Path | None = None,
    log: Callable[[str], None] = _print,
) -> dict[str, Any]:
    """Parse ``onnx_path``, build with one optimisation profile and write the plan to ``engine_path``.

    ``options``: the ``--target tensorrt`` options as parsed (device, workspace, DLA core, timing
    cache, strongly typed, hardware compatibility, legacy calibrator), read here as they are.
    ``calibrator_tensors``: the legacy calibrator's float32 NCHW samples (``legacy_calibrator``
    only). Returns the engine facts for the manifest (``extra["tensorrt"]``).
    """
    options = options if options is not None else TensorRTOptions()
    legacy = options.legacy_calibrator
    trt, cudart, gpu = require_tensorrt(options.device)
    strongly_typed = _check_build_request(trt, gpu, precision, profile, options)
    logger = shared_logger(trt)
    builder = trt.Builder(logger)
    network = _parse_network(trt, builder, logger, onnx_path, strongly_typed, gpu, log)
    config = builder.create_builder_config()
    workspace = parse_bytes(options.workspace) if options.workspace is not None else None
    if workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    dims = _add_profile(trt, builder, config, network, profile, legacy)
    wanted = _set_precision_flags(trt, config, precision, strongly_typed)
    calibrator = (
        _attach_calibrator(
            trt,
            cudart,
            config,
            dims,
            profile,
            calibrator_tensors,
            calibration_cache or engine_path.with_name("calibration.cache"),
        )
        if legacy
        else None
    )
    dla_capable = (
        _place_on_dla(trt, builder, config, network, options.dla_core, log) if options.dla_core is not None else 0
    )
    if options.hardware_compatible:
        _set_hardware_compatibility(trt, config)
    cache_path = _use_timing_cache(config, options.timing_cache, log)
    monitor = _progress_monitor(trt, log)
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    log(
        f"building ({'strongly typed' if strongly_typed else 'builder flags'}, {precision}, "
        f"{describe_profile(profile)}); this takes minutes"
    )
    plan, seconds = _serialize(builder, network, config, calibrator, engine_path, log)
    if cache_path is not None:
        atomic_write_bytes(cache_path, memoryview(config.get_timing_cache().serialize()))
    dla = (
        _dla_facts(trt, logger, plan, options.dla_core, dla_capable, strongly_typed, log)
        if options.dla_core is not None
        else {}
    )
    return {
        **dla,
        "stage": STAGE_ENGINE,
        "version": str(trt.__version__),
        "gpu": gpu["gpu"],
        "compute_capability": gpu["compute_capability"],
        "precision": precision,
        "strongly_typed": strongly_typed,
        "builder_flags": wanted,
        "legacy_int8_calibrator": legacy,
        "profiles": [{"input": input_name, **profile}],
        "workspace": workspace,
        "dla_core": options.dla_core,
        "hardware_compatibility": "ampere_plus" if options.hardware_compatible else "none",
        "version_compatible": False,
        "timing_cache": str(cache_path) if cache_path else None,
        "build_seconds": round(seconds, 1),
    }


def bundle_build_options(options: TensorRTOptions | None = None, **values: Any) -> TensorRTOptions:
    """The options of a build from a bundle: ``options`` (parsed, e.g. ``danet-export --option``)
    with ``values`` laid over them, through the same parser (``dla_core="0"`` from a command line
    and ``0`` from Python alike; an unknown name is a :class:`ConfigError` naming the valid ones)."""
    if not values and options is not None:
        return options
    base = options.to_dict() if options is not None else {}
    return TensorRTOptions.parse({**base, **values}, "tensorrt")


def build_engine_from_bundle(
    bundle_dir: str | Path,
    output_dir: str | Path | None = None,
    options: TensorRTOptions | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = _print,
    **values: Any,
) -> Path:
    """``danet-export --target tensorrt --from BUNDLE_DIR``: build ``model.engine`` + manifest.

    Checks, in order, before any slow work: the bundle's manifest and hashes, that it is a
    prepared bundle, that its largest profile keeps every tensor under 2^31 - 1 elements with
    its attention chunking, that a ``dla_core`` request can run on DLA (FP16/INT8, static
    shapes), that legacy calibration tensors fill whole batches of the profile's opt shape, and
    that TensorRT and a GPU are present.

    Args:
        output_dir: engine folder (default: ``<bundle>-engine`` beside the bundle).
        options: the ``--target tensorrt`` options (:class:`~danet_deploy.targets.builtin.TensorRTOptions`);
            ``**values`` set single ones by name (``workspace="2GB"``, ``dla_core=0``,
            ``timing_cache=PATH``, ``legacy_calibrator=True`` for a bundle prepared with
            ``--legacy-calibrator``, ...), parsed as ``--option`` values are.
    """
    options = bundle_build_options(options, **values)
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    info = manifest.extra.get("tensorrt", {})
    if manifest.target != "tensorrt" or info.get("stage") != STAGE_PREPARED:
        raise ConfigError(
            f"{bundle} is not a prepared TensorRT bundle (target {manifest.target!r}, stage "
            f"{info.get('stage')!r}); prepare one with danet-export --target tensorrt --precision ..."
        )
    legacy = options.legacy_calibrator
    profile = {k: list(v) for k, v in info["profiles"][0].items() if k in ("min", "opt", "max")}
    attention = info["attention"]
    plan = check_attention_limit(
        to_nchw(profile["max"], manifest.input.layout),
        attention["chunks"],
        attention["output_stride"],
        attention["feature_channels"],
    )
    check_dla_request(options.dla_core, manifest.precision, profile, hardware_compatible=options.hardware_compatible)
    log(f"bundle {bundle}: {manifest.precision}, {describe_profile(profile)}; {plan.summary()}")
    onnx_file = artifact_path(bundle, info.get("onnx", manifest.primary), "bundle ONNX")
    checkpoint = artifact_checkpoint(bundle, manifest)  # travels into the engine folder for its torch reference
    tensors = None
    if legacy:
        if manifest.precision != "int8":
            raise ConfigError("--legacy-calibrator applies to INT8 bundles only")
        if not (bundle / LEGACY_ONNX).is_file() or not (bundle / LEGACY_CALIBRATION).is_file():
            raise ConfigError(
                f"{bundle} has no {LEGACY_ONNX}/{LEGACY_CALIBRATION}: re-prepare it with "
                "danet-export --target tensorrt --precision int8 --legacy-calibrator"
            )
        tensors = np.load(artifact_path(bundle, LEGACY_CALIBRATION), allow_pickle=False)
        calibration_batches(tensors, profile["opt"])  # whole batches of the calibration shape, or a clear error
        onnx_file = artifact_path(bundle, LEGACY_ONNX)
    out = check_output_dir(Path(output_dir) if output_dir else bundle.with_name(f"{bundle.name}-engine"), force)
    require_tensorrt(options.device)  # fail fast, before the output folder is created
    with atomic_artifact_dir(out, force=force, log=log) as work:
        facts = build_engine(
            onnx_file,
            work / ENGINE_FILE,
            profile,
            manifest.precision,
            options,
            input_name=manifest.input.name,
            calibrator_tensors=tensors,
            calibration_cache=(work / "calibration.cache") if legacy else None,
            log=log,
        )
        facts.update(
            calibration_hash=info.get("calibration_hash"),
            attention=attention,
            policy=info.get("policy"),
            bundle={"path": str(bundle), "onnx_sha256": manifest.files.get(onnx_file.name)},
        )
        if checkpoint is not None:
            assert manifest.checkpoint is not None, "artifact_checkpoint returns a path only for a recorded checkpoint"
            carry_checkpoint(checkpoint, manifest.checkpoint, work)
        engine_manifest = engine_manifest_from_bundle(manifest, facts)
        engine_manifest.hash_files(work)
        engine_manifest.write(work)
    log(f"wrote {out}")
    return out


def engine_manifest_from_bundle(bundle: Manifest, facts: dict[str, Any]) -> Manifest:
    """The engine's manifest: the bundle's model facts, backend ``tensorrt``, the build facts."""
    from importlib import metadata

    tools = dict(bundle.tools)
    tools["tensorrt"] = facts["version"]
    with contextlib.suppress(metadata.PackageNotFoundError):
        tools["cuda-python"] = metadata.version("cuda-python")
    return Manifest(
        target="tensorrt",
        backend="tensorrt",
        precision=bundle.precision,
        primary=ENGINE_FILE,
        model=bundle.model,
        preprocessing=bundle.preprocessing,
        input=bundle.input,
        output=bundle.output,
        tools=tools,
        export=ExportInfo.from_dict({**bundle.export.to_dict(), "built_from": facts["bundle"]}),
        checkpoint=bundle.checkpoint,
        calibration=bundle.calibration,
        parity=None,
        extra={**bundle.extra, "tensorrt": facts},
    )
