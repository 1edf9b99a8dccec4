"""Train the ``danet_demo`` preset on generated street scenes, evaluate it, ship its weights.

Why this exists: the shipped demo weights must be reproducible by anyone, on a CPU, offline, in
minutes. Everything that decides the result is seeded (init, data order, augmentation), the
data comes from :mod:`danet_deploy.data.scenes`, and the run writes its own measured numbers
(val mIoU, steps, time, command) next to the weights instead of relying on hand-copied ones.

The objective is the official DANet one (cross-entropy on the fused, PAM and CAM outputs,
summed), class-balanced and hard-mined (:mod:`danet_deploy.training.loss`). Each step draws one
crop shape (square and wide: cameras are rarely square), renders its scenes at a random height
and aspect ratio (scale and aspect jitter), half of them with extra pedestrians and poles, and
takes ``crops_per_scene`` crops from each scene. Optionally (``early_share`` > 0, off in the shipped
recipe) the first steps use smaller crops from smaller scenes (progressive resizing,
:meth:`TrainConfig.crops_at`): cheaper, but measured to cost person IoU on this data (README).
Evaluation covers several deploy sizes (512x512, 512x1024, 384x640), because a model tuned at one
size need not carry to another.

Speed: where the CPU has native bfloat16 (AMX or AVX512-BF16), ``amp="auto"`` runs the forward
pass under bfloat16 autocast (2.3x faster per step on a 2-core Xeon with AMX); elsewhere it
stays float32, where bfloat16 would be emulated and slower. The report records which ran.
Scenes are generated one step ahead in a worker process, overlapping the optimizer step.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.metrics import SegmentationMetrics
from ..data.scenes import IGNORE_INDEX, SPLITS, SceneDataset, generate_scene
from ..errors import CheckpointError, ConfigError
from ..extras import require
from ..model.registry import DEMO_CLASSES, IMAGENET_MEAN, IMAGENET_STD, weights_dir
from ..request_fields import arg
from ..runtime.preprocess import normalize
from ..util.files import atomic_output, atomic_write_text
from ..util.progress import track

PRESET = "danet_demo"


Shape = tuple[int, int]


def parse_shapes(text: str) -> tuple[Shape, ...]:
    """``"256x256,192x384"`` -> ``((256, 256), (192, 384))`` (height x width)."""
    shapes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().strip().split("x"))
        except ValueError:
            raise ConfigError(f"crop shape {item!r} is not HxW (e.g. 256x256,192x384)") from None
        shapes.append((h, w))
    return tuple(shapes)


def format_shapes(shapes: Sequence[Shape], sep: str = ",") -> str:
    """``((256, 256), (192, 384))`` -> ``"256x256,192x384"``: the inverse of :func:`parse_shapes`."""
    return sep.join(f"{h}x{w}" for h, w in shapes)


def check_eval_sizes(sizes: Sequence[Shape]) -> None:
    """Every val size is at least 32x32 and within ``MAX_SCENE_PIXELS``: each is rendered in memory.

    Why here and not only in :class:`TrainConfig`: ``--evaluate-only`` skips the config, and
    ``--eval-sizes 100000x100000`` died in numpy's allocator with a traceback.
    """
    from ..data.scenes import MAX_SCENE_PIXELS, SCENE_LIMIT_TEXT

    for h, w in sizes:
        if min(h, w) < 32 or h * w > MAX_SCENE_PIXELS:
            raise ConfigError(
                f"eval size {h}x{w} must be at least 32x32 and at most the {SCENE_LIMIT_TEXT} a "
                "generated scene may have: choose other --eval-sizes"
            )


_CROPS: tuple[Shape, ...] = ((256, 256), (192, 352), (224, 320))
_EARLY_CROPS: tuple[Shape, ...] = ((160, 160), (128, 224), (144, 192))
_EVAL_SIZES: tuple[Shape, ...] = ((512, 512), (512, 1024), (384, 640))


def _shapes(value: str | tuple[Shape, ...]) -> tuple[Shape, ...]:
    """``--crops`` text or a default already a tuple; a bad shape is a ConfigError (exit 2)."""
    return value if isinstance(value, tuple) else parse_shapes(value)


def _early_shapes(value: str | tuple[Shape, ...]) -> tuple[Shape, ...]:
    """:func:`_shapes`, and an empty ``--early-crops`` means none."""
    return _shapes(value) if value else ()


def _option_pairs(pairs: list[str]) -> dict[str, str]:
    from ..model.options import parse_option_pairs

    return parse_option_pairs(pairs)


@dataclass
class TrainConfig:
    """Every knob of a training run; recorded verbatim in the report (``danet-train``'s flags are these fields)."""

    steps: int = arg(6000, "optimizer steps")
    batch_size: int = arg(8, "scenes per step")
    # one shape per step, drawn at random ... except in the first early_share, which draw early_crops
    crops: tuple[Shape, ...] = arg(
        _CROPS, f"training crop shapes HxW, one drawn per step (default {format_shapes(_CROPS)})", convert=_shapes
    )
    early_crops: tuple[Shape, ...] = arg(
        _EARLY_CROPS,
        "smaller crop shapes HxW for the first --early-share of the steps; used only with --early-share "
        f"> 0 (default {format_shapes(_EARLY_CROPS)})",
        convert=_early_shapes,
    )
    early_share: float = arg(
        0.0,
        "share of the steps, the first ones, on --early-crops (faster, measured to cost "
        "person IoU); 0 = all on --crops",
    )  # 0: the shipped recipe
    early_scale: float = arg(0.625, "scene size in the early steps, relative to --scene-min/--scene-max")
    crops_per_scene: int = arg(4, "crops taken from each generated scene")  # scene generation is a third of a step
    scene_min: int = arg(256, "smallest generated scene height before cropping")
    scene_max: int = arg(576, "largest generated scene height before cropping")
    aspect_min: float = arg(1.0, "smallest scene width/height")
    aspect_max: float = arg(2.2, "largest scene width/height")
    crowd: float = arg(0.7, "share of scenes with extra pedestrians and poles")
    class_balance: float = arg(0.5, "power of median-frequency class weights, 0 = unweighted")
    ohem_keep: float = arg(0.5, "share of pixels, hardest first, the loss keeps; 1 = all")
    lr: float = arg(4e-3, "peak AdamW learning rate")
    ema: float = arg(
        0.0,
        "evaluate and save an exponential moving average of the weights with this decay, e.g. "
        "0.999; 0 = the last weights",
    )
    weight_decay: float = arg(1e-4, "AdamW weight decay")
    warmup: int = arg(100, "linear warm-up steps")
    poly_power: float = arg(0.9, "power of the polynomial learning-rate decay after the warm-up")
    seed: int = arg(0, "seed for init, data order, crops")
    threads: int = arg(2, "torch CPU threads")
    amp: str = arg(
        "auto", "bfloat16 autocast: auto = where the CPU has AMX/AVX512-BF16", choices=("auto", "bf16", "off")
    )
    device: str = arg(
        "cpu",
        "train on the CPU (reproducible, the documented recipe) or a CUDA GPU (results are not "
        "bit-identical to the CPU's)",
        choices=("cpu", "cuda"),
    )
    prefetch: bool = arg(
        True, "generate scenes in the training process instead of worker processes", flag="--no-prefetch"
    )
    workers: int = arg(1, "scene-generating worker processes; a GPU needs several")
    model_options: dict[str, Any] = arg(  # noqa: RUF009 - arg() returns a dataclasses.field
        help="architecture override of danet_demo, e.g. decoder_channels=0 (repeatable)",
        flag="--model-option",
        metavar="KEY=VALUE",
        append=True,
        convert=_option_pairs,
        default_factory=dict,
    )
    eval_count: int = arg(50, "val scenes to score")
    eval_sizes: tuple[Shape, ...] = arg(
        _EVAL_SIZES, f"val sizes HxW, comma-separated (default {format_shapes(_EVAL_SIZES)})", convert=_shapes
    )
    log_every: int = arg(25, "log a line every this many steps")
    time_budget_min: float | None = arg(
        None, "wall-clock budget in minutes: the LR schedule is shortened to finish within it"
    )
    output: str = arg(
        help="weights path (default: danet_deploy/weights/danet_demo.safetensors)",
        default_factory=lambda: str(weights_dir() / "danet_demo.safetensors"),
    )
    report: str | None = arg(None, "JSON report path (default: next to the weights, .json)")

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crops_per_scene < 1:
            raise ConfigError(
                f"steps, batch size and crops per scene must be >= 1, got {self.steps}, "
                f"{self.batch_size} and {self.crops_per_scene}"
            )
        if self.batch_size % self.crops_per_scene:
            raise ConfigError(
                f"batch size {self.batch_size} must be a multiple of crops per scene ({self.crops_per_scene})"
            )
        if not self.crops:
            raise ConfigError("give at least one crop shape (e.g. --crops 256x256)")
        if not 0.0 <= self.early_share < 1.0:
            raise ConfigError(
                f"early share must be in [0, 1) (the last steps train on --crops), got {self.early_share}"
            )
        if self.early_share > 0:
            if not self.early_crops:
                raise ConfigError("--early-share needs --early-crops (or set --early-share 0)")
            if self.early_steps == 0:
                raise ConfigError(
                    f"--early-share {self.early_share} of {self.steps} steps is no step: raise it or set 0"
                )
            if self.time_budget_min is not None:
                raise ConfigError(
                    "--time-budget-min and --early-share do not combine (a budget could end the run "
                    "inside the early phase, and its cheap steps would mislead the schedule): drop one"
                )
        if not 0.25 <= self.early_scale <= 1.0:
            raise ConfigError(f"early scale must be in [0.25, 1], got {self.early_scale}")
        phases = [(self.crops, self.scene_range_at(self.steps - 1))]
        if self.early_steps:
            phases.append((self.early_crops, self.scene_range_at(0)))
        for crops, (smallest, _) in phases:
            for h, w in crops:
                if min(h, w) < 32 or h % 8 or w % 8:
                    raise ConfigError(f"crop {h}x{w}: sides must be multiples of 8 and >= 32 (output stride 8)")
                if h > smallest:
                    raise ConfigError(
                        f"crop {h}x{w} is taller than the smallest scene it is cut from ({smallest}); "
                        "raise --scene-min (or --early-scale) or use smaller crops"
                    )
        if not self.scene_min <= self.scene_max:
            raise ConfigError(f"need scene_min <= scene_max, got {self.scene_min}, {self.scene_max}")
        if not 0.25 <= self.aspect_min <= self.aspect_max <= 4.0:
            raise ConfigError(f"need 0.25 <= aspect_min <= aspect_max <= 4, got {self.aspect_min}, {self.aspect_max}")
        self._check_scene_pixels()
        if not 0.0 <= self.crowd <= 1.0 or not 0.0 < self.ohem_keep <= 1.0 or not 0.0 <= self.class_balance <= 1.0:
            raise ConfigError(
                f"crowd and class_balance must be in [0, 1] and ohem_keep in (0, 1], got "
                f"{self.crowd}, {self.class_balance}, {self.ohem_keep}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr (learning rate) must be a positive number, got {self.lr} (e.g. --lr 4e-3)")
        if not (math.isfinite(self.ema) and (self.ema == 0 or 0.5 <= self.ema < 1)):
            raise ConfigError(
                f"--ema (weight-average decay) must be 0 (off) or in [0.5, 1), got {self.ema} (e.g. --ema 0.999)"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup (steps) must be >= 0, got {self.warmup}")
        if not (math.isfinite(self.poly_power) and self.poly_power > 0):
            raise ConfigError(f"poly_power must be a positive number, got {self.poly_power}")
        if self.threads < 1 or self.log_every < 1 or self.seed < 0:
            raise ConfigError(
                f"--threads and --log-every must be >= 1 and --seed >= 0, got {self.threads}, "
                f"{self.log_every} and {self.seed}"
            )
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers must be between 1 and 64, got {self.workers}")
        from ..model.options import coerce_model_options

        self.model_options = coerce_model_options(self.model_options)
        if "class_names" in self.model_options:
            raise ConfigError(
                "model option class_names cannot be trained: the generated scenes are labelled with "
                f"the demo's {len(DEMO_CLASSES)} classes ({', '.join(DEMO_CLASSES)})"
            )
        if self.eval_count < 0:  # the eval sizes are checked with the scene sizes (check_eval_sizes)
            raise ConfigError(f"--eval-count must be >= 0, got {self.eval_count}")
        if self.time_budget_min is not None and not (math.isfinite(self.time_budget_min) and self.time_budget_min > 0):
            raise ConfigError(f"--time-budget-min must be a positive number of minutes, got {self.time_budget_min}")
        if self.steps * self.batch_size // self.crops_per_scene > len(SPLITS["train"]):
            raise ConfigError(f"{self.steps} steps exceed the {len(SPLITS['train'])} train seeds")

    @property
    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.output).with_suffix(".json")

    @property
    def scenes_per_step(self) -> int:
        return self.batch_size // self.crops_per_scene

    @property
    def early_steps(self) -> int:
        """Steps (the first ones) that draw from ``early_crops``."""
        if not self.early_crops:
            return 0
        return min(self.steps - 1, int(round(self.steps * self.early_share)))  # the last step trains on crops

    def crops_at(self, step: int) -> tuple[Shape, ...]:
        """The crop shapes step ``step`` draws from.

        Why two phases (progressive resizing): a step's cost grows with its pixels, and what a
        network learns first (what road, sky and cars look like) needs neither wide context nor
        full-size objects. So the first steps can train on crops of about 40% of the area, cut from
        scenes rendered ``early_scale`` smaller (rendering is a third of a step's CPU time at the
        full scale), and the last ones on the full crops and scales, where the attention modules
        see the context and the objects the size they meet at the deploy sizes. Measured on the
        demo data (``benchmarks/results/demo_curriculum_cpu.md``): 75% early steps at 0.625 scale
        cut the early steps' time by half but lost 0.02-0.045 person IoU, so it is off by default.
        """
        return self.early_crops if step < self.early_steps else self.crops

    def _check_scene_pixels(self) -> None:
        """The largest training scene and every eval size stay within ``MAX_SCENE_PIXELS``.

        Why: ``--scene-max 100000`` (or ``--eval-sizes 100000x100000``) passed validation and the
        run then died in numpy's allocator with a traceback, in the training process or a worker.
        """
        from ..data.scenes import MAX_SCENE_PIXELS, SCENE_LIMIT_TEXT

        height = self.scene_max
        width = math.ceil(height * self.aspect_max)
        if height * width > MAX_SCENE_PIXELS:
            raise ConfigError(
                f"--scene-max {height} with --aspect-max {self.aspect_max:g} renders scenes up to "
                f"{height}x{width}, more than the {SCENE_LIMIT_TEXT} a generated scene may have: "
                "lower --scene-max or --aspect-max"
            )
        check_eval_sizes(self.eval_sizes)

    def scene_range_at(self, step: int) -> tuple[int, int]:
        """Smallest and largest scene height step ``step`` renders (scaled in the early phase)."""
        if step < self.early_steps:
            return int(round(self.scene_min * self.early_scale)), int(round(self.scene_max * self.early_scale))
        return self.scene_min, self.scene_max


def resolve_amp(amp: str, device: str = "cpu") -> str:
    """``auto`` -> ``bf16`` on a GPU, or where the CPU computes bfloat16 natively (AMX,
    AVX512-BF16); else ``off``."""
    if amp != "auto":
        return amp
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "off"
    from ..util.cpu import cpu_features

    features = cpu_features()
    return "bf16" if features["amx_bf16"] or features["avx512_bf16"] else "off"


def _torch():
    return require("torch", "training")


def to_tensor(images: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
    """uint8 ``[B, H, W, 3]`` RGB to a normalised float32 ``[B, 3, H, W]`` tensor."""
    return _torch().from_numpy(normalize(list(images), mean, std))  # the runtime's own preprocessing


def training_batch(step: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: distinct train scenes in a fixed order, each rendered at a random height and
    aspect ratio (some with extra pedestrians), cropped ``crops_per_scene`` times to the step's
    crop shape, flipped at random.

    Depends only on ``(step, config)``, so a run can be reproduced or resumed exactly, and the
    batch can be generated in another process.
    """
    rng = np.random.default_rng([config.seed, step])
    crops = config.crops_at(step)
    crop_h, crop_w = crops[int(rng.integers(len(crops)))]
    scene_min, scene_max = config.scene_range_at(step)
    images, labels = [], []
    for j in range(config.scenes_per_step):
        seed = SPLITS["train"].start + (step * config.scenes_per_step + j) % len(SPLITS["train"])
        height = int(rng.integers(scene_min, scene_max + 1))
        width = max(crop_w, int(round(height * rng.uniform(config.aspect_min, config.aspect_max))))
        image, label = generate_scene(seed, height, width, crowd=bool(rng.random() < config.crowd))
        for _ in range(config.crops_per_scene):
            y0 = int(rng.integers(0, height - crop_h + 1))
            x0 = int(rng.integers(0, width - crop_w + 1))
            crop_image = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
            crop_label = label[y0 : y0 + crop_h, x0 : x0 + crop_w]
            if rng.random() < 0.5:
                crop_image, crop_label = crop_image[:, ::-1], crop_label[:, ::-1]
            images.append(crop_image)
            labels.append(crop_label)
    return np.stack(images), np.stack(labels)


def class_weights_for(config: TrainConfig, scenes: int = 64) -> np.ndarray:
    """Class weights measured on ``scenes`` training batches' worth of crops (seeded, reproducible):
    the first batches, so with a curriculum (``early_share``) the early crops."""
    from .loss import balanced_weights, class_frequencies

    labels = [training_batch(step, config)[1] for step in range(max(1, scenes // config.scenes_per_step))]
    return balanced_weights(class_frequencies(labels, len(DEMO_CLASSES)), power=config.class_balance)


def poly_lr(step: int, config: TrainConfig, total: int | None = None) -> float:
    """Linear warm-up, then the poly schedule used by the DANet paper, reaching 0 at ``total`` steps."""
    total = config.steps if total is None else total
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, total - config.warmup))
    return config.lr * (1.0 - progress) ** config.poly_power


def _budgeted_total(step: int, elapsed: float, config: TrainConfig) -> int:
    """How many steps fit in ``time_budget_min``, at the average speed so far (at most ``steps``).

    Why: on a shared CPU the time per step can triple; rather than stop mid-schedule with a
    high learning rate, the poly schedule is re-targeted every step so it still anneals to zero
    at the deadline. The estimate uses the run's average step time, so a short burst of load
    only nudges it; the report records the steps actually run.
    """
    if not config.time_budget_min or step < max(10, config.warmup):
        return config.steps
    remaining = config.time_budget_min * 60.0 - elapsed
    if remaining <= 0:
        return step  # out of time: stop here
    return min(config.steps, step + max(1, int(remaining / (elapsed / step))))


def predict(model, images: np.ndarray) -> np.ndarray:
    """Class map ``[B, H, W]`` uint8 from uint8 RGB ``[B, H, W, 3]`` images (model in eval mode)."""
    torch = _torch()
    pre = getattr(getattr(model, "config", None), "preprocessing", None)
    mean, std = (pre.mean, pre.std) if pre is not None else (IMAGENET_MEAN, IMAGENET_STD)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(to_tensor(images, mean, std).to(device))
    return logits.argmax(1).to(torch.uint8).cpu().numpy()


def evaluate(
    model,
    split: str = "val",
    count: int = 50,
    size: tuple[int, int] = (512, 512),
    batch_size: int = 1,
    progress: bool = False,
) -> SegmentationMetrics:
    """Score ``model`` on the first ``count`` scenes of ``split`` at ``size`` (``(H, W)``).

    The model is switched to eval mode (and left there). Works for any module that maps a
    normalised ``[B, 3, H, W]`` tensor to ``[B, C, H, W]`` logits.
    """
    names = tuple(getattr(getattr(model, "config", None), "class_names", DEMO_CLASSES))
    dataset = SceneDataset(split, size=size, count=count)
    metrics = SegmentationMetrics(len(names), names, IGNORE_INDEX)
    model.eval()
    indices = range(0, count, batch_size)
    for start in track(indices, enabled=progress, desc="eval", mininterval=2.0):
        batch = [dataset[i] for i in range(start, min(count, start + batch_size))]
        images = np.stack([b[0] for b in batch])
        labels = np.stack([b[1] for b in batch])
        metrics.update(predict(model, images), labels)
    return metrics


def weight_average(model, decay: float):
    """An exponential moving average of ``model``'s weights *and* BN buffers, or None (``decay`` 0).

    Why offered: averaging the last steps' weights often generalises better at no cost to the step
    (one fused update of ~3M numbers); on the demo recipe it was measured to move person IoU by
    less than the seed noise (benchmarks/results/demo_recipe_gpu.md, round 3), so it is off by
    default. The BN running statistics are averaged alongside (``use_buffers``), so the averaged
    network needs no extra pass over data to re-estimate them.
    """
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def save_weights(model, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Save the state dict as fp16 safetensors (integer buffers kept as they are), atomically.

    fp16 halves the shipped file; :func:`create_model` casts back to the model's fp32 on load.
    """
    torch = _torch()
    from safetensors.torch import save_file

    state = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    path = Path(path)
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    atomic_write_text(path, text)
    return path


def _prefetch_worker_init(parent: int) -> None:
    """In the prefetch worker: leave Ctrl-C to the trainer, and exit when the trainer is gone.

    Why: Ctrl-C reaches the whole process group, and the trainer alone decides what an interrupt
    means (it shuts the pool down); a SIGKILLed or OOM-killed trainer cannot shut its pool down,
    and the spawned worker, blocked waiting for work, would stay behind forever. A daemon thread
    polls the parent's PID once a second (portable; Linux's PR_SET_PDEATHSIG would not cover macOS).
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="danet-train-parent-watch", daemon=True).start()


def _batches(config: TrainConfig) -> Generator[tuple[int, np.ndarray, np.ndarray], None, None]:
    """Batches in step order; with ``prefetch``, the next ``workers`` steps are generated in worker
    processes while step ``i`` trains (spawned, so they never inherit torch's thread pools)."""
    if not config.prefetch:
        for step in range(config.steps):
            yield (step, *training_batch(step, config))
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=config.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_prefetch_worker_init,
        initargs=(os.getpid(),),
    ) as pool:
        ahead = min(config.steps, config.workers)
        pending = deque(pool.submit(training_batch, step, config) for step in range(ahead))
        try:
            for step in range(config.steps):
                images, labels = pending.popleft().result()
                if step + ahead < config.steps:
                    pending.append(pool.submit(training_batch, step + ahead, config))
                yield step, images, labels
        finally:
            for future in pending:
                future.cancel()


def evaluate_sizes(
    model, sizes: Sequence[Shape], count: int, progress: bool = False, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Per size: mIoU, per-class IoU and pixel accuracy on the first ``count`` val scenes."""
    results = []
    for size in sizes:
        start = time.perf_counter()
        metrics = evaluate(model, "val", count, (size[0], size[1]), progress=progress)
        results.append(
            {
                "split": "val",
                "size": list(size),
                "eval_seconds": round(time.perf_counter() - start, 1),
                **metrics.to_dict(),
            }
        )
        if log is not None:
            log(f"val {size[0]}x{size[1]} ({count} scenes): " + metrics.summary())
    return results


def check_outputs(config: TrainConfig, force: bool = False) -> None:
    """Refuse, before any step, a weights or report path that is a folder, cannot be written, or
    holds a file (unless ``force``).

    Why: a run takes up to an hour, so a path that fails at the end loses it; and the default
    ``--output`` is the shipped weights file that every ``danet_demo`` command loads, which a short
    experiment must not replace by accident.
    """
    from ..util.result_files import check_output_file, check_output_paths

    output = Path(config.output)
    check_output_paths({"--output": output, "--report": config.report_path})
    if not force and output.is_file() and output.resolve() == (weights_dir() / "danet_demo.safetensors").resolve():
        raise ConfigError(
            f"--output defaults to the shipped weights {output}, which every danet_demo command "
            "loads; pass --output my_demo.safetensors, or --force to replace the shipped weights"
        )
    check_output_file(output, force, "--output")
    check_output_file(config.report_path, force, "--report")


def train(
    config: TrainConfig,
    command: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Train from random init, evaluate at every ``eval_sizes``, save weights + JSON report.

    Returns the report (also written to ``config.report_path``). Existing output files are
    replaced only with ``force`` (:func:`check_outputs`).
    """
    config.validate()
    check_outputs(config, force)
    torch = _torch()
    from ..model.factory import create_model
    from ..util.cpu import cpu_features, read_cpuinfo
    from .loss import danet_loss

    amp = resolve_amp(config.amp, config.device)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: torch sees no CUDA GPU (a CPU build of torch, or no driver); use --device cpu"
        )
    device = torch.device(config.device)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    weights = class_weights_for(config) if config.class_balance > 0 else None
    class_weights = torch.from_numpy(weights).to(device) if weights is not None else None
    model = create_model(PRESET, weights=False, eval_mode=False, **config.model_options)
    model = model.to(device, memory_format=torch.channels_last)  # oneDNN's fast conv layout: ~18% per CPU step
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    average = weight_average(model, config.ema)
    early = (
        f"crops {format_shapes(config.early_crops, ', ')} from scenes {config.early_scale:g}x as large for the "
        f"first {config.early_steps} steps, then "
        if config.early_steps
        else "crops "
    )
    log(
        f"training {PRESET} for {config.steps} steps, batch {config.batch_size}, {early}{format_shapes(config.crops, ', ')}, "
        f"{config.threads} threads, {config.device}, amp {amp}, seed {config.seed}"
        + "".join(f", {k}={v}" for k, v in config.model_options.items())
    )
    if weights is not None:
        log("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(DEMO_CLASSES, weights)))
    start = time.perf_counter()
    recent: list[float] = []
    done = 0
    planned = config.steps
    batches = _batches(config)
    bar = track(batches, enabled=progress, desc="train", mininterval=2.0, total=config.steps)
    for step, images, labels in bar:
        planned = _budgeted_total(step, time.perf_counter() - start, config)
        if step >= planned:
            break
        lr = poly_lr(step, config, planned)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            batch = to_tensor(images).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            outputs = model.forward_lowres(batch)  # the loss upsamples only the prediction
        target = torch.from_numpy(labels.astype(np.int64)).to(device, non_blocking=True)
        loss = danet_loss(outputs, target, class_weights, config.ohem_keep, model.align_corners)
        if not math.isfinite(loss.item()):
            raise ConfigError(f"loss became {loss.item()} at step {step}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        recent = [*recent, loss.item()][-config.log_every :]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(recent):.3f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if done % config.log_every == 0 or done == planned:
            elapsed = time.perf_counter() - start
            log(
                f"step {done}/{planned}  loss {np.mean(recent):.4f}  lr {lr:.2e}  "
                f"{elapsed / (step + 1):.3f} s/step  {elapsed / 60:.1f} min"
            )
    if hasattr(bar, "close"):
        bar.close()
    batches.close()  # stops the prefetch worker when the time budget ended the run early
    train_seconds = time.perf_counter() - start
    if average is not None:
        model = average.module  # what is evaluated and saved: the averaged weights and BN statistics

    report: dict[str, Any] = {
        "model": PRESET,
        "steps": done,
        "planned_steps": config.steps,
        "stopped_by_time_budget": done < config.steps,
        "seed": config.seed,
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(float(np.mean(recent)), 4),
        "amp": amp,
        "class_weights": dict(zip(DEMO_CLASSES, [round(float(w), 3) for w in weights]))
        if weights is not None
        else None,
        "config": asdict(config) | {"output": Path(config.output).name, "report": None},
        "command": command or "",
        "torch": torch.__version__,
        "cpu": {"model": read_cpuinfo()[0], **cpu_features()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    if config.eval_count:
        report["val"] = evaluate_sizes(model, config.eval_sizes, config.eval_count, progress=progress, log=log)
    summary = {format_shapes([r["size"]]): round(r["miou"], 4) for r in report.get("val", [])}
    metadata = {
        "model": PRESET,
        "steps": str(done),
        "seed": str(config.seed),
        "val_miou": json.dumps(summary),
        "val_images": str(config.eval_count),
        "command": command or "",
        "classes": json.dumps(list(DEMO_CLASSES)),
        "dtype": "float16",
        "model_options": json.dumps(config.model_options),
    }
    path = save_weights(model, config.output, metadata)
    report["weights_file"] = path.name
    report["weights_bytes"] = path.stat().st_size
    write_report(config.report_path, report)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {config.report_path}")
    return report


def evaluate_weights(
    weights: str | Path | None = None,
    count: int = 50,
    sizes: Sequence[Shape] = ((512, 512),),
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    model_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Load ``danet_demo`` (shipped weights, or ``weights``) and evaluate it at each size.

    The architecture comes from the file (:func:`_trained_model_options`); ``model_options``
    (``--model-option``) override it.
    """
    from ..model.factory import create_model
    from ..model.options import coerce_model_options

    path = Path(weights) if weights else weights_dir() / "danet_demo.safetensors"
    if not path.exists():
        raise CheckpointError(f"no weights at {path}: train them with `danet-train` or pass --weights")
    check_eval_sizes(sizes)
    options = {**_trained_model_options(path), **coerce_model_options(model_options)}
    model = create_model(PRESET, weights=path, **options)
    return evaluate_sizes(model, sizes, count, progress=progress, log=log)


def _trained_model_options(path: Path) -> dict[str, Any]:
    """The architecture overrides a weights file was trained with, so ``--evaluate-only`` rebuilds it.

    The tensors say whether there is a decoder and how wide (files trained before the preset had
    one have none); the ``model_options`` a ``danet-train`` run records in its metadata supply
    the rest (what tensors cannot tell, e.g. ``align_corners``). ``{}`` for other formats.
    """
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    from ..model.inspect import DECODER_WIDTH_KEY
    from ..model.options import coerce_model_options

    try:
        with safe_open(str(path), "pt") as f:
            recorded = (f.metadata() or {}).get("model_options") or ""
            decoder = f.get_slice(DECODER_WIDTH_KEY).get_shape()[0] if DECODER_WIDTH_KEY in f.keys() else 0  # noqa: SIM118 safe_open has no __contains__
    except Exception:  # not readable as safetensors: the checkpoint loader reports it properly
        return {}
    try:
        options = json.loads(recorded) if recorded else {}
    except ValueError:
        raise CheckpointError(f"{path}: its model_options metadata is not JSON ({recorded[:80]!r})") from None
    if not isinstance(options, dict):
        raise CheckpointError(f"{path}: its model_options metadata is not a JSON object ({recorded[:80]!r})")
    return {**coerce_model_options(options), "decoder_channels": int(decoder)}


@dataclass(frozen=True)
class TrainFlags:
    """The flags of ``danet-train`` that are not part of a :class:`TrainConfig` (not recorded in the report)."""

    evaluate_only: bool = arg(
        False, "do not train: evaluate the shipped weights (or --weights) and print per-class IoU"
    )
    weights: str | None = arg(None, "weights to evaluate with --evaluate-only (default: the shipped file)")
    force: bool = arg(
        False,
        "replace the --output weights and --report files if they exist (the default --output is the shipped weights)",
    )
    progress: bool = arg(True, "no tqdm bars (periodic log lines only)", flag="--no-progress")


def evaluate_only(
    config: TrainConfig, weights: str | Path | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """``danet-train --evaluate-only``: score ``weights`` (default: the shipped ones) at ``config.eval_sizes``
    on ``config.eval_count`` val scenes with ``config.threads`` torch threads, printing per-class IoU."""
    if config.threads < 1 or config.eval_count < 1:
        raise ConfigError(
            f"--evaluate-only needs --threads >= 1 and --eval-count >= 1, got {config.threads} and {config.eval_count}"
        )
    _torch().set_num_threads(config.threads)
    return evaluate_weights(
        weights, config.eval_count, config.eval_sizes, progress=progress, log=print, model_options=config.model_options
    )
