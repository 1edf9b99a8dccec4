"""What a ``danet-train`` step of the demo model costs on this CPU, per architecture variant.

Why: the demo recipe's training time is steps x step cost, and the step cost drifts by up to 2x
on a shared VM within an hour. Variants are therefore timed interleaved in one process (round
robin over the same pre-generated batches, after a warm-up round), and only their ratios to the
first variant are meant to be compared. Each variant is ``danet_demo`` built with the given
``--model-option`` overrides (``base`` = the preset), trained with the shipped recipe's step:
bf16 autocast where the CPU has it, channels_last, the DANet loss with OHEM, AdamW. A variant
may also change the data of a step (``batch_size``, ``crops``, ``crops_per_scene``,
``scene_min``, ``scene_max``: fields of ``TrainConfig``). With ``--with-data`` each timed step also renders its
batch, as the prefetch
worker does on the same two cores during a real run.

Reproduces the step-cost rows of benchmarks/results/demo_recipe_gpu.md:

    python benchmarks/train_step_cost.py --variants base output_stride=16 base_width=24
    python benchmarks/train_step_cost.py --with-data --variants base "batch_size=4;crops_per_scene=2"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


DATA_FIELDS = (
    "batch_size",
    "crops",
    "crops_per_scene",
    "scene_min",
    "scene_max",
)  # TrainConfig fields a variant may set


def parse_variant(text: str) -> tuple[dict[str, Any], Any]:
    """``base`` -> ``({}, TrainConfig())``; ``output_stride=16;batch_size=4;crops_per_scene=2`` ->
    coerced model options and the validated training config of that variant."""
    from danet_deploy.errors import ConfigError
    from danet_deploy.model.options import coerce_model_options, parse_option_pairs
    from danet_deploy.training.loop import TrainConfig, parse_shapes

    pairs = {} if text == "base" else parse_option_pairs(text.split(";"))
    data = {key: pairs.pop(key) for key in DATA_FIELDS if key in pairs}
    config = TrainConfig()
    for key, value in data.items():
        if key == "crops":
            config.crops = parse_shapes(value)
        else:
            try:
                setattr(config, key, int(value))
            except ValueError:
                raise ConfigError(f"{key}={value!r}: give a whole number") from None
    config.validate()
    return coerce_model_options(pairs), config


def build(options: dict[str, Any]):
    import torch

    from danet_deploy.model.factory import create_model

    model = create_model("danet_demo", weights=False, eval_mode=False, **options)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(model, optimizer, images: np.ndarray, labels: np.ndarray, amp: str, ohem_keep: float) -> None:
    """One optimizer step, as ``danet_deploy.training.loop.train`` takes it."""
    import torch

    from danet_deploy.training.loop import to_tensor
    from danet_deploy.training.loss import danet_loss

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
        outputs = model.forward_lowres(to_tensor(images).contiguous(memory_format=torch.channels_last))
    loss = danet_loss(outputs, torch.from_numpy(labels.astype(np.int64)), None, ohem_keep, model.align_corners)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--variants",
        nargs="+",
        default=["base", "output_stride=16", "base_width=24"],
        help="'base' or KEY=VALUE[;KEY=VALUE] model options, the first is the reference",
    )
    p.add_argument("--batches", type=int, default=6, help="distinct training batches per round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--with-data",
        action="store_true",
        help="time each step's batch rendering too (a real run renders it on the same cores)",
    )
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)
    from danet_deploy.errors import ConfigError

    try:
        options = {name: parse_variant(name) for name in args.variants}
    except ConfigError as exc:
        p.error(str(exc))
    if args.batches < 1 or args.rounds < 1 or args.threads < 1:
        p.error("--batches, --rounds and --threads must be >= 1")

    import torch

    from danet_deploy.bench.machine import machine_info
    from danet_deploy.training.loop import format_shapes, resolve_amp, training_batch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    amp = resolve_amp("auto")
    batches = {name: [training_batch(i, config) for i in range(args.batches)] for name, (_, config) in options.items()}
    variants = {name: build(model_options) for name, (model_options, _) in options.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds + 1):
        for name, (model, optimizer) in variants.items():
            config = options[name][1]
            for i, (images, labels) in enumerate(batches[name]):
                start = time.perf_counter()
                if args.with_data:
                    images, labels = training_batch(i, config)
                step(model, optimizer, images, labels, amp, config.ohem_keep)
                if round_:  # round 0 warms up every variant's kernels and allocator
                    times[name].append(time.perf_counter() - start)
    reference = statistics.median(times[args.variants[0]])
    rows = [
        {
            "variant": name,
            "median_s_per_step": round(statistics.median(t), 4),
            "ratio": round(statistics.median(t) / reference, 3),
            "steps_timed": len(t),
        }
        for name, t in times.items()
    ]
    base = options[args.variants[0]][1]
    print(
        f"danet_demo training step (reference: batch {base.batch_size}, crops {format_shapes(base.crops)}), "
        f"amp {amp}, {args.threads} threads" + (", batch rendering included" if args.with_data else "")
    )
    for row in rows:
        print(f"  {row['variant']:<28} {row['median_s_per_step']:.3f} s/step  x{row['ratio']:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine_info(),
                    "amp": amp,
                    "threads": args.threads,
                    "with_data": args.with_data,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
