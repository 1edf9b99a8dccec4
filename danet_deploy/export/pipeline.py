"""The export pipeline shared by every target: model -> (FP32 ONNX) -> target builder -> artifact.

A target is a module with ``build(ctx: ExportContext) -> TargetResult`` that writes its files into
``ctx.workdir``. The pipeline owns everything around it once: loading the model, choosing the
attention chunking, the FP32 ONNX every CPU/GPU target starts from, the manifest (hashes, tool
versions), the atomic rename into place, and the optional parity check.
"""

from __future__ import annotations

import contextlib
import importlib
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from ..artifact_dir import check_output_dir, scratch_dir
from ..errors import ConfigError, UnknownModelError
from ..files import sha256_file
from ..manifest import Manifest, atomic_artifact_dir
from ..planner import AttentionPlan, check_input_size, plan_attention

TARGETS: dict[str, str] = {
    "onnx": "danet_deploy.export.onnx_target",
    "onnxruntime": "danet_deploy.export.onnxruntime",
    "openvino": "danet_deploy.export.openvino",
    "tensorrt": "danet_deploy.export.tensorrt",
}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportRequest:
    """Everything ``danet-export`` was asked to do (recorded in the manifest)."""

    model: str                              # preset name or checkpoint path
    target: str = "onnx"
    precision: str = "fp32"
    output: Path | None = None               # artifact folder; default artifacts/<model>-<target>-<precision>
    input_size: tuple[int, int] = (512, 512)
    batch: int = 1
    dynamic: bool = False                    # symbolic batch/height/width
    opset: int = 17
    exporter: str = "legacy"
    arch: str | None = None                  # preset of a checkpoint given as ``model``
    num_classes: int | None = None
    attention_chunks: int | None = None
    attention_memory: str | int | None = None
    min_size: tuple[int, int] | None = None  # dynamic-shape bounds (TensorRT profiles, planning)
    max_size: tuple[int, int] | None = None
    max_batch: int | None = None
    calib: str | None = None                 # folder, .npz, or "generated" / "photos"
    calib_count: int = 32
    policy: str = "attention-float"
    options: dict[str, Any] = field(default_factory=dict)  # target-specific knobs
    verify: bool = False
    force: bool = False                      # replace an existing folder that is not an artifact

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        h, w = self.input_size
        if h < 1 or w < 1:
            raise ConfigError(f"input size must be positive, got {h}x{w}")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.calib_count < 1:
            raise ConfigError(f"--calib-count must be >= 1, got {self.calib_count}")

    @property
    def planning_size(self) -> tuple[int, int]:
        """The largest input the artifact must serve (the attention plan is sized for it)."""
        return self.max_size or self.input_size

    def artifact_dir(self) -> Path:
        stem = Path(self.model).stem if Path(self.model).suffix else self.model
        return Path(self.output) if self.output else Path("artifacts") / f"{stem}-{self.target}-{self.precision}"

    def to_dict(self) -> dict[str, Any]:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        for key in ("input_size", "min_size", "max_size"):
            if data.get(key) is not None:
                data[key] = list(data[key])
        return data


@dataclass
class TargetResult:
    """What a target builder produced (the pipeline turns it into the manifest)."""

    primary: str
    backend: str
    precision: str
    input: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None


class ExportContext:
    """What a target builder gets: the request, the model, a scratch dir and shared helpers."""

    def __init__(self, request: ExportRequest, model: Any, workdir: Path, scratch: Path,
                 plan: AttentionPlan, log: Callable[[str], None]) -> None:
        self.request = request
        self.model = model
        self.config = model.config
        self.workdir = workdir
        self.scratch = scratch
        self.plan = plan
        self.log = log
        self._fp32_onnx: Path | None = None
        self.onnx_info: dict[str, Any] = {}

    def fp32_onnx(self) -> Path:
        """The FP32 ONNX export of the model (made once, in the scratch dir, with metadata)."""
        if self._fp32_onnx is None:
            from .onnx import export_onnx, model_metadata

            r = self.request
            path = self.scratch / "model_fp32.onnx"
            self.log(f"exporting ONNX ({r.exporter}, opset {r.opset}, {'dynamic' if r.dynamic else 'static'} "
                     f"{r.batch}x3x{r.input_size[0]}x{r.input_size[1]})")
            self.onnx_info = export_onnx(self.model, path, r.input_size, r.batch, r.dynamic, opset=r.opset,
                                         exporter=r.exporter, metadata=model_metadata(self.config.to_dict(), "fp32"))
            self._fp32_onnx = path
        return self._fp32_onnx

    def input_spec(self, dtype: str = "float32", bounded: bool = False) -> dict[str, Any]:
        """Manifest input entry for this request (dynamic dims as names).

        Dynamic artifacts get min/opt/max shapes when the engine has hard limits (``bounded``:
        TensorRT profiles) or the user gave --min-size/--max-size/--max-batch; ONNX Runtime and
        OpenVINO otherwise accept any size.
        """
        r = self.request
        h, w = r.input_size
        shape: list[Any] = [("batch" if r.dynamic else r.batch), 3, ("height" if r.dynamic else h),
                            ("width" if r.dynamic else w)]
        spec: dict[str, Any] = {"name": "input", "shape": shape, "dtype": dtype,
                                "dynamic_axes": {"0": "batch", "2": "height", "3": "width"} if r.dynamic else {}}
        if r.dynamic and (bounded or r.min_size or r.max_size or r.max_batch):
            mh, mw = r.min_size or (32, 32)
            xh, xw = r.max_size or r.input_size
            spec.update(min_shape=[1, 3, mh, mw], opt_shape=[r.batch, 3, h, w],
                        max_shape=[r.max_batch or r.batch, 3, xh, xw])
        return spec

    @property
    def static_batch(self) -> int:
        """The graph's fixed batch size (1 for dynamic-batch graphs): calibration feeds groups of it."""
        return 1 if self.request.dynamic else self.request.batch

    def calibration(self) -> Any:
        """The calibration set for this request (shared by every INT8 path)."""
        from ..data.calibration import load_calibration

        r = self.request
        return load_calibration(r.calib or "generated", count=r.calib_count, size=r.input_size,
                                preprocessing=self.config.preprocessing.to_dict(), log=self.log)


