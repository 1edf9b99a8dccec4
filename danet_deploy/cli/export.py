"""``danet-export``: one command, every target and precision; writes an artifact folder + manifest."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..export.pipeline import ExportRequest
from ..inputs import ACCEPTS
from ..model.options import parse_option_pairs
from ..outputs import EMITS
from ..targets import CALIB_METHODS, DEFAULT_CALIB_METHOD, PRECISIONS, get_target, target_names, targets
from ..targets.registry import CALIB_ALIASES, TargetTable
from .budget_args import add_budget_arguments, budget_fields
from .common import EXIT_FAILED, EXIT_OK, HelpFormatter, cli_main, parse_size, print_json

#: Flags that are shortcuts for a target's typed options (``--dla-core 0`` = ``--option dla_core=0``).
OPTION_FLAGS = ("workspace", "dla_core", "timing_cache")


def build_parser() -> argparse.ArgumentParser:
    names = target_names()
    p = argparse.ArgumentParser(prog="danet-export", description=__doc__,
                                formatter_class=HelpFormatter,
                                epilog="targets:\n" + TargetTable.current().text()
                                       + "\n\nper-target options: danet-export --list-options [--target NAME]")
    p.add_argument("--model", default="danet_demo", help="preset name (see --list-models) or checkpoint file")
    p.add_argument("--arch", help="preset whose architecture a checkpoint --model has (default: read from its weights)")
    p.add_argument("--num-classes", type=int, help="class count of a checkpoint (default: the preset's)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture override, e.g. deep_stem=false, stem_width=32, multi_grid=1,2,4, align_corners=false")
    p.add_argument("--target", choices=names, help=f"export target (default: {names[0]})")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="numeric precision (the target's list: --list-targets); int8 calibrates, see --calib")
    p.add_argument("--input-size", type=parse_size, default=(512, 512), metavar="HxW",
                   help="input height x width the graph is built for (--dynamic: the typical size) (default: 512x512)")
    p.add_argument("--batch", type=int, default=1, help="images per inference (static batch)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--min-size", type=parse_size, metavar="HxW", help="smallest input (dynamic; TensorRT profile)")
    p.add_argument("--max-size", type=parse_size, metavar="HxW", help="largest input (dynamic; plans attention memory)")
    p.add_argument("--max-batch", type=int, help="largest batch (dynamic; TensorRT profile)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"),
                   help="torch.onnx exporter: legacy (TorchScript-based) or dynamo (opset >= 18)")
    p.add_argument("--attention-chunks", type=int, help="compute position attention in this many query chunks")
    p.add_argument("--attention-memory", help="budget for one attention energy block, e.g. 512MB (picks the chunks)")
    p.add_argument("--calib-dir", help="folder of calibration images (INT8)")
    p.add_argument("--calib", default=None, help="calibration source: 'generated', 'photos', an .npz of tensors, or "
                   "a dataset (cityscapes:ROOT, ade20k:ROOT, voc:ROOT: the images of its train split)")
    p.add_argument("--calib-count", type=int, default=32, help="calibration images (INT8)")
    p.add_argument("--calib-method", choices=(*CALIB_METHODS, *CALIB_ALIASES),
                   help=f"INT8 calibration method (default: {DEFAULT_CALIB_METHOD['int8']}; recorded in the manifest)")
    p.add_argument("--emit", default="logits", choices=tuple(EMITS),
                   help="graph outputs: logits; mask (arg-max in the graph: uint8 NxHxW, int32 for TensorRT); "
                        "both; mask-lowres (mask + logits before the final upsample)")
    p.add_argument("--accept", default="float", choices=tuple(ACCEPTS),
                   help="graph input: float (float32 NCHW, normalised on the host); rgb8 or bgr8 (the camera's uint8 "
                        "NxHxWx3 image as it is, named 'image': cast, colour order, normalisation and layout in the "
                        "graph; see docs/input-formats.md)")
    p.add_argument("--policy", default="attention-float", help="precision policy: attention-float, attention-bf16 (OpenVINO INT8 on AMX/AVX512-BF16 CPUs), quantize-all, ...")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="target-specific option (see --list-options)")
    p.add_argument("--from", dest="from_artifact", metavar="ARTIFACT_DIR",
                   help="second stage from an existing artifact: --target tensorrt builds the engine from a "
                        "prepared bundle (needs TensorRT and a GPU); --target triton writes a Triton model "
                        "repository for any ONNX, OpenVINO or TensorRT artifact")
    p.add_argument("--workspace", default=None, help="TensorRT builder workspace, e.g. 2GB")
    p.add_argument("--dla-core", type=int, help="TensorRT: build for this DLA core (GPU fallback on)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    p.add_argument("--legacy-calibrator", action="store_true",
                   help="TensorRT <= 10: implicit INT8 with the entropy calibrator instead of Q/DQ")
    add_budget_arguments(p)
    p.add_argument("--output", "-o", help="artifact folder (default: artifacts/<model>-<target>-<precision>)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output that danet-export did not write (never needed for its own artifacts)")
    p.add_argument("--verify", action="store_true", help="run danet-parity on the artifact right after export")
    p.add_argument("--verify-images", type=int, default=4, help="generated scenes used by --verify")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list-models", action="store_true", help="list presets and exit")
    p.add_argument("--list-targets", action="store_true", help="list targets (precisions, engine, extra) and exit")
    p.add_argument("--list-options", action="store_true", help="list the options of --target (or of every target)")
    return p


def _list_options(only: str | None) -> None:
    for spec in targets() if only is None else [get_target(only)]:
        rows = spec.options_class.describe()
        print(f"--target {spec.name}: " + ("no options" if not rows else ""))
        for name, kind, default, text in rows:  # a help that explains its default is not given a second one
            print(f"  {name}={kind}" + ("" if "default" in text else f" (default {default})") + f": {text}")
        if spec.calib_methods:
            print(f"  --calib-method {'|'.join(spec.calib_methods)} (default {DEFAULT_CALIB_METHOD['int8']})")


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_targets:
        print(TargetTable.current().text())
        return EXIT_OK
    if args.list_options:
        _list_options(args.target)  # None: every target
        return EXIT_OK
    args.target = args.target or target_names()[0]
    if args.list_models:
        from ..model import get_config, list_models

        for name in list_models():
            print(f"{name:20s} {get_config(name).description}")
        return EXIT_OK
    options: dict[str, object] = parse_option_pairs(args.option, "--option", "int8_format=u8s8")
    for key in OPTION_FLAGS:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.legacy_calibrator:
        options["legacy_calibrator"] = True
    if args.from_artifact:
        spec = get_target(args.target)
        if spec.from_builder is None:
            with_from = [t.name for t in targets() if t.from_builder]
            raise ConfigError(f"--target {spec.name} has no second stage; --from works with --target "
                              f"{' or '.join(with_from) or '(none)'}")
        from ..targets import resolve

        build_from = resolve(spec.from_builder, f"--target {spec.name} --from")
        result = build_from(args.from_artifact, args.output, spec.parse_options(options), force=args.force,
                            log=lambda message: print(f"[danet-export] {message}", file=sys.stderr, flush=True))
        if args.json and hasattr(result, "to_dict"):
            print_json(result.to_dict())
        else:
            print(result)
        return EXIT_OK
    request = ExportRequest(
        model=args.model, target=args.target, precision=args.precision, output=args.output,
        input_size=args.input_size, batch=args.batch, dynamic=args.dynamic, opset=args.opset, exporter=args.exporter,
        arch=args.arch, num_classes=args.num_classes, model_options=parse_option_pairs(args.model_option),
        attention_chunks=args.attention_chunks,
        attention_memory=args.attention_memory, min_size=args.min_size, max_size=args.max_size,
        max_batch=args.max_batch, calib=args.calib_dir or args.calib, calib_count=args.calib_count,
        calib_method=args.calib_method, policy=args.policy, emit=args.emit, accept=args.accept, options=options, verify=args.verify,
        force=args.force, **budget_fields(args))
    from ..export import export

    path, manifest = export(request)
    summary = {"artifact": str(path), "target": manifest.target, "precision": manifest.precision,
               "backend": manifest.backend, "files": manifest.files, "input": manifest.input,
               "attention_plan": manifest.export.get("attention_plan"), "calibration": manifest.calibration,
               "accuracy_budget": manifest.extra.get("accuracy_budget")}
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
