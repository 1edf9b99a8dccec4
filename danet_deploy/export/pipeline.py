"""The export pipeline shared by every target: model -> (FP32 ONNX) -> target builder -> artifact.

What a target *is* (precisions, options, packages, builder) lives in :mod:`danet_deploy.targets`;
a builder is ``build(ctx: ExportContext) -> TargetResult`` writing its files into ``ctx.workdir``.
The pipeline owns everything around it once: validating the request against the registry before
any work, loading the model, choosing the attention chunking, the FP32 ONNX every CPU/GPU target
starts from, the manifest (hashes, tool versions), the atomic rename into place.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError, UnknownModelError
from ..eval_protocol import artifact_protocol
from ..inputs import ACCEPTS, FLOAT, accept_input_spec, check_accept, to_nchw
from ..manifest import (
    CARRIED_CHECKPOINT,
    CheckpointInfo,
    ExportInfo,
    InputInfo,
    Manifest,
    ModelInfo,
    OutputInfo,
    PreprocessingInfo,
    atomic_artifact_dir,
    carry_checkpoint,
)
from ..outputs import EMITS, check_emit, mask_dtype, output_spec
from ..planner import AttentionPlan, check_input_size, plan_attention
from ..request_fields import arg, parse_size
from ..targets import (
    CALIB_METHODS,
    DEFAULT_CALIB_METHOD,
    PRECISIONS,
    Target,
    TargetOptions,
    get_target,
    target_names,
)
from ..targets.registry import CALIB_ALIASES
from ..util.artifact_dir import check_output_dir, scratch_dir
from ..util.files import not_a_file_reason, sha256_file
from ..util.result_files import check_output_paths
from ..util.versions import tool_versions
from .batch_memory import plan_batch_memory

# ONNX opsets DANet exports in and passes parity (measured with torch 2.13 and onnxruntime): opset 10
# lacks bilinear resize with align_corners, and torch's exporter stops at 23.
OPSETS = (11, 23)


def _target_help() -> str:
    return f"export target (default: {target_names()[0]})"


def _model_option_pairs(pairs: list[str]) -> dict[str, str]:
    from ..model.options import parse_option_pairs

    return parse_option_pairs(pairs)


def _target_option_pairs(pairs: list[str]) -> dict[str, str]:
    from ..model.options import parse_option_pairs

    return parse_option_pairs(pairs, "--option", "int8_format=u8s8")


BUDGET = "INT8 accuracy budget (see danet_deploy.export.budget)"


@dataclass
class ExportRequest:
    """Everything ``danet-export`` was asked to do (recorded in the manifest).

    Each field's :func:`~danet_deploy.cli.dataclass_args.arg` metadata is its ``danet-export`` flag:
    the command line is generated from these fields, so the two cannot drift.
    """

    model: str = arg("danet_demo", "preset name (see --list-models) or checkpoint file")
    target: str = arg(help=_target_help, choices=target_names, default_factory=lambda: target_names()[0])
    precision: str = arg(
        "fp32",
        "numeric precision (the target's list: --list-targets); int8 calibrates, see --calib",
        choices=PRECISIONS,
    )
    output: Path | None = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        None, "artifact folder (default: artifacts/<model>-<target>-<precision>)", flag=("--output", "-o")
    )
    input_size: tuple[int, int] = arg(
        (512, 512),
        "input height x width the graph is built for (--dynamic: the typical size) (default: 512x512)",
        parser=parse_size,
        metavar="HxW",
    )
    batch: int = arg(1, "images per inference (static batch)")
    dynamic: bool = arg(False, "dynamic batch, height and width")
    opset: int = arg(17, "ONNX opset")
    exporter: str = arg(
        "legacy",
        "torch.onnx exporter: legacy (TorchScript-based) or dynamo (opset >= 18)",
        choices=("legacy", "dynamo"),
    )
    arch: str | None = arg(None, "preset whose architecture a checkpoint --model has (default: read from its weights)")
    num_classes: int | None = arg(None, "class count of a checkpoint (default: the preset's)")
    model_options: dict[str, Any] = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        help="architecture override, e.g. deep_stem=false, stem_width=32, multi_grid=1,2,4, align_corners=false",
        flag="--model-option",
        metavar="KEY=VALUE",
        append=True,
        convert=_model_option_pairs,
        default_factory=dict,
    )
    attention_chunks: int | None = arg(None, "compute position attention in this many query chunks")
    attention_memory: str | int | None = arg(
        None, "budget for one attention energy block, e.g. 512MB (picks the chunks)"
    )
    min_size: tuple[int, int] | None = arg(
        None, "smallest input (dynamic; TensorRT profile)", parser=parse_size, metavar="HxW"
    )
    max_size: tuple[int, int] | None = arg(
        None, "largest input (dynamic; plans attention memory)", parser=parse_size, metavar="HxW"
    )
    max_batch: int | None = arg(None, "largest batch (dynamic; TensorRT profile)")
    calib: str | None = arg(
        None,
        "calibration source: 'generated', 'photos', an .npz of tensors, or a dataset "
        "(cityscapes:ROOT, ade20k:ROOT, voc:ROOT: the images of its train split)",
    )
    calib_count: int = arg(32, "calibration images (INT8)")
    calib_method: str | None = arg(
        None,
        f"INT8 calibration method (default: {DEFAULT_CALIB_METHOD['int8']}; recorded in the manifest)",
        choices=(*CALIB_METHODS, *CALIB_ALIASES),
    )
    policy: str = arg(
        "attention-float",
        "precision policy: attention-float, attention-bf16 (OpenVINO INT8 on AMX/AVX512-BF16 CPUs), quantize-all, ...",
    )
    emit: str = arg(
        "logits",
        "graph outputs: logits; mask (arg-max in the graph: uint8 NxHxW, int32 for TensorRT); "
        "both; mask-lowres (mask + logits before the final upsample)",
        choices=tuple(EMITS),
    )
    accept: str = arg(
        FLOAT,
        "graph input: float (float32 NCHW, normalised on the host); rgb8 or bgr8 (the camera's "
        "uint8 NxHxWx3 image as it is, named 'image': cast, colour order, normalisation and layout in the "
        "graph; see docs/input-formats.md)",
        choices=tuple(ACCEPTS),
    )
    options: dict[str, Any] = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        help="target-specific option (see --list-options)",
        flag="--option",
        metavar="KEY=VALUE",
        append=True,
        convert=_target_option_pairs,
        default_factory=dict,
    )
    verify: bool = arg(False, "run danet-parity on the artifact right after export")
    force: bool = arg(
        False, "replace an existing output that danet-export did not write (never needed for its own artifacts)"
    )
    max_accuracy_drop: float | None = arg(
        None,
        "INT8: return the fewest layers to float so the drop stays <= X points on the validation set (ONNX "
        "Runtime/TensorRT: per-layer sensitivity search; OpenVINO: NNCF accuracy control); unmet: exit 2, best graph "
        "in <output>.budget-unmet",
        metavar="X",
        group=BUDGET,
    )
    accuracy_metric: str | None = arg(
        None,
        "miou: FP32 minus INT8 mIoU vs labels, x100 (a labelled --val dataset or generated scenes); agreement: "
        "%% of pixels whose argmax differs from FP32 (default: miou when the validation set has labels)",
        choices=("miou", "agreement"),
        group=BUDGET,
    )
    val: str | None = arg(
        None,
        "validation source, apart from calibration: a labelled dataset (cityscapes:ROOT, "
        "ade20k:ROOT, voc:ROOT, folder:IMAGES,LABELS: its validation split, mIoU), 'generated' (val "
        "scenes, labelled; default), 'photos' or an image folder",
        group=BUDGET,
    )
    val_count: int = arg(8, "validation images (default %(default)s)", group=BUDGET)
    budget_evaluations: int = arg(8, "most graphs the search quantizes and scores (default %(default)s)", group=BUDGET)
    target_options: TargetOptions = field(init=False, repr=False)
    budget: Any = field(init=False, repr=False)  # AccuracyBudget | None, checked with the rest

    def __post_init__(self) -> None:
        """Check target, precision, options and calibration method against the registry (no model yet)."""
        spec = self.spec
        spec.check_buildable()
        spec.check_precision(self.precision)
        check_emit(self.emit)
        if self.emit not in spec.emits:
            raise ConfigError(
                f"--target {spec.name} serves --emit {' or '.join(spec.emits)}, not {self.emit!r} "
                "(its engine binds one output tensor)"
            )
        check_accept(self.accept)
        options = dict(self.options)
        if "calib_method" in options:  # accepted as an option too; the flag wins
            given = options.pop("calib_method")
            self.calib_method = self.calib_method or (str(given) if given is not None else None)
        self.target_options = spec.parse_options(options, also=("calib_method",) if spec.calib_methods else ())
        self.calib_method = spec.calib_method(self.precision, self.calib_method)
        if self.accept != FLOAT and getattr(self.target_options, "legacy_calibrator", False):
            raise ConfigError(
                f"--accept {self.accept} cannot use legacy_calibrator: TensorRT's implicit calibrator "
                "feeds float tensors to the graph it builds; use the default Q/DQ INT8 bundle"
            )
        h, w = self.input_size
        if h < 1 or w < 1:
            raise ConfigError(f"input size must be positive, got {h}x{w}")
        from .batch_memory import check_batch

        check_batch(self.batch)
        if self.calib_count < 1:
            raise ConfigError(f"--calib-count must be >= 1, got {self.calib_count}")
        if self.calib and self.precision == "fp32":
            raise ConfigError(
                "--calib / --calib-dir feed INT8 calibration (and TensorRT FP16 range checks); an fp32 "
                "export reads none: drop it, or add --precision int8"
            )
        if not OPSETS[0] <= self.opset <= OPSETS[1]:
            raise ConfigError(
                f"--opset {self.opset} is outside {OPSETS[0]}-{OPSETS[1]}, the opsets this model exports "
                "in and runs (below 11 ONNX has no align_corners resize); the default is 17"
            )
        if self.num_classes is not None:
            from ..model.registry import check_class_count

            check_class_count(self.num_classes)
        self._check_size_bounds()
        from ..model.options import coerce_model_options

        self.model_options = coerce_model_options(self.model_options)

        from ..util.cpu import cpu_features
        from .policy import PrecisionPolicy, check_attention_bf16

        check_attention_bf16(PrecisionPolicy.from_spec(self.policy), self.target, self.precision, cpu_features())
        from .budget import budget_from_request

        self.budget = budget_from_request(self)

    def _check_size_bounds(self) -> None:
        """``--min-size <= --input-size <= --max-size`` on each side, and only for ``--dynamic``.

        Why: the bounds become the TensorRT profile and the attention memory plan; a minimum above
        the maximum was written into the manifest and then refused every input at run time.
        """
        if not (self.min_size or self.max_size):
            return
        if not self.dynamic:
            raise ConfigError("--min-size / --max-size bound a --dynamic export: add --dynamic, or drop them")
        (h, w), (lo_h, lo_w) = self.input_size, self.min_size or (1, 1)
        hi_h, hi_w = self.max_size or self.input_size
        if not (lo_h <= h <= hi_h and lo_w <= w <= hi_w):
            shown = "x".join(map(str, self.min_size)) if self.min_size else "(none)"
            raise ConfigError(
                f"need --min-size <= --input-size <= --max-size on each side, got {shown} <= {h}x{w} "
                f"<= {hi_h}x{hi_w}; --input-size is the shape the engine is tuned for"
            )

    @property
    def int8_calib_method(self) -> str:
        """The calibration method of an INT8 export: ``__post_init__`` resolves it (the target's
        documented default unless given), so INT8 builders read it here as a plain ``str``."""
        method = self.calib_method
        assert method is not None, f"calib_method is resolved for --precision int8 (got precision {self.precision})"
        return method

    @property
    def planning_size(self) -> tuple[int, int]:
        """The largest input the artifact must serve (the attention plan is sized for it)."""
        return self.max_size or self.input_size

    def artifact_dir(self) -> Path:
        stem = Path(self.model).stem if Path(self.model).suffix else self.model
        return Path(self.output) if self.output else Path("artifacts") / f"{stem}-{self.target}-{self.precision}"

    @property
    def spec(self) -> Target:
        """The registry entry of :attr:`target`."""
        return get_target(self.target)

    def to_dict(self) -> dict[str, Any]:
        data = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in self.__dict__.items()
            if k not in ("target_options", "budget")
        }
        data["options"] = self.target_options.to_dict()
        data["accuracy_budget"] = self.budget.to_dict() if self.budget is not None else None
        if data["accept"] == FLOAT:  # as in every manifest before --accept: danet-bench reuses those artifacts
            del data["accept"]
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

    def __init__(
        self,
        request: ExportRequest,
        model: Any,
        workdir: Path,
        scratch: Path,
        plan: AttentionPlan,
        log: Callable[[str], None],
    ) -> None:
        self.request = request
        self.model = model
        self.workdir = workdir
        self.scratch = scratch
        self.plan = plan
        self.log = log
        self._fp32_onnx: Path | None = None
        self.onnx_info: dict[str, Any] = {}

    @property
    def config(self) -> Any:
        """The model's config, including the attention plan applied to it."""
        return self.model.config

    @property
    def graph_config(self) -> dict[str, Any]:
        """What every graph and the manifest state about the model (one source: the model's config)."""
        return self.model.config.to_dict()

    @property
    def engine(self) -> str:
        """The runtime engine this target's artifacts run on (from the registry)."""
        return self.request.spec.engine

    @property
    def options(self) -> Any:
        """The target's typed options (its ``TargetOptions`` dataclass)."""
        return self.request.target_options

    def fp32_onnx(self) -> Path:
        """The FP32 ONNX export of the model (made once, in the scratch dir, with metadata)."""
        if self._fp32_onnx is None:
            from .onnx import export_onnx

            r = self.request
            path = self.scratch / "model_fp32.onnx"
            self.log(
                f"exporting ONNX ({r.exporter}, opset {r.opset}, {'dynamic' if r.dynamic else 'static'} "
                f"{r.batch}x3x{r.input_size[0]}x{r.input_size[1]})"
            )
            self.onnx_info = export_onnx(
                self.model,
                path,
                r.input_size,
                r.batch,
                r.dynamic,
                opset=r.opset,
                exporter=r.exporter,
                config=self.graph_config,
                emit=r.emit,
                mask_type=self.mask_type,
            )
            self._fp32_onnx = path
        return self._fp32_onnx

    @property
    def mask_type(self) -> str:
        """Integer type of the in-graph mask for this target and class count."""
        return mask_dtype(self.model.num_classes, self.request.spec.mask_dtype)

    def output_spec(self, input_spec: dict[str, Any]) -> dict[str, Any]:
        """Manifest ``output`` entry for the graph's outputs (``--emit``; shapes from the NCHW input)."""
        shape = to_nchw(input_spec["shape"], input_spec.get("layout", "NCHW"))
        return output_spec(
            self.request.emit, shape, self.model.num_classes, int(self.config.logits_stride), self.mask_type
        )

    def input_spec(self, dtype: str = "float32", bounded: bool = False) -> dict[str, Any]:
        """Manifest input entry of the artifact's graph: :meth:`float_input_spec`, or the uint8 NHWC
        ``image`` of an ``--accept`` graph (see :mod:`danet_deploy.inputs`)."""
        return accept_input_spec(self.float_input_spec(dtype, bounded), self.request.accept)

    def accept_onnx(self, path: Path, cast_first: bool = False) -> None:
        """Put the ``--accept`` wrapper in front of a finished ONNX file (no-op for float input);
        ``cast_first`` for TensorRT, which takes uint8 only into an immediate cast."""
        if self.request.accept != FLOAT:
            from .accept import wrap_onnx_file

            self.log(f"--accept {self.request.accept}: uint8 NHWC input, preprocessing in the graph")
            wrap_onnx_file(path, self.request.accept, self.config.preprocessing.to_dict(), cast_first)

    def accept_graph(self, model: Any) -> Any:
        """:meth:`accept_onnx` for an in-memory ``onnx.ModelProto`` or ``openvino.Model``."""
        if self.request.accept == FLOAT:
            return model
        from .accept import wrap_onnx, wrap_openvino

        self.log(f"--accept {self.request.accept}: uint8 NHWC input, preprocessing in the graph")
        wrap = wrap_onnx if hasattr(model, "graph") else wrap_openvino
        return wrap(model, self.request.accept, self.config.preprocessing.to_dict())

    def float_input_spec(self, dtype: str = "float32", bounded: bool = False) -> dict[str, Any]:
        """Manifest input entry of the float NCHW graph every target builds first (dynamic dims as names).

        Dynamic artifacts get min/opt/max shapes when the engine has hard limits (``bounded``:
        TensorRT profiles) or the user gave --min-size/--max-size/--max-batch; ONNX Runtime and
        OpenVINO otherwise accept any size.
        """
        r = self.request
        h, w = r.input_size
        shape: list[Any] = [
            ("batch" if r.dynamic else r.batch),
            3,
            ("height" if r.dynamic else h),
            ("width" if r.dynamic else w),
        ]
        spec: dict[str, Any] = {
            "name": "input",
            "shape": shape,
            "dtype": dtype,
            "dynamic_axes": {"0": "batch", "2": "height", "3": "width"} if r.dynamic else {},
        }
        if r.dynamic and (bounded or r.min_size or r.max_size or r.max_batch):
            mh, mw = r.min_size or (32, 32)
            xh, xw = r.max_size or r.input_size
            spec.update(
                min_shape=[1, 3, mh, mw], opt_shape=[r.batch, 3, h, w], max_shape=[r.max_batch or r.batch, 3, xh, xw]
            )
        return spec

    @property
    def static_batch(self) -> int:
        """The graph's fixed batch size (1 for dynamic-batch graphs): calibration feeds groups of it."""
        return 1 if self.request.dynamic else self.request.batch

    def calibration(self) -> Any:
        """The calibration set for this request (shared by every INT8 path)."""
        from ..data.calibration import load_calibration

        r = self.request
        return load_calibration(
            r.calib or "generated",
            count=r.calib_count,
            size=r.input_size,
            preprocessing=self.config.preprocessing.to_dict(),
            log=self.log,
        )