def load_model(request: ExportRequest) -> Any:
    """The reference model for a request: a preset name, or a checkpoint with ``arch``."""
    from ..model import create_model, list_models

    if request.model in list_models():
        model = create_model(request.model, num_classes=request.num_classes)
        model.checkpoint_info = None
        return model
    path = Path(request.model)
    if not path.is_file():
        raise UnknownModelError(f"unknown model {request.model!r}: not a preset ({', '.join(list_models())}) "
                                "and not an existing checkpoint file")
    if not request.arch:
        raise ConfigError(f"{request.model!r} is not a preset ({', '.join(list_models())}); for a checkpoint file "
                          "also pass --arch PRESET")
    model = create_model(request.arch, num_classes=request.num_classes, weights=path)
    model.checkpoint_info = {"path": str(path), "sha256": sha256_file(path)}
    return model


def tool_versions(*names: str) -> dict[str, str]:
    """Versions of Python, danet-deploy and the installed libraries that export or run models."""
    versions = {"python": platform.python_version()}
    for name in ("danet-deploy", "torch", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf", "nvidia-modelopt",
                 "tensorrt", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _print(message: str) -> None:
    print(f"[danet-export] {message}", file=sys.stderr, flush=True)


def export(request: ExportRequest, log: Callable[[str], None] = _print) -> tuple[Path, Manifest]:
    """Run one export; returns (artifact folder, manifest). The folder appears only when complete."""
    started = time.perf_counter()
    final = check_output_dir(request.artifact_dir(), request.force)  # before any work
    module = importlib.import_module(TARGETS[request.target])
    model = load_model(request)
    for option, size in (("--input-size", request.input_size), ("--min-size", request.min_size)):
        check_input_size(size, model.config.output_stride, option)
    # the default policy keeps attention in FP32 for FP16/INT8 graphs: plan its memory at 4 bytes
    attention_precision = "fp16" if request.precision == "fp16" and request.policy == "quantize-all" else "fp32"
    plan = plan_attention(request.planning_size, request.max_batch or request.batch, attention_precision,
                          model.config.output_stride, model.backbone.out_channels // 4,
                          budget=request.attention_memory, chunks=request.attention_chunks,
                          tensorrt=request.target == "tensorrt")
    model.set_attention_chunks(plan.chunks)
    log(plan.summary())
    with scratch_dir() as scratch, atomic_artifact_dir(final, force=request.force, log=log) as workdir:
        ctx = ExportContext(request, model, workdir, Path(scratch), plan, log)
        result: TargetResult = module.build(ctx)
        manifest = Manifest(
            target=request.target, backend=result.backend, precision=result.precision, primary=result.primary,
            model=model.config.to_dict() | {"attention_chunks": plan.chunks},
            preprocessing=model.config.preprocessing.to_dict(), input=result.input,
            output={"name": "logits", "shape": [result.input["shape"][0], model.num_classes,
                                                result.input["shape"][2], result.input["shape"][3]],
                    "dtype": "float32"},
            tools=tool_versions(), checkpoint=model.checkpoint_info, calibration=result.calibration,
            export={**request.to_dict(), **ctx.onnx_info, "attention_plan": plan.to_dict(),
                    "seconds": round(time.perf_counter() - started, 2)},
            extra=result.extra)
        manifest.hash_files(workdir)
        manifest.write(workdir)
    log(f"wrote {final} ({result.primary}, {request.precision}) in {time.perf_counter() - started:.1f} s")
    return final, manifest
