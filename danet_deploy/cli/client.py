"""``danet-client``: load-test a danet-serve (or Triton) endpoint with concurrent clients over HTTP and gRPC.

Sends generated street scenes for a bounded count and time, prints p50/p90/p99 latency,
throughput, the mean batch size Triton's dynamic batcher formed, and, with ``--artifact``, the
argmax agreement of every response with the same artifact run in-process.

Parsing only: the flags are generated from :class:`danet_deploy.serve.load_request.LoadTestRequest`,
and :func:`danet_deploy.serve.load_request.load_test` does the work.
"""

from __future__ import annotations

import argparse
import sys

from . import dataclass_args
from .common import EXIT_FAILED, EXIT_OK, cli_main, print_json


def build_parser() -> argparse.ArgumentParser:
    from ..serve.load_request import LoadTestRequest

    return dataclass_args.build_parser(LoadTestRequest, "danet-client", __doc__.split("\n\nParsing only")[0])


@cli_main
def main(argv: list[str] | None = None) -> int:
    from ..serve.load_request import LoadTestRequest, load_test

    result = load_test(dataclass_args.parse_request(LoadTestRequest, build_parser(), argv))
    if result.request.as_json:
        print_json(result.to_dict())
    else:
        print(result.text())
    for line in result.problems(errors=not result.request.as_json):
        print(line, file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(None))