def load_model(request: ExportRequest, log: Callable[[str], None] | None = None) -> Any:
    """The reference model for a request: a preset name, or a checkpoint (``arch`` checked or inferred)."""
    from ..model import create_model, list_models

    if request.model in list_models():
        if request.arch:
            raise ConfigError(
                f"--arch names the architecture of a checkpoint --model; {request.model} is a preset "
                "and has its own: drop --arch"
            )
        _refuse_dropping_shipped_weights(request)
        model = create_model(request.model, num_classes=request.num_classes, **request.model_options)
        model.test_protocol = artifact_protocol(model.config.name, align_corners=model.config.align_corners)
        model.checkpoint_info = None
        model.weights_sha256 = shipped_weights_sha256(model.config)
        return model
    path = Path(request.model)
    if path.exists() and not path.is_file():  # a FIFO, /dev/stdin, a folder: there, but not a checkpoint file
        advice = "; pass a preset name or a .pt/.pth/.safetensors checkpoint file" if path.is_dir() else ""
        raise CheckpointError(f"--model {request.model!r} {not_a_file_reason(path)}{advice}")
    if not path.is_file():
        raise UnknownModelError(
            f"unknown model {request.model!r}: not a preset ({', '.join(list_models())}) "
            "and not an existing checkpoint file"
        )
    from ..model.inspect import model_from_checkpoint

    digest = sha256_file(path)  # before reading: a file rewritten meanwhile is caught when it is carried
    model, info = model_from_checkpoint(path, request.arch, request.num_classes, request.model_options, log or _print)
    model.checkpoint_info = {"path": CARRIED_CHECKPOINT, "sha256": digest, "file_name": path.name, **info}
    model.checkpoint_source = path
    model.weights_sha256 = None  # the checkpoint's own digest is in checkpoint_info
    return model


