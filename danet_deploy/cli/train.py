"""``danet-train``: train the demo model on generated scenes, or evaluate the shipped weights.

Parsing only: the flags are generated from :class:`danet_deploy.training.loop.TrainConfig` (recorded in the
report, so it says exactly what ran) and :class:`danet_deploy.training.loop.TrainFlags`;
:func:`danet_deploy.training.loop.train` and :func:`danet_deploy.training.loop.evaluate_only` do the work.
"""

from __future__ import annotations

import argparse
import sys

from . import dataclass_args
from .common import cli_main

DESCRIPTION = (
    "Train danet_demo on generated street scenes (CPU, seeded), evaluate val mIoU, save fp16 safetensors "
    "+ a JSON report. With --evaluate-only, score existing weights."
)


def build_parser() -> argparse.ArgumentParser:
    from ..training.loop import TrainConfig, TrainFlags

    return dataclass_args.build_parser(TrainFlags, "danet-train", DESCRIPTION, also=(TrainConfig,))


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Typed errors exit 2, Ctrl-C 130, SIGTERM 143 with no half-written weights (:func:`cli_main`)."""
    from ..training import loop as training

    ns = build_parser().parse_args(argv)
    flags = training.TrainFlags(**dataclass_args.request_values(training.TrainFlags, ns))
    config = training.TrainConfig(**dataclass_args.request_values(training.TrainConfig, ns))
    if flags.evaluate_only:
        training.evaluate_only(config, flags.weights, progress=flags.progress)
        return 0
    command = "danet-train " + " ".join(sys.argv[1:] if argv is None else argv)
    training.train(config, command=command.strip(), progress=flags.progress, force=flags.force)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(None))
