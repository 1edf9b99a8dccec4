"""``danet-parity ARTIFACT --per-layer``: the per-layer report (table, JSON, SQNR plot)."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from .common import EXIT_FAILED, EXIT_OK, print_json


def plot_path(args: argparse.Namespace) -> str | None:
    """--plot, or with --per-layer and --output the PNG beside the JSON report."""
    if not args.per_layer:
        return None
    return args.plot or (f"{str(args.output).rsplit('.', 1)[0]}.png" if args.output else None)


def per_layer_main(args: argparse.Namespace) -> int:
    """Run :func:`danet_deploy.perlayer_run.run_per_layer`; exit 1 when the artifact produced NaN/Inf."""
    from ..perlayer import plot_sqnr, write_json
    from ..perlayer_run import run_per_layer

    if args.reference and not str(args.reference).endswith(".onnx"):
        raise ConfigError("with --per-layer, --reference takes an FP32 .onnx file (default: re-exported from the "
                          "artifact's manifest)")
    if args.precision:
        raise ConfigError("--precision sets parity tolerances; --per-layer reports every layer and has none")
    report = run_per_layer(args.artifact, images=args.images, generated=args.generated, size=args.size,
                           threads=args.threads, reference=args.reference,
                           log=lambda m: print(f"[danet-parity] {m}", file=sys.stderr, flush=True))
    if args.output:
        write_json(report, args.output)
    plot = plot_path(args)
    if plot:
        plot_sqnr(report, plot)
        print(f"[danet-parity] wrote {plot}", file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.table())
    return EXIT_FAILED if any(layer.nonfinite for layer in report.layers) else EXIT_OK
