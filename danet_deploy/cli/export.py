"""``danet-export``: one command, every target and precision; writes an artifact folder + manifest."""

from __future__ import annotations

import argparse
import sys

from ..export.pipeline import PRECISIONS, TARGETS, ExportRequest
from .common import EXIT_FAILED, EXIT_OK, cli_main, parse_size, print_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danet-export", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="danet_demo", help="preset name (see --list-models) or checkpoint file")
    p.add_argument("--arch", help="preset whose architecture a checkpoint --model has")
    p.add_argument("--num-classes", type=int, help="class count of a checkpoint (default: the preset's)")
    p.add_argument("--target", default="onnx", choices=sorted(TARGETS))
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--input-size", type=parse_size, default=(512, 512), metavar="HxW")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--min-size", type=parse_size, metavar="HxW", help="smallest input (dynamic; TensorRT profile)")
    p.add_argument("--max-size", type=parse_size, metavar="HxW", help="largest input (dynamic; plans attention memory)")
    p.add_argument("--max-batch", type=int, help="largest batch (dynamic; TensorRT profile)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"))
    p.add_argument("--attention-chunks", type=int, help="compute position attention in this many query chunks")
    p.add_argument("--attention-memory", help="budget for one attention energy block, e.g. 512MB (picks the chunks)")
    p.add_argument("--calib-dir", help="folder of calibration images (INT8)")
    p.add_argument("--calib", default=None, help="calibration source: 'generated', 'photos' or an .npz of tensors")
    p.add_argument("--calib-count", type=int, default=32)
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile", "max"), help="INT8 calibration method")
    p.add_argument("--policy", default="attention-float", help="precision policy: attention-float, quantize-all, ...")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="target-specific option")
    p.add_argument("--from", dest="from_bundle", metavar="BUNDLE_DIR",
                   help="TensorRT: build an engine from a prepared bundle (needs TensorRT and a GPU)")
    p.add_argument("--workspace", default=None, help="TensorRT builder workspace, e.g. 2GB")
    p.add_argument("--dla-core", type=int, help="TensorRT: build for this DLA core (GPU fallback on)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    p.add_argument("--legacy-calibrator", action="store_true",
                   help="TensorRT <= 10: implicit INT8 with the entropy calibrator instead of Q/DQ")
    p.add_argument("--output", "-o", help="artifact folder (default artifacts/<model>-<target>-<precision>)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --output folder even if it is not a danet-deploy artifact")
    p.add_argument("--verify", action="store_true", help="run danet-parity on the artifact right after export")
    p.add_argument("--verify-images", type=int, default=4, help="generated scenes used by --verify")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list-models", action="store_true", help="list presets and exit")
    return p


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--option {pair!r} must be KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_models:
        from ..model import get_config, list_models

        for name in list_models():
            print(f"{name:20s} {get_config(name).description}")
        return EXIT_OK
    options = _options(args.option)
    for key in ("calib_method", "workspace", "dla_core", "timing_cache"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.legacy_calibrator:
        options["legacy_calibrator"] = True
    if args.from_bundle:
        from ..export.tensorrt import build_engine_from_bundle

        path = build_engine_from_bundle(args.from_bundle, args.output, force=args.force, **options)
        print(path)
        return EXIT_OK
    request = ExportRequest(
        model=args.model, target=args.target, precision=args.precision, output=args.output,
        input_size=args.input_size, batch=args.batch, dynamic=args.dynamic, opset=args.opset, exporter=args.exporter,
        arch=args.arch, num_classes=args.num_classes, attention_chunks=args.attention_chunks,
        attention_memory=args.attention_memory, min_size=args.min_size, max_size=args.max_size,
        max_batch=args.max_batch, calib=args.calib_dir or args.calib, calib_count=args.calib_count,
        policy=args.policy, options=options, verify=args.verify, force=args.force)
    from ..export import export

    path, manifest = export(request)
    summary = {"artifact": str(path), "target": manifest.target, "precision": manifest.precision,
               "backend": manifest.backend, "files": manifest.files, "input": manifest.input,
               "attention_plan": manifest.export.get("attention_plan"), "calibration": manifest.calibration}
    status = EXIT_OK
    if args.verify:
        from ..parity import run_parity

        report = run_parity(path, generated=args.verify_images)
        summary["parity"] = report.to_dict()
        print(report.table(), file=sys.stderr)
        status = EXIT_OK if report.passed else EXIT_FAILED
    if args.json:
        print_json(summary)
    else:
        plan = manifest.export.get("attention_plan") or {}
        shape = "x".join(str(d) for d in manifest.input["shape"])
        print(f"{path}  target={manifest.target} precision={manifest.precision} input={shape} "
              f"attention_chunks={plan.get('chunks', 1)}"
              + (f" parity={'PASS' if status == EXIT_OK else 'FAIL'}" if args.verify else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
