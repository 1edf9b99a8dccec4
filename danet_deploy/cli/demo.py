"""``danet-demo``: the whole job on the shipped ``danet_demo`` model: export -> run -> parity -> benchmark.

Writes into ``--output`` (default ``runs/demo``): ``artifacts/`` (one folder per target and
precision, each with its manifest), ``scene.png`` / ``overlay.png`` / ``comparison.png`` (a
generated street scene, the predicted mask over it, and image | labels | prediction side by
side), ``parity.json``, and ``bench/`` (JSON, CSV, Markdown and PNG plots of the benchmark).

Parsing only: the flags are generated from :class:`danet_deploy.demo.DemoRequest`, and
:func:`danet_deploy.demo.run_demo` does the work.
"""

from __future__ import annotations

import argparse
import sys

from ..demo import DemoRequest, run_demo
from . import dataclass_args
from .common import EXIT_FAILED, EXIT_OK, cli_main


def build_parser() -> argparse.ArgumentParser:
    return dataclass_args.build_parser(DemoRequest, "danet-demo", __doc__.split("\n\nParsing only")[0])


@cli_main
def main(argv: list[str] | None = None) -> int:
    reports = run_demo(dataclass_args.parse_request(DemoRequest, build_parser(), argv))
    return EXIT_OK if all(r["passed"] for r in reports.values()) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(None))
