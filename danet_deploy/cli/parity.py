"""``danet-parity``: an artifact against the reference, with per-precision tolerances (exit 1 if out)."""

from __future__ import annotations

import argparse
import sys

from ..parity import run_parity, write_report
from .common import EXIT_FAILED, EXIT_OK, cli_main, parse_size, print_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-parity", description=__doc__)
    p.add_argument("artifact", help="artifact folder (or .onnx/.xml file)")
    p.add_argument("--reference", help="preset name or checkpoint (default: the artifact's own model)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", help="folder of images to compare on")
    src.add_argument("--generated", type=int, help="number of generated validation scenes (with labels)")
    p.add_argument("--size", type=parse_size, metavar="HxW", help="input size for dynamic artifacts")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="tolerance set (default: the artifact's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--output", help="write the JSON report here")
    p.add_argument("--no-manifest", action="store_true", help="do not record the report in the manifest")
    p.add_argument("--json", action="store_true")
    p.add_argument("--per-layer", action="store_true",
                   help="compare every intermediate tensor with the FP32 reference ONNX (re-exported from the "
                        "manifest, or --reference FILE.onnx): SQNR, cosine, max error, NaN/Inf, FP16 range; worst first")
    p.add_argument("--plot", help="with --per-layer: write the SQNR-along-depth plot (PNG) here")
    p.add_argument("--force", action="store_true", help="replace --output / --plot files that already exist")
    return p


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before the comparison, counts out of range and outputs that cannot be written or would
    replace a file."""
    from ..errors import ConfigError
    from ..result_files import check_output_file, check_output_paths
    from .parity_layers import plot_path

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.generated is not None and args.generated < 1:
        raise ConfigError(f"--generated must be >= 1 (scenes to compare on), got {args.generated}")
    if args.plot and not args.per_layer:
        raise ConfigError("--plot draws the per-layer report: add --per-layer, or drop --plot")
    plot = plot_path(args)
    check_output_paths({"--output": args.output, "--plot" if args.plot else "--plot (from --output)": plot})
    if args.output:
        check_output_file(args.output, args.force)
    if plot:
        check_output_file(plot, args.force, "--plot" if args.plot else "--plot (from --output)")


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_arguments(args)  # a bad --output fails now, not after the comparison
    if args.per_layer:
        from .parity_layers import per_layer_main

        return per_layer_main(args)
    report = run_parity(args.artifact, reference=args.reference, images=args.images, generated=args.generated,
                        size=args.size, threads=args.threads, precision=args.precision,
                        write_manifest=not args.no_manifest)
    if args.output:
        write_report(report, args.output)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.table())
    return EXIT_OK if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
