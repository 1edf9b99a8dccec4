"""``danet-bench``: benchmark DANet across engines and precisions (argument parsing only).

The flags are generated from :class:`danet_deploy.bench.request.BenchRequest`, and
:func:`danet_deploy.bench.request.run_bench` does the work (checks, run, reports written to
``--output``); this module prints the table (or the JSON report with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ..bench.request import BenchRequest, run_bench
from . import dataclass_args
from .common import EXIT_FAILED, EXIT_OK, cli_main

DESCRIPTION = """\
Export (when missing) and benchmark DANet on several engines and precisions,
each in its own process with equal threads: latency p50/p90/p99, throughput,
peak memory, GFLOP/s vs the CPU's GEMM peak, argmax agreement with PyTorch
FP32 and mIoU on generated scenes."""


def build_parser() -> argparse.ArgumentParser:
    return dataclass_args.build_parser(BenchRequest, "danet-bench", DESCRIPTION)


@cli_main
def main(argv: list[str] | None = None) -> int:
    request = dataclass_args.parse_request(BenchRequest, build_parser(), argv)
    command = "danet-bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    from ..bench.report import format_table, header_lines, summary_lines

    outcome = run_bench(request, command=command)
    if request.as_json:
        print(json.dumps(outcome.report.to_dict(), indent=1))
    else:
        print("\n".join(header_lines(outcome.report)))
        print()
        print(format_table(outcome.report))
        print()
        print("\n".join(summary_lines(outcome.report)))
        print("wrote " + ", ".join(str(p) for p in outcome.paths.values()))
    return EXIT_OK if outcome.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(None))
