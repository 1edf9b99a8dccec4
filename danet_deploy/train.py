"""Train the ``danet_demo`` preset on generated street scenes, evaluate it, ship its weights.

Why this exists: the shipped demo weights must be reproducible by anyone, on a CPU, offline, in
minutes. Everything that decides the result is seeded (init, data order, augmentation), the
data comes from :mod:`danet_deploy.data.scenes`, and the run writes its own measured numbers
(val mIoU, steps, time, command) next to the weights instead of relying on hand-copied ones.

The objective is the official DANet one: cross-entropy on the fused, PAM and CAM outputs,
summed. Training runs on random crops of scenes generated at random sizes (scale jitter), so a
model trained on small crops still sees the geometry it meets at the 512x512 deploy size.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .data.metrics import SegmentationMetrics
from .data.scenes import IGNORE_INDEX, SPLITS, SceneDataset, generate_scene
from .errors import CheckpointError, ConfigError
from .files import atomic_output, atomic_write_text
from .model.registry import DEMO_CLASSES, IMAGENET_MEAN, IMAGENET_STD, weights_dir
from .progress import track
from .runtime.preprocess import normalize

PRESET = "danet_demo"


@dataclass
class TrainConfig:
    """Every knob of a training run; recorded verbatim in the report."""

    steps: int = 2400
    batch_size: int = 4
    crop: int = 256
    scene_min: int = 256  # scenes are generated at a random size in [scene_min, scene_max] ...
    scene_max: int = 512  # ... and randomly cropped to ``crop`` (scale jitter)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    poly_power: float = 0.9
    seed: int = 0
    threads: int = 2
    eval_count: int = 50
    eval_size: int = 512
    log_every: int = 25
    time_budget_min: float | None = None  # stop (and anneal to zero) early when this many minutes are used
    output: str = field(default_factory=lambda: str(weights_dir() / "danet_demo.safetensors"))
    report: str | None = None  # default: the output path with a .json suffix

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.crop < 32 or self.crop % 8:
            raise ConfigError(f"crop must be a multiple of 8 and >= 32 (output stride 8), got {self.crop}")
        if not self.crop <= self.scene_min <= self.scene_max:
            raise ConfigError(f"need crop <= scene_min <= scene_max, got {self.crop}, {self.scene_min}, {self.scene_max}")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.eval_count < 0 or self.eval_size < 32:
            raise ConfigError(f"eval_count must be >= 0 and eval_size >= 32, got {self.eval_count}, {self.eval_size}")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise ConfigError(f"time budget must be positive minutes, got {self.time_budget_min}")
        if self.steps * self.batch_size > len(SPLITS["train"]):
            raise ConfigError(f"{self.steps} x {self.batch_size} scenes exceed the {len(SPLITS['train'])} train seeds")

    @property
    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.output).with_suffix(".json")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise ConfigError("training needs torch: install torch==2.13.0 (CPU build)") from exc
    return torch


def to_tensor(images: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
    """uint8 ``[B, H, W, 3]`` RGB to a normalised float32 ``[B, 3, H, W]`` tensor."""
    return _torch().from_numpy(normalize(images, mean, std))  # the runtime's own preprocessing


def training_batch(step: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: distinct train scenes in a fixed order, each scale-jittered, cropped, flipped.

    Depends only on ``(step, config)``, so a run can be reproduced or resumed exactly.
    """
    rng = np.random.default_rng([config.seed, step])
    images, labels = [], []
    for j in range(config.batch_size):
        seed = SPLITS["train"].start + (step * config.batch_size + j) % len(SPLITS["train"])
        size = int(rng.integers(config.scene_min, config.scene_max + 1))
        image, label = generate_scene(seed, size, size)
        y0 = int(rng.integers(0, size - config.crop + 1))
        x0 = int(rng.integers(0, size - config.crop + 1))
        image = image[y0:y0 + config.crop, x0:x0 + config.crop]
        label = label[y0:y0 + config.crop, x0:x0 + config.crop]
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        images.append(image)
        labels.append(label)
    return np.stack(images), np.stack(labels)


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


def danet_loss(outputs, target):
    """The official objective: cross-entropy on fused + PAM + CAM logits, summed."""
    import torch.nn.functional as F

    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    return sum(F.cross_entropy(o, target, ignore_index=IGNORE_INDEX) for o in outputs)