def carry_weights(source: Path, info: dict[str, Any], workdir: Path) -> None:
    """Put the weights of the checkpoint ``source`` into the artifact as ``info["path"]`` (safetensors),
    and record their sha256 as ``info["carried_sha256"]``; ``info["sha256"]`` stays the original file's.

    Why the weights only: a training file holds the optimizer state (twice the weights with
    momentum, 383 MB for 190 MB of weights measured), mmengine's ``message_hub`` and the config;
    the artifact's torch reference needs the state dict alone, saved as the file has it (same keys,
    dtypes and values, auxiliary heads included), so it is rebuilt the way the export was. A
    ``.safetensors`` file is weights only already and is copied as it is. The original is hashed
    again afterwards: a file rewritten during the export fails here rather than ship under its old hash.
    """
    from ..model.checkpoints import read_checkpoint, save_weights

    if Path(source).suffix.lower() == ".safetensors":
        info["carried_sha256"] = info["sha256"]
        carry_checkpoint(source, info, workdir)
        return
    target = workdir / info["path"]
    save_weights(read_checkpoint(source).state, target)
    if sha256_file(source) != info["sha256"]:
        raise CheckpointError(
            f"{source} changed while it was exported (its sha256 is no longer the one it was loaded "
            "with); export again once nothing is writing it"
        )
    info["carried_sha256"] = sha256_file(target)


