"""Fused attention and ``attention-bf16`` on the CPU engines: speed, agreement, mIoU and per-op profiles, one run.

Every variant (torch eager with and without its SDPA kernels; ONNX Runtime and OpenVINO FP32 and
INT8 with the attention ``unfused`` and ``fused``; OpenVINO INT8 with ``--policy attention-bf16``
where the CPU has AMX/AVX512-BF16) is exported into a temporary folder, loaded with the same thread
count and timed round-robin in this one process, so drift on a shared machine hits every row
alike; ratios are against PyTorch eager FP32 *from the same run*. Each row also gets its engine's
per-op profile (``danet_deploy.bench.profile``) with the attention core's share.

    .venv/bin/python benchmarks/fused_attention.py                                   # danet_demo 512x512
    .venv/bin/python benchmarks/fused_attention.py --model danet_r50_d8 --size 512 1024 --val 2
    .venv/bin/python benchmarks/fused_attention.py --size 128 128 --val 2 --runs 2   # a quick check

Writes ``benchmarks/results/fused_attention-<model>-<H>x<W>.{json,md,png}`` (``--output-dir``);
the JSON records the machine (CPU model and flags, load average before and after).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS = ("attention core <= 30% of OpenVINO INT8 time; best INT8 at >= 99% agreement <= 0.15x torch eager FP32; "
         "best FP32 <= 0.45x (issue 28)")


def _log(message: str) -> None:
    print(f"[fused_attention] {message}", file=sys.stderr, flush=True)


def variants(bf16: bool) -> list[dict[str, Any]]:
    """Every row: name, engine/target, precision, policy and the export options that differ."""
    rows: list[dict[str, Any]] = [{"name": "torch fp32 eager", "kind": "torch", "fused": True},
                                  {"name": "torch fp32 eager, unfused", "kind": "torch", "fused": False}]
    for precision in ("fp32", "int8"):
        for form in ("unfused", "fused"):
            rows.append({"name": f"onnxruntime {precision} {form}", "kind": "export", "precision": precision,
                         "target": "onnx" if precision == "fp32" else "onnxruntime", "options": {"attention": form}})
            rows.append({"name": f"openvino {precision} {form}", "kind": "export", "precision": precision,
                         "target": "openvino", "options": {"attention": form}})
    refused = None if bf16 else "this CPU has neither AMX-BF16 nor AVX512-BF16 (danet-export refuses the policy)"
    rows.append({"name": "openvino int8 fused attention-bf16", "kind": "export", "precision": "int8",
                 "target": "openvino", "options": {"attention": "fused"}, "policy": "attention-bf16",
                 "refused": refused})
    return rows


def _masks(session: Any, images: list[np.ndarray]) -> np.ndarray:
    return np.stack(session.run(images)).astype(np.uint8)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from danet_deploy import runtime
    from danet_deploy.bench.machine import load_average, machine_info
    from danet_deploy.bench.profile import profile_backend
    from danet_deploy.cpu import cpu_features
    from danet_deploy.data.metrics import SegmentationMetrics
    from danet_deploy.data.scenes import SceneDataset
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.export.policy import BF16_FLAGS
    from danet_deploy.model.registry import DEMO_CLASSES, get_config
    from danet_deploy.runtime.preprocess import preprocess

    torch.set_num_threads(args.threads)
    size = (int(args.size[0]), int(args.size[1]))
    config = get_config(args.model)
    features = cpu_features()
    bf16 = any(features.get(f) for f in BF16_FLAGS)
    load_before = load_average()
    dataset = SceneDataset("val", size=size, count=args.val)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    labelled = tuple(config.class_names) == tuple(DEMO_CLASSES)
    rows = [r for r in variants(bf16) if not args.only or any(o in r["name"] for o in args.only)]
    sessions: dict[str, Any] = {}
    for row in rows:
        if row.get("refused"):
            continue
        _log(f"preparing {row['name']}")
        try:
            if row["kind"] == "torch":
                session = runtime.load(args.model, threads=args.threads)
                for module in (session.backend.model.head.sa, session.backend.model.head.sc):
                    module.fused = row["fused"]
            else:
                folder = work / row["name"].replace(" ", "_")
                started = time.perf_counter()
                export(ExportRequest(args.model, target=row["target"], precision=row["precision"], output=folder,
                                     input_size=size, calib_count=args.calib_count,
                                     policy=row.get("policy", "attention-float"), options=row["options"]),
                       log=lambda m: None)
                row["export_s"] = round(time.perf_counter() - started, 1)
                session = runtime.load(folder, threads=args.threads)
                row["attention"] = session.manifest.extra.get("attention")
            sessions[row["name"]] = session
        except Exception as exc:  # noqa: BLE001 - one failed variant is a row with its reason
            row["refused"] = f"failed: {exc}"[:300]
            _log(f"{row['name']}: {row['refused']}")
    tensor = preprocess([images[0]], next(iter(sessions.values())).preprocessing, size)
    # accuracy
    reference = "torch fp32 eager, unfused"
    masks = {name: _masks(s, list(images)) for name, s in sessions.items()}
    for row in rows:
        if row["name"] not in masks:
            continue
        m = masks[row["name"]]
        if reference in masks:
            row["agreement"] = round(float(np.mean(m == masks[reference])), 6)
        if labelled:
            metrics = SegmentationMetrics(config.num_classes)
            metrics.update(m, np.stack(labels))
            row["miou_labels"] = round(float(metrics.miou()), 4)
    # latency: warm up, then round-robin
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for name, s in sessions.items():
        for _ in range(2):
            s.backend.infer(tensor)
    for i in range(args.runs):
        _log(f"timing round {i + 1}/{args.runs}")
        for name, s in sessions.items():
            started = time.perf_counter()
            s.backend.infer(tensor)
            times[name].append((time.perf_counter() - started) * 1e3)
    base = statistics.median(times["torch fp32 eager"]) if "torch fp32 eager" in times else None
    for row in rows:
        if row["name"] in times:
            row["median_ms"] = round(statistics.median(times[row["name"]]), 2)
            row["ratio_vs_torch_fp32"] = round(row["median_ms"] / base, 4) if base else None
    if args.profile_runs:
        for row in rows:
            if row["name"] in sessions:
                _log(f"profiling {row['name']}")
                row["profile"] = profile_backend(sessions[row["name"]].backend, tensor, args.profile_runs)
    ref_miou = next((r.get("miou_labels") for r in rows if r["name"] == reference), None)
    for row in rows:
        if ref_miou is not None and row.get("miou_labels") is not None:
            row["miou_drop_pts"] = round(100 * (ref_miou - row["miou_labels"]), 3)
    machine = machine_info()
    machine["cpu_features"] = features
    machine["load_average"] = {"before": load_before, "after": load_average()}
    return {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "benchmarks/fused_attention.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "model": {"name": config.name, "weights": config.weights or "random (seeded, untrained preset)"},
            "config": {"size": list(size), "batch": 1, "threads": args.threads, "runs": args.runs, "val": args.val,
                       "calib_count": args.calib_count, "profile_runs": args.profile_runs},
            "machine": machine, "reference": reference, "rows": rows, "goals": GOALS, "verdict": verdict(rows)}


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's three goals, read from this run's rows."""
    def best(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        timed = [r for r in candidates if r.get("ratio_vs_torch_fp32") is not None]
        return min(timed, key=lambda r: r["ratio_vs_torch_fp32"]) if timed else None

    ov_int8 = [r for r in rows if r["name"].startswith("openvino int8") and (r.get("profile") or {}).get("attention")]
    shares = {r["name"]: r["profile"]["attention"]["share"] for r in ov_int8}
    int8 = best([r for r in rows if " int8 " in f" {r['name']} " and (r.get("agreement") or 0) >= 0.99])
    fp32 = best([r for r in rows if " fp32 " in f" {r['name']} " and not r["name"].startswith("torch")])
    return {"openvino_int8_attention_share": shares,
            "best_int8_at_99": int8 and {"name": int8["name"], "ratio": int8["ratio_vs_torch_fp32"],
                                         "agreement": int8.get("agreement")},
            "best_fp32": fp32 and {"name": fp32["name"], "ratio": fp32["ratio_vs_torch_fp32"]}}


def markdown(report: dict[str, Any]) -> str:
    from danet_deploy.bench.profile import profile_markdown

    cfg, cpu = report["config"], report["machine"]["cpu"]
    bf16 = any(report["machine"]["cpu_features"].get(f) for f in ("amx_bf16", "avx512_bf16"))
    lines = [f"# Fused attention: {report['model']['name']} {cfg['size'][0]}x{cfg['size'][1]}, {cfg['threads']} threads",
             "", f"- created {report['created']}; CPU: {cpu.get('model', '?')} (bf16: {'yes' if bf16 else 'no'})",
             f"- load average before/after: {report['machine']['load_average']}",
             f"- weights: {report['model']['weights']}; reference for agreement: {report['reference']}",
             "", "```", report["command"], "```", "",
             "| variant | median ms | x torch eager fp32 | agreement | mIoU (labels) | drop pts | attention share | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        share = (r.get("profile") or {}).get("attention", {}).get("share")
        cells = [r["name"], r.get("median_ms"), r.get("ratio_vs_torch_fp32"),
                 f"{100 * r['agreement']:.2f}%" if r.get("agreement") is not None else None, r.get("miou_labels"),
                 r.get("miou_drop_pts"), f"{100 * share:.1f}%" if share is not None else None, r.get("refused") or ""]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    lines += ["", f"Goals: {report['goals']}", "", "```json", json.dumps(report["verdict"], indent=1), "```", ""]
    table_report = {**report, "rows": [{**r, "target": r["name"], "precision": ""} for r in report["rows"]]}
    return "\n".join(lines) + "\n" + profile_markdown(table_report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="danet_demo")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed round-robin rounds (median reported)")
    parser.add_argument("--val", type=int, default=8, help="generated val scenes scored")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--profile-runs", type=int, default=5, help="inferences per per-op profile (0: none)")
    parser.add_argument("--only", nargs="*", default=[], help="keep variants whose name contains one of these")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fused-attention-") as tmp:
        report = run(args, Path(tmp))
    from danet_deploy.bench.profile import plot_profile
    from danet_deploy.files import atomic_write_text

    stem = args.output_dir / f"fused_attention-{args.model}-{args.size[0]}x{args.size[1]}"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    plotted = [{**r, "target": r["name"], "precision": ""} for r in report["rows"] if r.get("profile")]
    if plotted:
        plot_profile({**report, "rows": plotted}, stem.with_suffix(".png"))
        text += f"\n![per-op profile]({stem.with_suffix('.png').name})\n"
    atomic_write_text(stem.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
