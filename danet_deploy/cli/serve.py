"""``danet-serve ARTIFACT``: serve an artifact over HTTP and gRPC on a Triton server (PyTriton).

Parsing only: the flags are generated from :class:`danet_deploy.serve.server.ServeOptions`, and
:func:`danet_deploy.serve.server.serve` does the work.
"""

from __future__ import annotations

import argparse
import sys

from . import dataclass_args
from .common import EXIT_OK, cli_main


def build_parser() -> argparse.ArgumentParser:
    from ..serve.server import ServeArtifact, ServeOptions

    return dataclass_args.build_parser(ServeArtifact, "danet-serve", __doc__.split("\n")[0], also=(ServeOptions,))


@cli_main
def main(argv: list[str] | None = None) -> int:
    from ..serve.server import ServeOptions, serve

    ns = build_parser().parse_args(argv)
    options = ServeOptions(**dataclass_args.request_values(ServeOptions, ns))
    serve(ns.artifact, options, log=lambda message: print(f"[danet-serve] {message}", flush=True))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(None))
