"""``danet-serve ARTIFACT``: serve an artifact over HTTP and gRPC on a Triton server (PyTriton)."""

from __future__ import annotations

import argparse
import sys

from .common import EXIT_OK, HelpFormatter, cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-serve", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("artifact", help="artifact folder written by danet-export (or a Triton repository version folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 serves other machines)")
    p.add_argument("--http-port", type=int, default=8000, help="Triton HTTP port")
    p.add_argument("--grpc-port", type=int, default=8001, help="Triton gRPC port")
    p.add_argument("--metrics-port", type=int, help="Prometheus metrics port (off unless given)")
    p.add_argument("--model-name", default="danet", help="name clients address")
    p.add_argument("--instances", type=int, default=2, help="model instances (one runtime session each)")
    p.add_argument("--threads", type=int, help="threads per instance (default: CPU cores / instances)")
    p.add_argument("--max-batch-size", type=int, default=8, help="largest batch the dynamic batcher forms")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="how long a request waits for a batch")
    p.add_argument("--max-image-side", type=int, default=4096, help="refuse larger images")
    p.add_argument("--exit-timeout", type=int, default=10, help="seconds shutdown waits for in-flight requests")
    p.add_argument("--backend", help="runtime backend override (e.g. openvino for an ONNX artifact)")
    p.add_argument("--keep-ld-library-path", action="store_true",
                   help="do not put this interpreter's libpython folder first on LD_LIBRARY_PATH")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..serve.server import ServeOptions, serve

    options = ServeOptions(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, model_name=args.model_name, instances=args.instances,
                           threads=args.threads, max_batch_size=args.max_batch_size,
                           max_queue_delay_us=args.max_queue_delay_us, max_image_side=args.max_image_side,
                           exit_timeout_s=args.exit_timeout, fix_libpython=not args.keep_ld_library_path,
                           backend_options=(("backend", args.backend),) if args.backend else ())
    serve(args.artifact, options, log=lambda message: print(f"[danet-serve] {message}", flush=True))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
