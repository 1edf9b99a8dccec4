"""Fused attention and ``attention-bf16`` on the CPU engines: speed, agreement, mIoU and per-op profiles, one run.

Every variant (torch eager with and without its SDPA kernels; ONNX Runtime and OpenVINO FP32 and
INT8 with the attention ``unfused`` and ``fused``; OpenVINO INT8 with ``--policy attention-bf16``
where the CPU has AMX/AVX512-BF16) is exported into a temporary folder and measured as danet-bench
measures a row: a fresh process per variant and round with equal thread caps, rounds interleaved
so drift on a shared machine hits every row alike (in one process, idle engine thread pools
spinning after their runs slowed PyTorch several times over); ratios are against PyTorch eager
FP32 *from the same run* (the faster of its SDPA and unfused forms): pooled p50s, median rounds
(the goals are read from these), fastest rounds and paired rounds, since this VM's speed switches
between a fast and a slow phase every few seconds (see :func:`derive`). Each row also gets its engine's per-op profile
(``danet_deploy.bench.profile``) with the attention core's share (``--profile-rounds``: several,
their median). After every round the FP32 GEMM peak is measured: the model's FLOPs at the best
peak are the FP32 floor, the least time any engine needs for them in FP32 on this CPU.
``--rederive FILE.json`` recomputes every figure of a saved run from its measurements.

    .venv/bin/python benchmarks/fused_attention.py                                   # danet_demo 512x512
    .venv/bin/python benchmarks/fused_attention.py --model danet_r50_d8 --size 512 1024 --variants issue \
        --reuse-int8 --rounds 1 --iters 3 --warmup 1 --val 1 --calib-count 8 --profile-runs 1   # ~10-12 min, 2 quiet cores
    .venv/bin/python benchmarks/fused_attention.py --size 128 128 --val 2 --iters 2 --rounds 1   # a quick check

``--variants issue`` keeps the rows issue 28 asks for (torch eager FP32; ONNX Runtime and OpenVINO FP32
unfused and fused; both engines' INT8 fused; OpenVINO INT8 ``attention-bf16``) and drops the INT8 unfused
rows and torch's unfused form (at danet_r50_d8's C = 512 eager PAM is unfused anyway), which is what
makes the large model fit in about ten minutes; agreement is then against torch eager FP32 (its fused
CAM is within 2e-4 of the unfused one). The script logs each step with the time spent so far and,
after the first round, an estimate of what is left.

Writes ``benchmarks/results/fused_attention-<model>-<H>x<W>.{json,md,png}`` (``--output-dir``);
the JSON records the machine (CPU model and flags, load average before and after).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS = (
    "attention core <= 30% of OpenVINO INT8 time; best INT8 at >= 99% agreement <= 0.15x torch eager FP32; "
    "best FP32 <= 0.45x (issue 28)"
)


def _log(message: str) -> None:
    print(f"[fused_attention] {message}", file=sys.stderr, flush=True)


#: ``--variants``: every row, or only those issue 28's goals and tables are read from
VARIANT_SETS = ("all", "issue")
#: rows ``--variants issue`` leaves out (their goals are read from other rows)
NOT_IN_ISSUE_SET = ("torch fp32 eager, unfused", "onnxruntime int8 unfused", "openvino int8 unfused")


def variants(bf16: bool, heads: int = 2, which: str = "all", openvino_form: str = "fused") -> list[dict[str, Any]]:
    """Every row: name, engine/target, precision, policy and the export options that differ
    (``heads``: OpenVINO's ``attention_heads`` for its fused rows, ``openvino_form``: their
    ``attention`` option, ``fused`` or ``sdpa``); ``which="issue"`` drops
    :data:`NOT_IN_ISSUE_SET`."""
    rows: list[dict[str, Any]] = [
        {"name": "torch fp32 eager", "kind": "torch", "fused": True},
        {"name": "torch fp32 eager, unfused", "kind": "torch", "fused": False},
    ]
    for precision in ("fp32", "int8"):
        for form in ("unfused", "fused"):
            rows.append(
                {
                    "name": f"onnxruntime {precision} {form}",
                    "kind": "export",
                    "precision": precision,
                    "target": "onnx" if precision == "fp32" else "onnxruntime",
                    "options": {"attention": form},
                }
            )
            rows.append(
                {
                    "name": f"openvino {precision} {form}",
                    "kind": "export",
                    "precision": precision,
                    "target": "openvino",
                    "options": {"attention": openvino_form if form == "fused" else form}
                    | ({"attention_heads": heads} if form == "fused" else {}),
                }
            )
    refused = None if bf16 else "this CPU has neither AMX-BF16 nor AVX512-BF16 (danet-export refuses the policy)"
    rows.append(
        {
            "name": "openvino int8 fused attention-bf16",
            "kind": "export",
            "precision": "int8",
            "target": "openvino",
            "options": {"attention": openvino_form, "attention_heads": heads},
            "policy": "attention-bf16",
            "refused": refused,
        }
    )
    if which == "issue":
        rows = [r for r in rows if r["name"] not in NOT_IN_ISSUE_SET]
    return rows


#: the row whose artifact ``--reuse-int8`` loads for the attention-bf16 row
REUSED_INT8 = "openvino int8 fused"


def reference_name(names: list[str]) -> str | None:
    """The torch row masks are compared with: the unfused graph form when it ran, else the eager default."""
    return next((n for n in ("torch fp32 eager, unfused", "torch fp32 eager") if n in names), None)


class _Clock:
    """Elapsed time in the log, and after the first round an estimate of what is left: later rounds
    cost what round one did; a profile runs ``profile_runs + 2`` inferences under a profiler, which
    cost about twice a timed one (measured with danet_r50_d8 at 512x1024)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.round_s: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        _log(f"[{self.elapsed():6.0f} s] {message}")

    def round_done(self, started: float, rounds_left: int, args: argparse.Namespace) -> None:
        if self.round_s is None:
            self.round_s = time.perf_counter() - started
            per_round = max(1, args.warmup + args.iters + args.val)  # inferences per row and round (+ val in round 1)
            profile = 2.0 * (args.profile_runs + 2) * args.profile_rounds / per_round if args.profile_runs else 0.0
            left = self.round_s * (rounds_left * (args.warmup + args.iters) / per_round + profile)
            self.log(f"round 1 took {self.round_s:.0f} s; about {left:.0f} s left")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Export every variant, then measure them as danet-bench does: a fresh process per variant and
    round (equal thread caps, rounds interleaved, latencies pooled), accuracy from round 0, and the
    per-op profile from one more process per variant."""
    from danet_deploy.bench.flops import count_preset_flops
    from danet_deploy.bench.gemm import measure_gemm_peak
    from danet_deploy.bench.machine import load_average, machine_info
    from danet_deploy.bench.rows import Row, RowRun
    from danet_deploy.bench.runner import (
        BenchConfig,
        _measure_row,
        _profile_row,
        accuracy,
    )
    from danet_deploy.bench.timing import round_p50s, summarize
    from danet_deploy.data.scenes import SceneDataset
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.export.policy import BF16_FLAGS
    from danet_deploy.model.registry import DEMO_CLASSES, get_config
    from danet_deploy.util.cpu import cpu_features

    clock = _Clock()
    size = (int(args.size[0]), int(args.size[1]))
    config = get_config(args.model)
    features = cpu_features()
    load_before = load_average()
    cfg = BenchConfig(
        model=args.model,
        size=size,
        iters=args.iters,
        warmup=args.warmup,
        threads=args.threads,
        rounds=args.rounds,
        scenes=args.val,
        profile=args.profile_runs,
        progress=False,
    )
    dataset = SceneDataset("val", size=size, count=args.val)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    labels_arr = np.stack(labels) if tuple(config.class_names) == tuple(DEMO_CLASSES) else None
    scenes = work / "scenes.npz"
    np.savez(scenes, images=np.stack(images))
    rows = [
        r
        for r in variants(
            any(features.get(f) for f in BF16_FLAGS), args.attention_heads, args.variants, args.openvino_attention
        )
        if not args.only or any(o in r["name"] for o in args.only)
    ]
    runs: dict[str, RowRun] = {}
    for row in rows:
        if row.get("refused"):
            continue
        slug = row["name"].replace(" ", "_").replace(",", "")
        if args.reuse_int8 and row.get("policy") == "attention-bf16" and REUSED_INT8 in runs:
            # the same NNCF IR as the INT8 fused row (the policy adds only the recorded bf16 compile
            # property), loaded the way the runtime loads what the policy records
            base = runs[REUSED_INT8]
            runs[row["name"]] = RowRun(
                Row(slug, "", None, 1, args.threads),
                model_ref=base.model_ref,
                load_options={**base.load_options, "inference_precision": "bf16"},
            )
            row["reused"] = f"{REUSED_INT8} artifact, inference_precision=bf16"
            row["attention"] = next((r.get("attention") for r in rows if r["name"] == REUSED_INT8), None)
            row["openvino_runtime"] = {"inference_precision": "bf16"}
            continue
        run_ = RowRun(Row(slug, "", None, 1, args.threads), load_options={"threads": args.threads})
        try:
            if row["kind"] == "torch":
                run_.model_ref = args.model
                run_.load_options.update(backend="torch", fused_attention=row["fused"])
            else:
                clock.log(f"exporting {row['name']}")
                folder = work / slug
                started = time.perf_counter()
                _, manifest = export(
                    ExportRequest(
                        args.model,
                        target=row["target"],
                        precision=row["precision"],
                        output=folder,
                        input_size=size,
                        calib_count=args.calib_count,
                        policy=row.get("policy", "attention-float"),
                        options=row["options"],
                    ),
                    log=lambda m: None,
                )
                row["export_s"] = round(time.perf_counter() - started, 1)
                row["attention"] = manifest.extra.get("attention")
                row["openvino_runtime"] = manifest.extra.get("openvino_runtime")
                run_.model_ref = str(folder)
            runs[row["name"]] = run_
        except Exception as exc:
            row["refused"] = f"failed: {exc}"[:300]
            _log(f"{row['name']}: {row['refused']}")
    gemm_peaks: list[float | None] = []  # one per round, aligned with the rounds (None: not measured)
    for round_index in range(args.rounds):
        started = time.perf_counter()
        for name, run_ in runs.items():
            if run_.row.status == "pending":
                clock.log(f"round {round_index + 1}/{args.rounds}: {name}")
                _measure_row(cfg, run_, work, scenes, round_index)
        if args.fp32_floor:
            peak = measure_gemm_peak(args.threads).get("gflops_peak")
            gemm_peaks.append(float(peak) if peak else None)
        clock.round_done(started, args.rounds - 1, args)
    shares: dict[str, list[dict[str, Any]]] = {}
    for profile_round in range(args.profile_runs and args.profile_rounds):
        for name, run_ in runs.items():
            if run_.row.status == "pending":
                clock.log(f"profiling {name} ({profile_round + 1}/{args.profile_rounds})")
                _profile_row(cfg, run_, work, scenes)
                shares.setdefault(name, []).append(run_.row.profile or {})
    clock.log("done")
    reference = reference_name(list(runs)) or "torch fp32 eager, unfused"
    ref_masks = runs[reference].masks if reference in runs else None
    for row in rows:
        done = runs.get(row["name"])
        if done is None:
            continue
        if done.row.status != "pending":
            row["refused"] = row.get("refused") or done.row.reason
            continue
        stats = summarize(done.row.latencies_ms, 1)
        profiles = shares.get(row["name"], [])
        row.update(
            round_p50_ms=[round(t, 3) for t in round_p50s(done.row.latencies_ms, args.iters)],
            p50_ms=stats["p50_ms"],
            p90_ms=stats["p90_ms"],
            peak_rss_mb=done.row.peak_rss_mb,
            profile=median_profile(profiles) or done.row.profile,
            attention_share_rounds=[_share(p) for p in profiles if _share(p) is not None],
        )
        if done.masks is not None:
            scores = accuracy(done.masks, ref_masks, labels_arr, config.num_classes)
            row.update(agreement=scores["argmax_agreement"], miou_labels=scores["miou_vs_labels"])
    ref_miou = next((r.get("miou_labels") for r in rows if r["name"] == reference), None)
    for row in rows:
        if ref_miou is not None and row.get("miou_labels") is not None:
            row["miou_drop_pts"] = round(100 * (ref_miou - row["miou_labels"]), 3)
    machine = machine_info()
    machine["cpu_features"] = features
    machine["load_average"] = {"before": load_before, "after": load_average()}
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": _command_line(),
        "model": {"name": config.name, "weights": config.weights or "random (seeded, untrained preset)"},
        "config": {
            "size": list(size),
            "batch": 1,
            "threads": args.threads,
            "rounds": args.rounds,
            "iters": args.iters,
            "val": args.val,
            "calib_count": args.calib_count,
            "profile_runs": args.profile_runs,
            "attention_heads": args.attention_heads,
            "warmup": args.warmup,
            "variants": args.variants,
            "reuse_int8": args.reuse_int8,
            "openvino_attention": args.openvino_attention,
            "profile_rounds": args.profile_rounds,
            "duration_s": round(clock.elapsed()),
        },
        "machine": machine,
        "reference": reference,
        "flops_total": count_preset_flops(args.model, size).total if any(gemm_peaks) else None,
        "gemm_peak_gflops_rounds": gemm_peaks,
        "rows": rows,
        "goals": GOALS,
    }
    return derive(report)


def _command_line() -> str:
    """How this script was invoked, as a result file records it."""
    return "benchmarks/fused_attention.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def derive(report: dict[str, Any]) -> dict[str, Any]:
    """Every figure computed from a run's measurements (each row's per-round p50s and profile shares,
    the GEMM peak after every round, the FLOPs): the ratio base, each row's ratios, the FP32 floor and
    the verdict. Kept apart from the measuring so that a saved run can be re-derived (``--rederive``)
    when the way of reading it changes; the measurements themselves are never touched."""
    from danet_deploy.bench.timing import pair_rounds, ratio_spread

    rows = report["rows"]
    timed = [r for r in rows if r.get("round_p50_ms") and not r.get("refused")]
    # the faster torch eager row is the base, so neither form of the reference can flatter the ratios
    torch_rows = [r for r in timed if r["name"].startswith("torch")]
    base = min(torch_rows, key=lambda r: r["p50_ms"]) if torch_rows else None
    base_rounds = base["round_p50_ms"] if base else []
    for row in timed:
        rounds = row["round_p50_ms"]
        paired = pair_rounds(rounds, base_rounds)
        row.update(
            ratio_vs_torch_fp32=round(row["p50_ms"] / base["p50_ms"], 4) if base else None,
            ratio_rounds=paired,
            ratio_paired=ratio_spread(paired),
            ratio_of_medians=round(float(np.median(rounds)) / float(np.median(base_rounds)), 4) if base else None,
            ratio_of_fastest=round(min(rounds) / min(base_rounds), 4) if base else None,
        )
    report["ratio_base"] = base and base["name"]
    total, peaks = report.get("flops_total"), [p for p in report.get("gemm_peak_gflops_rounds") or [] if p]
    report["fp32_floor"] = fp32_floor(total, peaks, base_rounds) if total and peaks and base_rounds else None
    report["verdict"] = verdict(rows, report["fp32_floor"])
    return report


def fp32_floor(total_flops: int, gemm_peaks: list[float], torch_round_p50s: list[float]) -> dict[str, Any]:
    """The FP32 floor: the model's FLOPs at the best FP32 GEMM peak measured in the run
    (``floor_ms``, the time no FP32 engine beats on this CPU), as a ratio of torch eager's fastest
    round (both at the machine's fastest) and, at the median peak, of torch's median round.

    Why not round by round: a peak measured between two rounds was seen to read low while the
    engines' next rounds ran fast (FP32 rows ran below "their" round's floor), and a fast moment's
    peak over a slow moment's torch time reads a floor lower than any state the machine was in.
    """
    floor_ms = total_flops / (max(gemm_peaks) * 1e9) * 1e3
    median_floor_ms = total_flops / (float(np.median(gemm_peaks)) * 1e9) * 1e3
    return {
        "gflop": round(total_flops / 1e9, 3),
        "floor_ms": round(floor_ms, 2),
        "ratio_best": round(floor_ms / min(torch_round_p50s), 4),
        "ratio_median": round(median_floor_ms / float(np.median(torch_round_p50s)), 4),
    }


def _share(profile: dict[str, Any]) -> float | None:
    """The attention core's share of one per-op profile, ``None`` when it has none (a failed profile)."""
    share = (profile.get("attention") or {}).get("share")
    return float(share) if isinstance(share, (int, float)) else None


