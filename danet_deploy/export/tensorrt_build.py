"""Build a TensorRT engine from a prepared bundle, on the device (TensorRT + NVIDIA GPU).

The bundle's ONNX already carries every precision decision (FP16 casts, Q/DQ), so the build is
*strongly typed* wherever TensorRT supports it (10.x, and the only mode in 11): the engine follows
the precision policy exactly. On TensorRT 10, ``strongly_typed=False`` instead sets the FP16/INT8
builder flags (TensorRT then picks per-layer precision itself), and ``legacy_int8_calibrator``
builds from the bundle's FP32 graph with ``IInt8EntropyCalibrator2`` (deprecated since 10.1,
removed in 11). The engine file is the plain serialised plan (nothing prefixed, so ``trtexec
--loadEngine`` reads it); its facts go to ``manifest.json`` beside it. No torch here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact_dir import check_output_dir
from ..errors import BackendUnavailableError, ConfigError, ExportError
from ..files import atomic_write_bytes
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
from ..progress import progress_bar
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

ENGINE_FILE = "model.engine"
LEGACY_ONNX = "model_fp32.onnx"          # only in bundles prepared with legacy_calibrator
LEGACY_CALIBRATION = "calibration.npy"   # float32 NCHW, read with allow_pickle=False
# Builder flags for weakly typed builds (TensorRT 10 only; 11 removed them: strongly typed only)
PRECISION_FLAGS: dict[str, tuple[str, ...]] = {"fp16": ("FP16",), "int8": ("INT8", "FP16")}


def _print(message: str) -> None:
    print(f"[danet-export] {message}", file=sys.stderr, flush=True)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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
            f"tensorrt --from BUNDLE_DIR there ({exc})") from exc
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
            bar = progress_bar(total=num_steps, desc="  " * depth + phase_name, position=depth, leave=depth == 0,
                               dynamic_ncols=False)
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
        raise ConfigError(f"the calibration tensors are {tuple(tensors.shape)} but TensorRT calibrates at "
                          f"{'x'.join(map(str, shape))}; re-prepare the bundle with --legacy-calibrator at the "
                          "profile's opt size (--input-size)")
    batch = shape[0]
    if len(tensors) < batch:
        raise ConfigError(f"{len(tensors)} calibration sample(s) cannot fill one batch of {batch}; re-prepare with "
                          f"--calib-count {batch} or more")
    usable = len(tensors) // batch * batch
    return [np.ascontiguousarray(tensors[i:i + batch], dtype=np.float32) for i in range(0, usable, batch)]


def _entropy_calibrator(trt: Any, cudart: Any, tensors: np.ndarray, cache_file: Path,
                        shape: list[int] | tuple[int, ...]) -> Any:
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
            check(cudart, cudart.cudaMemcpy(ptr, batch.ctypes.data, batch.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy(calibration)")
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


def build_engine(onnx_path: Path, engine_path: Path, profile: dict[str, list[int]], precision: str,
                 input_name: str = "input", strongly_typed: bool | None = None, workspace: int | str | None = None,
                 dla_core: int | None = None, timing_cache: str | Path | None = None,
                 calibrator_tensors: np.ndarray | None = None, calibration_cache: Path | None = None,
                 hardware_compatible: bool = False, device: int = 0,
                 log: Callable[[str], None] = _print) -> dict[str, Any]:
    """Parse ``onnx_path``, build with one optimisation profile and write the plan to ``engine_path``.

    Returns the engine facts for the manifest (``extra["tensorrt"]``).
    """
    trt, cudart, gpu = require_tensorrt(device)
    version = str(trt.__version__)
    trt_major = major(version)
    check_dla_request(dla_core, precision, profile, tensorrt_version=version, hardware_compatible=hardware_compatible)
    if hardware_compatible:
        check_hardware_compatible_build(gpu["compute_capability"], gpu["gpu"])
    legacy = calibrator_tensors is not None
    if strongly_typed is None:
        strongly_typed = not legacy
    if trt_major >= 11 and not strongly_typed:
        raise ConfigError(f"TensorRT {version} builds strongly typed networks only (BuilderFlag.FP16/INT8 and the "
                          "INT8 calibrators were removed in 11); use the prepared FP16/Q-DQ bundle as it is")
    if legacy and (trt_major >= 11 or not hasattr(trt, "IInt8EntropyCalibrator2")):
        raise ConfigError(f"TensorRT {version} has no implicit INT8 calibrators; build the Q/DQ bundle without "
                          "--legacy-calibrator")
    if strongly_typed and not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise ConfigError(f"TensorRT {version} cannot build strongly typed networks; upgrade to TensorRT >= 10 or "
                          "pass --option strongly_typed=false")

    logger = shared_logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log(f"TensorRT {version}: parsing {onnx_path.name} on {gpu['gpu']} (sm {gpu['compute_capability']})")
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or 'no details'}; "
                          "re-prepare the bundle with this danet-deploy version")

    config = builder.create_builder_config()
    if workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, parse_bytes(workspace))
    dims = tuple(int(d) for d in network.get_input(0).shape)
    if any(d < 0 for d in dims):
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(network.get_input(0).name, profile["min"], profile["opt"], profile["max"])
        config.add_optimization_profile(opt_profile)
        if legacy and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(opt_profile)
    wanted = list(PRECISION_FLAGS.get(precision, ())) if not strongly_typed else []
    calibrator: Any = None
    dla_capable = 0
    if not strongly_typed:
        for flag in wanted:
            if not hasattr(trt.BuilderFlag, flag):
                raise ConfigError(f"TensorRT {version} has no BuilderFlag.{flag}; build strongly typed instead")
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if legacy:
        if not hasattr(config, "int8_calibrator"):
            raise ConfigError(f"TensorRT {version} has no IBuilderConfig.int8_calibrator; build the Q/DQ bundle "
                              "without --legacy-calibrator")
        calib_cache = calibration_cache or engine_path.with_name("calibration.cache")
        # static input: its own shape; dynamic: TensorRT calibrates at the calibration profile's opt shape
        calib_shape = list(dims) if all(d > 0 for d in dims) else list(profile["opt"])
        assert calibrator_tensors is not None, "build_engine_from_bundle loads the calibration tensors for legacy"
        calibrator = _entropy_calibrator(trt, cudart, calibrator_tensors, calib_cache, calib_shape)
        config.int8_calibrator = calibrator
    if dla_core is not None:
        available = int(getattr(builder, "num_DLA_cores", 0))
        if int(dla_core) >= available:
            raise ConfigError(f"--dla-core {dla_core} does not exist: this device has {available} DLA core(s) "
                              f"(Jetson AGX/NX Orin: 0..1); leave --dla-core out to build for the GPU")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        # DETAILED layer information lets the engine inspector say where each layer runs
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        dla_capable = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(network.num_layers))
        log(f"DLA core {dla_core} with GPU fallback: {dla_capable} of {network.num_layers} network layers can run "
            "on DLA")
    if hardware_compatible:
        if not hasattr(config, "hardware_compatibility_level"):
            raise ConfigError(f"TensorRT {version} cannot build hardware-compatible engines; drop "
                              "--option hardware_compatible")
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    if cache_path is not None:
        cache = config.create_timing_cache(cache_bytes)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise ExportError(f"TensorRT rejected the timing cache {cache_path} (from another TensorRT version or "
                              "GPU?); delete it or pass another --timing-cache")
        log(f"timing cache {cache_path} ({'read ' + str(len(cache_bytes)) + ' bytes' if cache_bytes else 'new'})")
    monitor = _progress_monitor(trt, log)
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor

    log(f"building ({'strongly typed' if strongly_typed else 'builder flags'}, {precision}, "
        f"{describe_profile(profile)}); this takes minutes")
    started = time.perf_counter()
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator._free()  # the calibration batches' device buffer
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above); common fixes: a larger "
                          "--workspace, a smaller --max-size/--max-batch, or more --attention-chunks")
    seconds = time.perf_counter() - started
    atomic_write_bytes(engine_path, memoryview(plan))
    if cache_path is not None:
        atomic_write_bytes(cache_path, memoryview(config.get_timing_cache().serialize()))
    log(f"engine {engine_path.name}: {engine_path.stat().st_size / 2**20:.1f} MiB in {seconds:.0f} s")
    dla: dict[str, Any] = {}
    if dla_core is not None:
        try:
            placement: dict[str, Any] = dla_placement(trt, logger, plan, dla_core)
        except Exception as exc:  # the engine is built; say that placement is unknown rather than fail it
            log(f"WARNING: could not inspect the engine's DLA layers ({exc}); check with trtexec --loadEngine "
                f"--useDLACore={dla_core} --dumpLayerInfo --profilingVerbosity=detailed")
            placement = {"dla_layers": None, "layers": None}
        dla = {"dla_layers": placement["dla_layers"], "engine_layers": placement["layers"],
               "dla_capable_network_layers": dla_capable}
        if placement["dla_layers"] is None:
            pass
        elif placement["dla_layers"] == 0:
            log(f"WARNING: no layer of the engine runs on DLA core {dla_core} (all fell back to the GPU; "
                f"{dla_capable} network layers were DLA-capable)"
                + ("; on TensorRT 10 try a weakly typed build: --option strongly_typed=false" if trt_major < 11
                   and strongly_typed else ""))
        else:
            log(f"{placement['dla_layers']} of {placement['layers']} engine layers run on DLA core {dla_core}")
    return {**dla, "stage": STAGE_ENGINE, "version": version, "gpu": gpu["gpu"],
            "compute_capability": gpu["compute_capability"], "precision": precision,
            "strongly_typed": bool(strongly_typed), "builder_flags": wanted,
            "legacy_int8_calibrator": legacy, "profiles": [{"input": input_name, **profile}],
            "workspace": parse_bytes(workspace) if workspace is not None else None, "dla_core": dla_core,
            "hardware_compatibility": "ampere_plus" if hardware_compatible else "none", "version_compatible": False,
            "timing_cache": str(cache_path) if cache_path else None, "build_seconds": round(seconds, 1)}


def build_engine_from_bundle(bundle_dir: str | Path, output_dir: str | Path | None = None,
                             workspace: int | str | None = None, dla_core: int | str | None = None,
                             timing_cache: str | Path | None = None, legacy_int8_calibrator: bool = False,
                             log: Callable[[str], None] = _print, device: int | str = 0,
                             strongly_typed: bool | str | None = None, hardware_compatible: bool | str = False,
                             legacy_calibrator: bool | None = None, force: bool = False) -> Path:
    """``danet-export --target tensorrt --from BUNDLE_DIR``: build ``model.engine`` + manifest.

    Checks, in order, before any slow work: the bundle's manifest and hashes, that it is a
    prepared bundle, that its largest profile keeps every tensor under 2^31 - 1 elements with
    its attention chunking, that a ``dla_core`` request can run on DLA (FP16/INT8, static
    shapes), that legacy calibration tensors fill whole batches of the profile's opt shape, and
    that TensorRT and a GPU are present.

    Args:
        output_dir: engine folder (default: ``<bundle>-engine`` beside the bundle).
        workspace: builder workspace limit (bytes or ``"2GB"``).
        dla_core: Jetson DLA core, with GPU fallback.
        timing_cache: file read if present and written back (atomically) after the build.
        legacy_int8_calibrator: TensorRT <= 10 only: build the bundle's FP32 graph with
            ``IInt8EntropyCalibrator2`` (bundle prepared with ``--legacy-calibrator``).
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    info = manifest.extra.get("tensorrt", {})
    if manifest.target != "tensorrt" or info.get("stage") != STAGE_PREPARED:
        raise ConfigError(f"{bundle} is not a prepared TensorRT bundle (target {manifest.target!r}, stage "
                          f"{info.get('stage')!r}); prepare one with danet-export --target tensorrt --precision ...")
    legacy = _truthy(legacy_calibrator) if legacy_calibrator is not None else _truthy(legacy_int8_calibrator)
    profile = {k: list(v) for k, v in info["profiles"][0].items() if k in ("min", "opt", "max")}
    attention = info["attention"]
    plan = check_attention_limit(to_nchw(profile["max"], manifest.input.layout), attention["chunks"],
                                 attention["output_stride"], attention["feature_channels"])
    check_dla_request(dla_core, manifest.precision, profile, hardware_compatible=_truthy(hardware_compatible))
    log(f"bundle {bundle}: {manifest.precision}, {describe_profile(profile)}; {plan.summary()}")
    onnx_file = artifact_path(bundle, info.get("onnx", manifest.primary), "bundle ONNX")
    checkpoint = artifact_checkpoint(bundle, manifest)  # travels into the engine folder for its torch reference
    tensors = None
    if legacy:
        if manifest.precision != "int8":
            raise ConfigError("--legacy-calibrator applies to INT8 bundles only")
        if not (bundle / LEGACY_ONNX).is_file() or not (bundle / LEGACY_CALIBRATION).is_file():
            raise ConfigError(f"{bundle} has no {LEGACY_ONNX}/{LEGACY_CALIBRATION}: re-prepare it with "
                              "danet-export --target tensorrt --precision int8 --legacy-calibrator")
        tensors = np.load(artifact_path(bundle, LEGACY_CALIBRATION), allow_pickle=False)
        calibration_batches(tensors, profile["opt"])  # whole batches of the calibration shape, or a clear error
        onnx_file = artifact_path(bundle, LEGACY_ONNX)
    device = int(device)
    out = check_output_dir(Path(output_dir) if output_dir else bundle.with_name(f"{bundle.name}-engine"), force)
    require_tensorrt(device)  # fail fast, before the output folder is created
    with atomic_artifact_dir(out, force=force, log=log) as work:
        facts = build_engine(onnx_file, work / ENGINE_FILE, profile, manifest.precision,
                             input_name=manifest.input.name,
                             strongly_typed=None if strongly_typed is None else _truthy(strongly_typed),
                             workspace=workspace, dla_core=None if dla_core is None else int(dla_core),
                             timing_cache=timing_cache, calibrator_tensors=tensors,
                             calibration_cache=(work / "calibration.cache") if legacy else None,
                             hardware_compatible=_truthy(hardware_compatible), device=device, log=log)
        facts.update(calibration_hash=info.get("calibration_hash"), attention=attention, policy=info.get("policy"),
                     bundle={"path": str(bundle), "onnx_sha256": manifest.files.get(onnx_file.name)})
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
    return Manifest(target="tensorrt", backend="tensorrt", precision=bundle.precision, primary=ENGINE_FILE,
                    model=bundle.model, preprocessing=bundle.preprocessing, input=bundle.input, output=bundle.output,
                    tools=tools, export=ExportInfo.from_dict({**bundle.export.to_dict(), "built_from": facts["bundle"]}),
                    checkpoint=bundle.checkpoint,
                    calibration=bundle.calibration, parity=None, extra={**bundle.extra, "tensorrt": facts})