def shipped_weights_sha256(config: Any) -> str | None:
    """sha256 of the shipped weights file a preset's config names (``None``: random init).

    Why recorded in the manifest: a file name says which weights an artifact was built from only
    until someone retrains into that file (``danet-train --output ... --force``); the digest lets
    ``danet-bench`` tell a stale artifact from a current one.
    """
    from ..model.registry import shipped_weights

    return sha256_file(shipped_weights(config.weights)) if config.weights else None


def _refuse_dropping_shipped_weights(request: ExportRequest) -> None:
    """A preset that ships trained weights keeps them: another ``--num-classes`` would need a fresh
    classifier, so the whole network would be exported untrained, silently."""
    from ..model import get_config

    config = get_config(request.model)
    if config.weights and request.num_classes not in (None, config.num_classes):
        raise ConfigError(
            f"--num-classes {request.num_classes}: {request.model} ships weights trained for "
            f"{config.num_classes} classes, which another class count would drop (an untrained "
            "network); omit --num-classes, or export your own checkpoint with --model FILE"
        )


def _print(message: str) -> None:
    print(f"[danet-export] {message}", file=sys.stderr, flush=True)


def export(request: ExportRequest, log: Callable[[str], None] = _print) -> tuple[Path, Manifest]:
    """Run one export; returns (artifact folder, manifest). The folder appears only when complete."""
    started = time.perf_counter()
    check_output_paths(
        {"--output": request.artifact_dir(), "--timing-cache": getattr(request.target_options, "timing_cache", None)}
    )
    final = check_output_dir(request.artifact_dir(), request.force)  # before any work
    spec = request.spec
    spec.check_installed()
    builder = spec.load_builder()
    model = load_model(request, log)
    for option, size in (("--input-size", request.input_size), ("--min-size", request.min_size)):
        check_input_size(size, model.config.output_stride, option)
    # the default policy keeps attention in FP32 for FP16/INT8 graphs: plan its memory at 4 bytes
    attention_precision = "fp16" if request.precision == "fp16" and request.policy == "quantize-all" else "fp32"
    plan = plan_attention(
        request.planning_size,
        request.max_batch or request.batch,
        attention_precision,
        model.config.output_stride,
        model.backbone.out_channels // 4,
        budget=request.attention_memory,
        chunks=request.attention_chunks,
        tensorrt=spec.element_limit,
    )
    model.set_attention_chunks(plan.chunks)
    log(plan.summary())
    memory = plan_batch_memory(model, request.input_size, request.batch, plan)  # refuses a batch that cannot fit
    if request.batch > 1:
        log(memory.summary())
    with scratch_dir() as scratch, atomic_artifact_dir(final, force=request.force, log=log) as workdir:
        ctx = ExportContext(request, model, workdir, Path(scratch), plan, log)
        result: TargetResult = builder(ctx)
        if model.checkpoint_info is not None:
            carry_weights(model.checkpoint_source, model.checkpoint_info, workdir)
        manifest = Manifest(
            target=request.target,
            backend=result.backend,
            precision=result.precision,
            primary=result.primary,
            model=ModelInfo.from_dict(ctx.graph_config),
            preprocessing=PreprocessingInfo.from_dict(model.config.preprocessing.to_dict()),
            input=InputInfo.from_dict(result.input),
            output=OutputInfo.from_dict(ctx.output_spec(result.input)),
            tools=tool_versions(),
            calibration=result.calibration,
            checkpoint=None if model.checkpoint_info is None else CheckpointInfo.from_dict(model.checkpoint_info),
            export=ExportInfo.from_dict(
                {
                    **request.to_dict(),
                    "test_protocol": model.test_protocol.to_dict(),  # danet-eval's
                    **ctx.onnx_info,
                    "attention_plan": plan.to_dict(),
                    "memory_plan": memory.to_dict(),
                    "weights_sha256": model.weights_sha256,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            ),
            extra=result.extra,
        )
        manifest.hash_files(workdir)
        manifest.write(workdir)
    log(f"wrote {final} ({result.primary}, {request.precision}) in {time.perf_counter() - started:.1f} s")
    return final, manifest