def median_profile(profiles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of several profiles of one row, the one whose attention share is the median (lower middle of
    an even count), so the tables shown are those of the figure quoted; ``None`` without any."""
    scored = sorted((p for p in profiles if _share(p) is not None), key=lambda p: _share(p) or 0.0)
    return scored[(len(scored) - 1) // 2] if scored else None


def _ratio(row: dict[str, Any]) -> float | None:
    """A row's figure against torch: the median of its per-round p50s over the base row's median
    round when there were rounds (a round off in either direction moves neither median), else
    the ratio of pooled p50s."""
    if row.get("ratio_of_medians") is not None and len(row.get("round_p50_ms") or []) >= 2:
        return float(row["ratio_of_medians"])
    return row.get("ratio_vs_torch_fp32")


def _median_share(row: dict[str, Any]) -> float | None:
    """The attention share of the row's median profile (the one whose tables are shown)."""
    return _share(row.get("profile") or {})


def verdict(rows: list[dict[str, Any]], floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The issue's three goals, read from this run's rows: ratios of median rounds (where there were
    rounds, with the paired per-round spread beside them), shares from the median profile."""

    def best(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        timed = [r for r in candidates if _ratio(r) is not None]
        if not timed:
            return None
        row = min(timed, key=lambda r: _ratio(r) or 0.0)
        return {"name": row["name"], "ratio": _ratio(row), "rounds": row.get("ratio_paired")}

    ov_int8 = [r for r in rows if r["name"].startswith("openvino int8") and _median_share(r) is not None]
    int8 = best([r for r in rows if " int8 " in f" {r['name']} " and (r.get("agreement") or 0) >= 0.99])
    if int8 is not None:
        int8["agreement"] = next(r.get("agreement") for r in rows if r["name"] == int8["name"])
    fp32 = best([r for r in rows if " fp32 " in f" {r['name']} " and not r["name"].startswith("torch")])
    return {
        "openvino_int8_attention_share": {r["name"]: _median_share(r) for r in ov_int8},
        "best_int8_at_99": int8,
        "best_fp32": fp32,
        "fp32_floor": floor and {k: floor[k] for k in ("floor_ms", "ratio_best", "ratio_median")},
    }


def _spread_text(values: list[float], scale: float = 1.0, digits: int = 3) -> str | None:
    """``lowest-highest`` of a list (scaled), ``None`` for an empty one."""
    return f"{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}" if values else None


def markdown(report: dict[str, Any]) -> str:
    from danet_deploy.bench.profile import profile_markdown

    cfg, cpu = report["config"], report["machine"]["cpu"]
    bf16 = any(report["machine"]["cpu_features"].get(f) for f in ("amx_bf16", "avx512_bf16"))
    lines = [
        f"# Fused attention: {report['model']['name']} {cfg['size'][0]}x{cfg['size'][1]}, {cfg['threads']} threads",
        "",
        f"- created {report['created']}; CPU: {cpu.get('model', '?')} (bf16: {'yes' if bf16 else 'no'})",
        f"- load average before/after: {report['machine']['load_average']}",
        f"- weights: {report['model']['weights']}; reference for agreement: {report['reference']}",
        *(
            [
                f"- figures re-derived from the run's measurements {report['rederived']['created']}: "
                f"`{report['rederived']['command']}`"
            ]
            if report.get("rederived")
            else []
        ),
        "",
        "```",
        report["command"],
        "```",
        "",
        "| variant | p50 ms (pooled) | x torch eager fp32, pooled p50s | x torch, median rounds | x torch, fastest "
        "rounds | paired rounds, lowest-highest | agreement | mIoU (labels) | drop pts | attention share (profiles) "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        share = _median_share(r)
        shares = r.get("attention_share_rounds") or []
        cells = [
            r["name"],
            r.get("p50_ms"),
            r.get("ratio_vs_torch_fp32"),
            r.get("ratio_of_medians"),
            r.get("ratio_of_fastest"),
            _spread_text(r.get("ratio_rounds") or []),
            f"{100 * r['agreement']:.2f}%" if r.get("agreement") is not None else None,
            r.get("miou_labels"),
            r.get("miou_drop_pts"),
            f"{100 * share:.1f}%" + (f" ({_spread_text(shares, 100, 1)}%)" if len(shares) > 1 else "")
            if share is not None
            else None,
            r.get("refused") or r.get("reused") or "",
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    floor = report.get("fp32_floor")
    if floor:
        peaks = [p for p in report.get("gemm_peak_gflops_rounds") or [] if p]
        lines += [
            "",
            f"FP32 floor: {floor['gflop']} GFLOP at the best FP32 GEMM peak of the run ({max(peaks)} GFLOP/s; "
            f"{len(peaks)} measurements, one after each round, lowest {min(peaks)}) take {floor['floor_ms']} ms: "
            "no engine doing these multiply-adds in FP32 runs faster here. That is "
            f"{floor['ratio_best']}x torch eager FP32's fastest round (both at the machine's fastest) and, at the "
            f"median peak, {floor['ratio_median']}x its median round.",
        ]
    lines += [
        "",
        f"Ratio base: {report.get('ratio_base')}. Median rounds: the median of a row's per-round p50s over the "
        "base's median round (the goals are read from it); fastest rounds: a row's fastest round over the base's "
        "fastest (both at the machine's best: interference only slows a round); paired rounds: round k over the "
        "base's round k (rounds are interleaved). Attention share: the median of "
        f"{cfg.get('profile_rounds', 1)} profile process(es) (lowest-highest beside it), whose tables are below.",
        "",
        f"Goals: {report['goals']}",
        "",
        "```json",
        json.dumps(report["verdict"], indent=1),
        "```",
        "",
    ]
    table_report = {**report, "rows": [{**r, "engine": r["name"], "precision": ""} for r in report["rows"]]}
    return "\n".join(lines) + "\n" + profile_markdown(table_report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="danet_demo")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per variant and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed inferences per process before timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, a fresh process each (pooled p50)")
    parser.add_argument("--val", type=int, default=8, help="generated val scenes scored")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--profile-runs", type=int, default=5, help="inferences per per-op profile (0: none)")
    parser.add_argument("--attention-heads", type=int, default=2, help="OpenVINO attention_heads of the fused rows")
    parser.add_argument(
        "--profile-rounds",
        type=int,
        default=1,
        help="per-op profiles per variant, interleaved; shares are their median",
    )
    parser.add_argument(
        "--no-fp32-floor",
        dest="fp32_floor",
        action="store_false",
        help="skip the FP32 GEMM peak measured after each round (the FP32 floor)",
    )
    parser.add_argument(
        "--variants",
        choices=VARIANT_SETS,
        default="all",
        help="all rows, or only those the issue's goals are read from (fits danet_r50_d8 in ~10 min)",
    )
    parser.add_argument(
        "--openvino-attention",
        choices=("fused", "sdpa"),
        default="fused",
        help="OpenVINO's attention option for its fused rows (sdpa: the MultiHeadAttention form)",
    )
    parser.add_argument(
        "--reuse-int8",
        action="store_true",
        help="the attention-bf16 row loads the INT8 fused OpenVINO artifact with inference_precision="
        "bf16 instead of calibrating the same IR again (what --policy attention-bf16 records)",
    )
    parser.add_argument("--only", nargs="*", default=[], help="keep variants whose name contains one of these")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--suffix",
        default="",
        help="appended to the result files' stem (fused_attention-<model>-<H>x<W><suffix>), to keep earlier runs",
    )
    parser.add_argument(
        "--rederive",
        type=Path,
        metavar="JSON",
        help="measure nothing: re-derive the ratios, floor and verdict of a saved result file from its "
        "measurements, and rewrite its .json/.md/.png",
    )
    args = parser.parse_args(argv)
    if "/" in args.suffix or "\\" in args.suffix:
        parser.error(f"--suffix {args.suffix!r} must be part of a file name (no path separators)")
    if args.profile_rounds < 1:
        parser.error(f"--profile-rounds must be at least 1, got {args.profile_rounds}")
    if args.rederive is not None:
        try:
            report = derive(_measurements_of(json.loads(args.rederive.read_text())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            parser.error(f"--rederive {args.rederive}: not a result file of this script ({exc})")
        report["rederived"] = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": _command_line(),
        }
        try:
            write_outputs(report, args.rederive.parent / args.rederive.name.removesuffix(".json"))
        except OSError as exc:
            parser.error(f"--rederive {args.rederive}: cannot write the results beside it ({exc})")
        return 0
    with tempfile.TemporaryDirectory(prefix="fused-attention-") as tmp:
        report = run(args, Path(tmp))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(report, args.output_dir / f"fused_attention-{args.model}-{args.size[0]}x{args.size[1]}{args.suffix}")
    return 0


def _measurements_of(report: dict[str, Any]) -> dict[str, Any]:
    """A saved report with its measurements where :func:`derive` reads them: files written before
    the FP32 floor was read from the best peak kept the per-round peaks inside ``fp32_floor`` and
    no FLOP count (recounted here from the model and size, which is exact)."""
    old_floor = report.get("fp32_floor") or {}
    if "gemm_peak_gflops_rounds" not in report and "gemm_peak_gflops_rounds" in old_floor:
        from danet_deploy.bench.flops import count_preset_flops

        size = report["config"]["size"]
        report = {
            **report,
            "flops_total": count_preset_flops(report["model"]["name"], (int(size[0]), int(size[1]))).total,
            "gemm_peak_gflops_rounds": old_floor["gemm_peak_gflops_rounds"],
        }
    return report


def write_outputs(report: dict[str, Any], stem: Path) -> None:
    """``STEM.json`` (the report), ``STEM.md`` (tables, verdict, profiles) and ``STEM.png`` (the
    per-op profile plot), each written whole; the Markdown is printed too."""
    from danet_deploy.bench.profile import plot_profile
    from danet_deploy.util.files import atomic_write_text

    atomic_write_text(stem.parent / f"{stem.name}.json", json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    plotted = [{**r, "engine": r["name"], "precision": ""} for r in report["rows"] if r.get("profile")]
    if plotted:
        plot_profile({**report, "rows": plotted}, stem.parent / f"{stem.name}.png")
        text += f"\n![per-op profile]({stem.name}.png)\n"
    atomic_write_text(stem.parent / f"{stem.name}.md", text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
