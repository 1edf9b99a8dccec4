"""``danet-train``: train the demo model on generated scenes, or evaluate the shipped weights.

A thin argparse layer over :mod:`danet_deploy.train`; every option maps to a
:class:`~danet_deploy.train.TrainConfig` field so the report records exactly what ran.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ..errors import DanetDeployError


def build_parser() -> argparse.ArgumentParser:
    from ..train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default)}
    p = argparse.ArgumentParser(
        prog="danet-train",
        description="Train danet_demo on generated street scenes (CPU, seeded), evaluate val mIoU, "
                    "save fp16 safetensors + a JSON report. With --evaluate-only, score existing weights.")
    p.add_argument("--evaluate-only", action="store_true",
                   help="do not train: evaluate the shipped weights (or --weights) and print per-class IoU")
    p.add_argument("--weights", help="weights to evaluate with --evaluate-only (default: the shipped file)")
    p.add_argument("--steps", type=int, default=defaults["steps"], help="optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"], help="scenes per step (default %(default)s)")
    p.add_argument("--crop", type=int, default=defaults["crop"], help="training crop size (default %(default)s)")
    p.add_argument("--scene-min", type=int, default=defaults["scene_min"],
                   help="smallest generated scene side before cropping (default %(default)s)")
    p.add_argument("--scene-max", type=int, default=defaults["scene_max"],
                   help="largest generated scene side before cropping (default %(default)s)")
    p.add_argument("--lr", type=float, default=defaults["lr"], help="peak AdamW learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    p.add_argument("--warmup", type=int, default=defaults["warmup"], help="linear warm-up steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="seed for init, data order, crops (default %(default)s)")
    p.add_argument("--threads", type=int, default=defaults["threads"], help="torch CPU threads (default %(default)s)")
    p.add_argument("--eval-count", type=int, default=defaults["eval_count"], help="val scenes to score (default %(default)s)")
    p.add_argument("--eval-size", type=int, default=defaults["eval_size"], help="val scene side (default %(default)s)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="wall-clock budget in minutes: the LR schedule is shortened to finish within it")
    p.add_argument("--log-every", type=int, default=defaults["log_every"])
    p.add_argument("--output", help="weights path (default: danet_deploy/weights/danet_demo.safetensors)")
    p.add_argument("--report", help="JSON report path (default: next to the weights, .json)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (periodic log lines only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .. import train as training

        if args.evaluate_only:
            import torch

            torch.set_num_threads(args.threads)
            metrics = training.evaluate_weights(args.weights, args.eval_count, (args.eval_size, args.eval_size),
                                                progress=not args.no_progress)
            print(f"val scenes: {args.eval_count} at {args.eval_size}x{args.eval_size}")
            print(metrics.summary())
            return 0
        config = training.TrainConfig(
            steps=args.steps, batch_size=args.batch_size, crop=args.crop, scene_min=args.scene_min,
            scene_max=args.scene_max, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
            seed=args.seed, threads=args.threads, eval_count=args.eval_count, eval_size=args.eval_size,
            log_every=args.log_every, time_budget_min=args.time_budget_min,
            report=args.report)
        if args.output:
            config.output = args.output
        command = "danet-train " + " ".join(sys.argv[1:] if argv is None else argv)
        training.train(config, command=command.strip(), progress=not args.no_progress)
        return 0
    except DanetDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
