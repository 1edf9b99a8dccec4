"""``danet-client``: load-test a danet-serve (or Triton) endpoint with concurrent clients over HTTP and gRPC.

Sends generated street scenes for a bounded count and time, prints p50/p90/p99 latency,
throughput, the mean batch size Triton's dynamic batcher formed, and, with ``--artifact``, the
argmax agreement of every response with the same artifact run in-process.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import ConfigError
from .common import EXIT_FAILED, EXIT_OK, HelpFormatter, cli_main, parse_size, print_json


def _counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of client counts") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"client counts must be positive, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-client", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--http", default="127.0.0.1:8000", help="HTTP endpoint HOST:PORT or [IPv6]:PORT ('' to skip)")
    p.add_argument("--grpc", default="127.0.0.1:8001", help="gRPC endpoint HOST:PORT or [IPv6]:PORT ('' to skip)")
    p.add_argument("--model-name", default="danet", help="served model name (danet-serve --model-name)")
    p.add_argument("--clients", type=_counts, default=[1, 2, 4], help="concurrent clients, e.g. 1,2,4")
    p.add_argument("--requests", type=int, default=25, help="requests per client")
    p.add_argument("--duration", type=float, default=60.0, help="stop each run after this many seconds")
    p.add_argument("--size", type=parse_size, default=(256, 256), metavar="HxW",
                   help="generated scene size (default: 256x256)")
    p.add_argument("--scenes", type=int, default=8, help="distinct generated scenes")
    p.add_argument("--artifact", help="compare every mask with this artifact run in-process")
    p.add_argument("--warmup", type=int, default=2, help="requests sent before measuring")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the server to be ready")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..data.scenes import MAX_SCENE_PIXELS, SCENE_LIMIT_TEXT
    from ..serve.address import parse_address
    from ..serve.client import SegmentationClient
    from ..serve.loadtest import HEADER, generated_images, run_load

    # checked up front, before any scene is rendered or any client library sees them
    endpoints = [(proto, str(parse_address(url, f"--{proto}"))) for proto, url in (("http", args.http),
                                                                                  ("grpc", args.grpc)) if url]
    if not endpoints:
        raise ConfigError("give --http and/or --grpc")
    if args.requests < 1 or args.scenes < 1 or not (math.isfinite(args.duration) and args.duration > 0):
        raise ConfigError("--requests, --scenes and --duration must be positive")
    if args.warmup < 0:  # a negative count sliced the scenes from the end: all but a few were sent as warm-up
        raise ConfigError(f"--warmup must be a number of requests >= 0, got {args.warmup}")
    if not (math.isfinite(args.wait) and args.wait >= 0):
        raise ConfigError(f"--wait must be a number of seconds >= 0, got {args.wait}")
    if args.size[0] * args.size[1] > MAX_SCENE_PIXELS:  # each scene is rendered in memory, several at once
        raise ConfigError(f"--size {args.size[0]}x{args.size[1]} is above the generated scenes' limit of "
                          f"{SCENE_LIMIT_TEXT}; choose a smaller --size")
    images = generated_images(args.scenes, args.size)
    references = None
    if args.artifact:
        from .. import runtime

        with runtime.load(args.artifact) as session:
            references = [session.run(img) for img in images]
    reports = []
    for proto, url in endpoints:
        with SegmentationClient(url, proto, model_name=args.model_name) as client:
            client.wait_ready(args.wait)
            for img in images[: args.warmup]:
                client.segment(img)
        for clients in args.clients:
            reports.append(run_load(url, proto, clients, args.requests, images, references,
                                    duration_s=args.duration, model_name=args.model_name))
    # a run that completed nothing verified nothing: it fails rather than passing with empty numbers
    idle = [r for r in reports if r.requests == 0]
    failed = bool(idle) or any(r.errors for r in reports) or \
        (references is not None and any(r.exact != r.requests for r in reports))
    if args.json:
        print_json({"size": list(args.size), "artifact": args.artifact, "runs": [r.to_dict() for r in reports]})
    else:
        print(f"scenes {args.size[0]}x{args.size[1]}, {args.requests} requests per client, at most {args.duration:g} s per run")
        print(HEADER)
        for report in reports:
            print(report.row())
        for report in reports:
            for error in report.errors[:3]:
                print(f"error: {error}", file=sys.stderr)
    for report in idle:
        if not report.errors:
            print(f"error: {report.protocol} with {report.clients} client(s) completed no request within --duration "
                  f"{args.duration:g} s; give a longer --duration", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
