"""``danet-train``: train the demo model on generated scenes, or evaluate the shipped weights.

A thin argparse layer over :mod:`danet_deploy.train`; every option maps to a
:class:`~danet_deploy.train.TrainConfig` field so the report records exactly what ran.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .common import cli_main


def build_parser() -> argparse.ArgumentParser:
    from ..train import TrainConfig, format_shapes

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
    p.add_argument("--crops", default=format_shapes(defaults["crops"]),
                   help="training crop shapes HxW, one drawn per step (default %(default)s)")
    p.add_argument("--early-crops", default=format_shapes(defaults["early_crops"]),
                   help="smaller crop shapes HxW for the first --early-share of the steps; used only with --early-share > 0 "
                        "(default %(default)s)")
    p.add_argument("--early-share", type=float, default=defaults["early_share"],
                   help="share of the steps, the first ones, on --early-crops (faster, measured to cost person "
                        "IoU); 0 = all on --crops (default %(default)s)")
    p.add_argument("--early-scale", type=float, default=defaults["early_scale"],
                   help="scene size in the early steps, relative to --scene-min/--scene-max (default %(default)s)")
    p.add_argument("--crops-per-scene", type=int, default=defaults["crops_per_scene"],
                   help="crops taken from each generated scene (default %(default)s)")
    p.add_argument("--scene-min", type=int, default=defaults["scene_min"],
                   help="smallest generated scene height before cropping (default %(default)s)")
    p.add_argument("--scene-max", type=int, default=defaults["scene_max"],
                   help="largest generated scene height before cropping (default %(default)s)")
    p.add_argument("--aspect-min", type=float, default=defaults["aspect_min"],
                   help="smallest scene width/height (default %(default)s)")
    p.add_argument("--aspect-max", type=float, default=defaults["aspect_max"],
                   help="largest scene width/height (default %(default)s)")
    p.add_argument("--crowd", type=float, default=defaults["crowd"],
                   help="share of scenes with extra pedestrians and poles (default %(default)s)")
    p.add_argument("--class-balance", type=float, default=defaults["class_balance"],
                   help="power of median-frequency class weights, 0 = unweighted (default %(default)s)")
    p.add_argument("--ohem-keep", type=float, default=defaults["ohem_keep"],
                   help="share of pixels, hardest first, the loss keeps; 1 = all (default %(default)s)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default=defaults["amp"],
                   help="bfloat16 autocast: auto = where the CPU has AMX/AVX512-BF16 (default %(default)s)")
    p.add_argument("--no-prefetch", action="store_true",
                   help="generate scenes in the training process instead of worker processes")
    p.add_argument("--workers", type=int, default=defaults["workers"],
                   help="scene-generating worker processes; a GPU needs several (default %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=defaults["device"],
                   help="train on the CPU (reproducible, the documented recipe) or a CUDA GPU (default %(default)s)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture override of danet_demo, e.g. decoder_channels=0 (repeatable)")
    p.add_argument("--lr", type=float, default=defaults["lr"], help="peak AdamW learning rate (default %(default)s)")
    p.add_argument("--ema", type=float, default=defaults["ema"],
                   help="evaluate and save an exponential moving average of the weights with this decay, e.g. "
                        "0.999; 0 = the last weights (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    p.add_argument("--warmup", type=int, default=defaults["warmup"], help="linear warm-up steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="seed for init, data order, crops (default %(default)s)")
    p.add_argument("--threads", type=int, default=defaults["threads"], help="torch CPU threads (default %(default)s)")
    p.add_argument("--eval-count", type=int, default=defaults["eval_count"], help="val scenes to score (default %(default)s)")
    p.add_argument("--eval-sizes", default=format_shapes(defaults["eval_sizes"]),
                   help="val sizes HxW, comma-separated (default %(default)s)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="wall-clock budget in minutes: the LR schedule is shortened to finish within it")
    p.add_argument("--log-every", type=int, default=defaults["log_every"])
    p.add_argument("--output", help="weights path (default: danet_deploy/weights/danet_demo.safetensors)")
    p.add_argument("--report", help="JSON report path (default: next to the weights, .json)")
    p.add_argument("--force", action="store_true",
                   help="replace the --output weights and --report files if they exist (the default --output is "
                        "the shipped weights)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (periodic log lines only)")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Typed errors exit 2, Ctrl-C 130, SIGTERM 143 with no half-written weights (:func:`cli_main`)."""
    args = build_parser().parse_args(argv)
    from .. import train as training
    from ..errors import ConfigError
    from ..model.options import parse_option_pairs

    if args.evaluate_only:
        import torch

        if args.threads < 1 or args.eval_count < 1:
            raise ConfigError(f"--evaluate-only needs --threads >= 1 and --eval-count >= 1, got {args.threads} "
                              f"and {args.eval_count}")
        torch.set_num_threads(args.threads)
        sizes = training.parse_shapes(args.eval_sizes)
        training.evaluate_weights(args.weights, args.eval_count, sizes, progress=not args.no_progress, log=print,
                                  model_options=parse_option_pairs(args.model_option))
        return 0
    # every option is named after its TrainConfig field; only the shapes and --no-prefetch convert
    given = {f.name: getattr(args, f.name) for f in fields(training.TrainConfig)
             if getattr(args, f.name, None) is not None}
    config = training.TrainConfig(**{**given, "crops": training.parse_shapes(args.crops),
                                     "early_crops": training.parse_shapes(args.early_crops) if args.early_crops else (),
                                     "eval_sizes": training.parse_shapes(args.eval_sizes),
                                     "prefetch": not args.no_prefetch,
                                     "model_options": parse_option_pairs(args.model_option)})
    command = "danet-train " + " ".join(sys.argv[1:] if argv is None else argv)
    training.train(config, command=command.strip(), progress=not args.no_progress, force=args.force)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