def predict(model, images: np.ndarray) -> np.ndarray:
    """Class map ``[B, H, W]`` uint8 from uint8 RGB ``[B, H, W, 3]`` images (model in eval mode)."""
    torch = _torch()
    pre = getattr(getattr(model, "config", None), "preprocessing", None)
    mean, std = (pre.mean, pre.std) if pre is not None else (IMAGENET_MEAN, IMAGENET_STD)
    with torch.inference_mode():
        logits = model(to_tensor(images, mean, std))
    return logits.argmax(1).to(torch.uint8).numpy()


def evaluate(model, split: str = "val", count: int = 50, size: tuple[int, int] = (512, 512),
             batch_size: int = 1, progress: bool = False) -> SegmentationMetrics:
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


def save_weights(model, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Save the state dict as fp16 safetensors (integer buffers kept as they are), atomically.

    fp16 halves the shipped file; :func:`create_model` casts back to the model's fp32 on load.
    """
    torch = _torch()
    from safetensors.torch import save_file

    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
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


def _batches(config: TrainConfig) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for step in range(config.steps):
        images, labels = training_batch(step, config)
        yield step, images, labels


def train(config: TrainConfig, command: str | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train from random init, evaluate at ``eval_size``, save weights + JSON report.

    Returns the report (also written to ``config.report_path``).
    """
    config.validate()
    torch = _torch()
    from .model.factory import create_model

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = create_model(PRESET, weights=False, eval_mode=False)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    log(f"training {PRESET} for {config.steps} steps, batch {config.batch_size}, crop {config.crop}, "
        f"{config.threads} threads, seed {config.seed}")
    start = time.perf_counter()
    recent: list[float] = []
    done = 0
    planned = config.steps
    bar = track(_batches(config), enabled=progress, desc="train", mininterval=2.0)
    for step, images, labels in bar:
        planned = _budgeted_total(step, time.perf_counter() - start, config)
        if step >= planned:
            break
        lr = poly_lr(step, config, planned)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = danet_loss(model(to_tensor(images)), torch.from_numpy(labels.astype(np.int64)))
        if not math.isfinite(loss.item()):
            raise ConfigError(f"loss became {loss.item()} at step {step}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [loss.item()])[-config.log_every:]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(recent):.3f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if done % config.log_every == 0 or done == planned:
            elapsed = time.perf_counter() - start
            log(f"step {done}/{planned}  loss {np.mean(recent):.4f}  lr {lr:.2e}  "
                f"{elapsed / (step + 1):.3f} s/step  {elapsed / 60:.1f} min")
    train_seconds = time.perf_counter() - start

    report: dict[str, Any] = {
        "model": PRESET,
        "steps": done,
        "planned_steps": config.steps,
        "stopped_by_time_budget": done < config.steps,
        "seed": config.seed,
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(float(np.mean(recent)), 4),
        "config": asdict(config) | {"output": Path(config.output).name, "report": None},
        "command": command or "",
        "torch": torch.__version__,
    }
    if config.eval_count:
        eval_start = time.perf_counter()
        metrics = evaluate(model, "val", config.eval_count, (config.eval_size, config.eval_size), progress=progress)
        report["val"] = {"split": "val", "size": [config.eval_size, config.eval_size],
                         "eval_seconds": round(time.perf_counter() - eval_start, 1), **metrics.to_dict()}
        log(metrics.summary())
    metadata = {"model": PRESET, "steps": str(done), "seed": str(config.seed),
                "val_miou": str(report.get("val", {}).get("miou")),
                "val_size": f"{config.eval_size}x{config.eval_size}", "val_images": str(config.eval_count),
                "command": command or "", "classes": json.dumps(list(DEMO_CLASSES)), "dtype": "float16"}
    path = save_weights(model, config.output, metadata)
    report["weights_file"] = path.name
    report["weights_bytes"] = path.stat().st_size
    write_report(config.report_path, report)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {config.report_path}")
    return report


def evaluate_weights(weights: str | Path | None = None, count: int = 50, size: tuple[int, int] = (512, 512),
                     split: str = "val", progress: bool = True) -> SegmentationMetrics:
    """Load ``danet_demo`` (shipped weights, or ``weights``) and evaluate it."""
    from .model.factory import create_model

    path = Path(weights) if weights else weights_dir() / "danet_demo.safetensors"
    if not path.exists():
        raise CheckpointError(f"no weights at {path}: train them with `danet-train` or pass --weights")
    model = create_model(PRESET, weights=path)
    return evaluate(model, split, count, size, progress=progress)
