"""Precision x policy x backend on the CPU engines: accuracy vs the FP32 reference and labels, and speed.

For each artifact (OpenVINO FP32/FP16/INT8, ONNX Runtime FP32/FP16/INT8, each reduced-precision
one under every precision policy) this prints and writes a Markdown table with:
argmax agreement and mIoU against the PyTorch FP32 reference, mIoU against the generated labels,
median latency (all engines timed round-robin in one process, same thread count, so drift on a
shared machine hits every engine alike) and the speed ratio against the FP32 engine of the same
backend.

    .venv/bin/python benchmarks/precision_policy.py                 # danet_demo, 512x512
    .venv/bin/python benchmarks/precision_policy.py --size 256 256 --val 4 --runs 5   # quick look

Uses the shipped ``danet_demo`` weights when present; otherwise it says so in the table and
measures ``init_for_testing`` weights (random weights make the attention nearly one-hot, so INT8
numbers then say little about a trained model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from danet_deploy.data.metrics import SegmentationMetrics  # noqa: E402 after the sys.path insert above
from danet_deploy.data.scenes import SceneDataset  # noqa: E402 after the sys.path insert above
from danet_deploy.util.files import atomic_write_text  # noqa: E402 after the sys.path insert above

PRODUCT_TARGETS = "INT8 >= 99% argmax agreement, <= 0.5 pt mIoU drop, >= 1.5x FP32 speed; FP16 >= 99.5% agreement"


def _log(message: str) -> None:
    print(f"[precision_policy] {message}", file=sys.stderr, flush=True)


VARIANTS = {
    # name suffix: (target, export options, runtime options) -- all on top of the attention-float policy
    "nncf-transformer": ("openvino", {"model_type": "transformer"}, {}),
    "nncf-mixed": ("openvino", {"nncf_preset": "mixed"}, {}),
    "ov-int8-plugin-precision": ("openvino", {}, {"inference_precision": None}),
    "ort-percentile": ("onnxruntime", {"calib_method": "percentile"}, {}),
    "ort-s8s8": ("onnxruntime", {"int8_format": "s8s8"}, {}),
    "ort-u8s8-reduced": ("onnxruntime", {"int8_format": "u8s8-reduced"}, {}),
}


def target_verdict(row: dict, ref_miou: float) -> str:
    """Which product targets this row meets (FP32 rows are the reference)."""
    if row["precision"] == "int8":
        checks = [
            ("agreement >= 99%", row["agreement"] >= 0.99),
            ("mIoU drop <= 0.5 pt", ref_miou - row["miou_labels"] <= 0.005),
            ("speed >= 1.5x", row["speedup"] >= 1.5),
        ]
    elif row["precision"] == "fp16":
        checks = [("agreement >= 99.5%", row["agreement"] >= 0.995)]
    else:
        return "reference"
    missed = [name for name, ok in checks if not ok]
    return "met" if not missed else "missed: " + ", ".join(missed)


def configs(policies: list[str], variants: list[str] = ()) -> list[dict]:
    """Every artifact measured: name, export target/precision/policy, runtime options.

    OpenVINO FP16 compresses weights only (the policy does not apply), so it is measured once with
    the plugin's default inference precision (bf16 on AMX CPUs) and once forced to f32.
    """
    rows = [
        dict(name="openvino fp32", target="openvino", precision="fp32", policy="-"),
        dict(name="onnxruntime fp32", target="onnx", precision="fp32", policy="-"),
        dict(
            name="openvino fp16 (plugin default)",
            target="openvino",
            precision="fp16",
            policy="-",
            runtime={"inference_precision": None},
        ),
        dict(
            name="openvino fp16 (f32 inference)",
            target="openvino",
            precision="fp16",
            policy="-",
            runtime={"inference_precision": "f32"},
        ),
    ]
    for policy in policies:
        rows += [
            dict(name=f"openvino int8 {policy}", target="openvino", precision="int8", policy=policy),
            dict(name=f"onnxruntime int8 {policy}", target="onnxruntime", precision="int8", policy=policy),
            dict(name=f"onnxruntime fp16 {policy}", target="onnxruntime", precision="fp16", policy=policy),
        ]
    for variant in variants:
        target, options, runtime_options = VARIANTS[variant]
        rows.append(
            dict(
                name=f"{target} int8 attention-float {variant}",
                target=target,
                precision="int8",
                policy="attention-float",
                options=options,
                runtime=runtime_options,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    work = Path(tempfile.mkdtemp(prefix="precision-policy-"))
    try:
        return run(argv, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(argv: list[str] | None, work: Path) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="danet_demo")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--val", type=int, default=16, help="generated val scenes scored")
    parser.add_argument("--calib", default="generated")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per engine (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["attention-float", "quantize-all"])
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        choices=sorted(VARIANTS),
        help="extra INT8 settings to compare (NNCF model type/preset, ORT method/format)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "precision_policy.md")
    args = parser.parse_args(argv)

    import torch

    from danet_deploy import runtime
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.export.onnxruntime import choose_int8_format, cpu_features
    from danet_deploy.model import create_model, init_for_testing
    from danet_deploy.model.registry import get_config, weights_dir
    from danet_deploy.runtime.preprocess import preprocess

    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    config = get_config(args.model)
    shipped = config.weights and (weights_dir() / config.weights).is_file()
    if shipped:
        model = create_model(args.model).eval()
        request_model, arch, weights_note = args.model, None, f"trained weights {config.weights}"
    else:
        from safetensors.torch import save_file

        model = init_for_testing(create_model(args.model, weights=False), seed=0).eval()
        ckpt = work / f"{args.model}-init_for_testing.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
        request_model, arch = str(ckpt), args.model
        weights_note = (
            "UNTRAINED: danet_deploy/weights/" + str(config.weights) + " was not present, so these are "
            "init_for_testing(seed=0) weights; rerun this script once the trained weights land"
        )
    _log(f"model {args.model} ({weights_note}); size {size[0]}x{size[1]}; {args.threads} threads")

    # reference logits and labels on generated val scenes
    dataset = SceneDataset("val", size=size, count=args.val)
    images, labels = zip(*dataset)
    pre = model.config.preprocessing.to_dict()
    tensors = [preprocess([img], pre) for img in images]
    with torch.no_grad():
        reference = [model(torch.from_numpy(t)).numpy() for t in tensors]
    num_classes = model.num_classes

    rows = configs(args.policies, args.variants)
    sessions = {}
    for row in rows:
        out = work / row["name"].replace(" ", "_").replace("(", "").replace(")", "")
        started = time.perf_counter()
        folder, manifest = export(
            ExportRequest(
                request_model,
                arch=arch,
                target=row["target"],
                precision=row["precision"],
                input_size=size,
                policy=row["policy"] if row["policy"] != "-" else "attention-float",
                calib=args.calib,
                calib_count=args.calib_count,
                output=out,
                options=row.get("options", {}),
            ),
            log=_log,
        )
        row["export_s"] = time.perf_counter() - started
        row["manifest"] = manifest
        sessions[row["name"]] = runtime.load(folder, threads=args.threads, **row.get("runtime", {}))

    # accuracy
    for row in rows:
        session = sessions[row["name"]]
        vs_ref, vs_lab = SegmentationMetrics(num_classes), SegmentationMetrics(num_classes)
        agree = total = 0
        for t, ref, label in zip(tensors, reference, labels):
            pred = session.infer(t).argmax(1)[0]
            ref_mask = ref.argmax(1)[0]
            agree += int((pred == ref_mask).sum())
            total += pred.size
            vs_ref.update(pred, ref_mask)
            vs_lab.update(pred, label)
        row.update(agreement=agree / total, miou_ref=vs_ref.miou(), miou_labels=vs_lab.miou())
    ref_metrics = SegmentationMetrics(num_classes)
    for ref, label in zip(reference, labels):
        ref_metrics.update(ref.argmax(1)[0], label)
    ref_miou = ref_metrics.miou()

    # latency: warm up, then round-robin so every engine sees the same machine load
    x = tensors[0]
    for session in sessions.values():
        for _ in range(2):
            session.infer(x)
    times = {name: [] for name in sessions}
    for _ in range(args.runs):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.infer(x)
            times[name].append(time.perf_counter() - started)
    for row in rows:
        row["ms"] = 1000 * float(np.median(times[row["name"]]))
        used = str(sessions[row["name"]].describe().get("inference_precision", ""))
        row["precision_used"] = next((p for p in ("bfloat16", "float16", "float32") if p in used), used)
    base = {
        "openvino": next(r["ms"] for r in rows if r["name"] == "openvino fp32"),
        "onnxruntime": next(r["ms"] for r in rows if r["name"] == "onnxruntime fp32"),
    }
    for row in rows:
        row["speedup"] = base[row["manifest"].backend] / row["ms"]
    for session in sessions.values():
        session.close()

    features = cpu_features()
    command = "python benchmarks/precision_policy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Precision x policy on the CPU engines",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags "
        f"{', '.join(k for k, v in features.items() if v is True) or 'none'}; {args.threads} threads  ",
        f"Model: {args.model} at {size[0]}x{size[1]}; {weights_note}  ",
        f"Scored on {args.val} generated val scenes; calibration: {args.calib_count} images from {args.calib}; "
        f"latency: median of {args.runs} round-robin runs after 2 warm-ups, batch 1  ",
        f"Reference (PyTorch FP32) mIoU vs labels: {ref_miou:.4f}  ",
        f"ONNX Runtime INT8 format chosen for this CPU: {choose_int8_format(features)['format']} "
        f"({choose_int8_format(features)['reason']})  ",
        f"Product targets: {PRODUCT_TARGETS}",
        "",
        "| engine | precision | policy | agreement vs FP32 | mIoU vs FP32 | mIoU vs labels | Δ mIoU (pt) | "
        "ms | speed vs FP32 | runs in | product target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['precision']} | {row['policy']} | {100 * row['agreement']:.2f}% | "
            f"{row['miou_ref']:.4f} | {row['miou_labels']:.4f} | {100 * (row['miou_labels'] - ref_miou):+.2f} | "
            f"{row['ms']:.1f} | {row['speedup']:.2f}x | {row['precision_used'] or '-'} | "
            f"{target_verdict(row, ref_miou)} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    _log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
