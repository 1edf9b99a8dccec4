"""``danet-parity``: an artifact against the reference, with per-precision tolerances (exit 1 if out).

Parsing only: the flags are generated from :class:`danet_deploy.verify.parity_check.ParityRequest`,
and :func:`danet_deploy.verify.parity_check.check_parity` does the work (``--per-layer`` included).
"""

from __future__ import annotations

import argparse
import sys

from ..verify.parity_check import ParityRequest, check_parity
from . import dataclass_args
from .common import EXIT_FAILED, EXIT_OK, cli_main, print_json


def build_parser() -> argparse.ArgumentParser:
    return dataclass_args.build_parser(ParityRequest, "danet-parity", __doc__.split("\n")[0])


@cli_main
def main(argv: list[str] | None = None) -> int:
    request = dataclass_args.parse_request(ParityRequest, build_parser(), argv)
    outcome = check_parity(request)
    if request.as_json:
        print_json(outcome.report.to_dict())
    else:
        print(outcome.report.table())
    return EXIT_OK if outcome.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(None))
