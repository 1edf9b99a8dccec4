"""Does zero-padding PAM's query/key head size (C/8) let the CPU engines' attention kernels run faster?

Zero columns add nothing to a dot product, so ``softmax(pad(q) pad(k)ᵀ) v`` is the same maths as
``softmax(q kᵀ) v``; the question is only speed: would a head size of 16/32/64 (the value's) reach
a faster (AMX/brgemm) path than DANet's 8? Standalone PAM at ``danet_demo`` 512x512's shape
(N = 4096, query/key 8, value 64, batch 1, one head) in each form the exporters write:

* ``unfused``: ``MatMul -> Softmax -> MatMul`` on ``[1,1,N,.]`` tensors;
* ``heads2``: queries split into 2 groups, key/value tiled (``attention=fused`` on OpenVINO);
* ``mha``: ``com.microsoft.MultiHeadAttention`` (``attention=fused`` on ONNX Runtime; OpenVINO's
  frontend reads it as ``ScaledDotProductAttention``),

each with the query/key padded to 8 (none), 16, 32 and 64, on OpenVINO (f32 and, on AMX/AVX512-BF16
CPUs, bf16) and ONNX Runtime (f32); and PyTorch's ``softmax(q kᵀ) v`` and
``F.scaled_dot_product_attention`` (f32, bf16), whose fused flash kernel (pad 64: equal head sizes)
is the yardstick of what a fused CPU attention kernel reaches at this shape. Each engine runs in
its own process (idle thread pools of one engine slow the other); inside it every variant is
timed in interleaved repetitions (median of ``--reps``, each the mean of 3 inferences), and the
ratio is against the same form unpadded from the same run.

    .venv/bin/python benchmarks/attention_padding.py [--n 4096] [--reps 15]

Writes ``benchmarks/results/attention_padding.{json,md}`` with the machine (CPU flags, load).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY_DIM, VALUE_DIM = 8, 64
PADS = (8, 16, 32, 64)
FORMS = {"openvino": ("unfused", "heads2", "mha"), "onnxruntime": ("unfused", "mha"), "torch": ("unfused", "sdpa")}


def graph(n: int, form: str, pad: int) -> Any:
    """PAM as one ONNX model in ``form`` with query/key zero-padded to ``pad`` columns."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 1, n, KEY_DIM]),
        helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 1, KEY_DIM, n]),
        helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 1, n, VALUE_DIM]),
    ]
    nodes: list[Any] = []
    consts: dict[str, list[int]] = {}
    q, k, v = "q", "k", "v"
    if pad > KEY_DIM:
        consts |= {"pad_q": [0, 0, 0, 0, 0, 0, 0, pad - KEY_DIM], "pad_k": [0, 0, 0, 0, 0, 0, pad - KEY_DIM, 0]}
        nodes += [helper.make_node("Pad", ["q", "pad_q"], ["qp"]), helper.make_node("Pad", ["k", "pad_k"], ["kp"])]
        q, k = "qp", "kp"
    opsets = [helper.make_opsetid("", 17)]
    if form == "mha":
        consts["axis1"] = [1]
        nodes += [
            helper.make_node("Squeeze", [q, "axis1"], ["q3"]),
            helper.make_node("Transpose", [k], ["kt"], perm=[0, 1, 3, 2]),
            helper.make_node("Squeeze", ["kt", "axis1"], ["k3"]),
            helper.make_node("Squeeze", [v, "axis1"], ["v3"]),
            helper.make_node(
                "MultiHeadAttention", ["q3", "k3", "v3"], ["o3"], domain="com.microsoft", num_heads=1, scale=1.0
            ),
            helper.make_node("Unsqueeze", ["o3", "axis1"], ["out"]),
        ]
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    else:
        heads = 2 if form == "heads2" else 1
        out = "out"
        if heads > 1:
            consts |= {"split": [0, heads, -1, 0], "join": [0, 1, -1, 0], "tile": [1, heads, 1, 1]}
            nodes += [
                helper.make_node("Reshape", [q, "split"], ["qh"]),
                helper.make_node("Tile", [k, "tile"], ["kh"]),
                helper.make_node("Tile", [v, "tile"], ["vh"]),
            ]
            q, k, v, out = "qh", "kh", "vh", "oh"
        nodes += [
            helper.make_node("MatMul", [q, k], ["energy"]),
            helper.make_node("Softmax", ["energy"], ["attention"], axis=-1),
            helper.make_node("MatMul", ["attention", v], [out]),
        ]
        if heads > 1:
            nodes.append(helper.make_node("Reshape", ["oh", "join"], ["out"]))
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, n, VALUE_DIM])
    initializers = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in consts.items()]
    return helper.make_model(helper.make_graph(nodes, "pam", inputs, [output], initializers), opset_imports=opsets)


def feeds(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "q": (0.3 * rng.standard_normal((1, 1, n, KEY_DIM))).astype(np.float32),
        "k": (0.3 * rng.standard_normal((1, 1, KEY_DIM, n))).astype(np.float32),
        "v": rng.standard_normal((1, 1, n, VALUE_DIM)).astype(np.float32),
    }


def reference(x: dict[str, np.ndarray]) -> np.ndarray:
    energy = x["q"][0, 0].astype(np.float64) @ x["k"][0, 0]
    weights = np.exp(energy - energy.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ x["v"][0, 0]


def engine_runs(engine: str, n: int, threads: int, bf16: bool) -> dict[str, tuple[Any, str]]:
    """``{variant: (run, kernels)}`` for one engine (``kernels``: OpenVINO's runtime op types)."""
    x = feeds(n)
    runs: dict[str, tuple[Any, str]] = {}
    if engine == "openvino":
        import openvino as ov

        core = ov.Core()
        for precision in ("f32", "bf16") if bf16 else ("f32",):
            for form in FORMS[engine]:
                for pad in PADS:
                    model = ov.convert_model(io.BytesIO(graph(n, form, pad).SerializeToString()))
                    compiled = core.compile_model(
                        model,
                        "CPU",
                        {
                            "INFERENCE_NUM_THREADS": threads,
                            "PERFORMANCE_HINT": "LATENCY",
                            "INFERENCE_PRECISION_HINT": precision,
                        },
                    )
                    kinds = sorted(
                        {op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops()}
                        - {"Input", "Output", "Const", "Parameter", "Result"}
                    )
                    request = compiled.create_infer_request()
                    runs[f"openvino {precision} {form} pad{pad}"] = (
                        lambda r=request, c=compiled: r.infer(x)[c.output(0)],
                        "/".join(kinds),
                    )
    elif engine == "torch":
        runs.update(_torch_runs(x, threads, bf16))
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        for form in FORMS[engine]:
            for pad in PADS:
                session = ort.InferenceSession(
                    graph(n, form, pad).SerializeToString(), options, providers=["CPUExecutionProvider"]
                )
                runs[f"onnxruntime f32 {form} pad{pad}"] = (lambda s=session: s.run(None, x)[0], "")
    return runs


def _torch_runs(x: dict[str, np.ndarray], threads: int, bf16: bool) -> dict[str, tuple[Any, str]]:
    """PyTorch's forms: ``softmax(q kᵀ) v`` and ``F.scaled_dot_product_attention`` (scale 1), f32
    and, where the CPU has it, bf16. SDPA takes PyTorch's fused flash kernel only when query/key
    and value share a head size (pad 64 here): that row is what a fused CPU attention kernel
    reaches at this shape, the yardstick for the engines' rows."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    runs: dict[str, tuple[Any, str]] = {}
    for precision, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16))[: 2 if bf16 else 1]:
        for form in FORMS["torch"]:
            for pad in PADS:
                q = F.pad(torch.from_numpy(x["q"]), (0, pad - KEY_DIM)).to(dtype)
                k = F.pad(torch.from_numpy(x["k"]).transpose(-1, -2), (0, pad - KEY_DIM)).to(dtype)
                v = torch.from_numpy(x["v"]).to(dtype)

                def run(q: Any = q, k: Any = k, v: Any = v, form: str = form) -> np.ndarray:
                    with torch.inference_mode():
                        if form == "sdpa":
                            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
                        else:
                            out = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
                    return out.float().numpy()

                runs[f"torch {precision} {form} pad{pad}"] = (run, "")
    return runs


def measure(engine: str, n: int, threads: int, reps: int, bf16: bool) -> list[dict[str, Any]]:
    """Interleaved medians of every variant of one engine, with its ratio to the unpadded form."""
    want = reference(feeds(n))  # numpy's BLAS before the engine's thread pools exist
    runs = engine_runs(engine, n, threads, bf16)
    errors = {
        name: float(np.abs(np.asarray(run()[0, 0], dtype=np.float64) - want).max()) for name, (run, _) in runs.items()
    }
    for run, _ in runs.values():
        run(), run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, (run, _) in runs.items():
            started = time.perf_counter()
            run(), run(), run()
            times[name].append((time.perf_counter() - started) / 3 * 1e3)
    rows = []
    for name, (_, kinds) in runs.items():
        base = name.rsplit(" pad", 1)[0] + f" pad{KEY_DIM}"
        rows.append(
            {
                "variant": name,
                "median_ms": round(float(np.median(times[name])), 3),
                "x_unpadded": round(float(np.median(times[name]) / np.median(times[base])), 3),
                "max_error_vs_float64": errors[name],
                "kernels": kinds,
            }
        )
    return rows


def fastest_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The fastest variant per engine and precision: how close each engine's attention gets to the
    fastest kernel measured at this shape (medians from separate processes, same run)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        engine, precision = row["variant"].split()[:2]
        if (engine, precision) not in best or row["median_ms"] < best[engine, precision]["median_ms"]:
            best[engine, precision] = row
    return ["Fastest per engine and precision:", ""] + [
        f"- {engine} {precision}: {row['median_ms']} ms ({row['variant']})"
        for (engine, precision), row in sorted(best.items(), key=lambda item: item[1]["median_ms"])
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="positions (H*W/64; 4096 = a 512x512 input)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--engine", choices=tuple(FORMS), help=argparse.SUPPRESS)  # the per-engine child process
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    from danet_deploy.export.policy import BF16_FLAGS
    from danet_deploy.util.cpu import cpu_features

    features = cpu_features()
    bf16 = any(features.get(f) for f in BF16_FLAGS)
    if args.engine:
        print(json.dumps(measure(args.engine, args.n, args.threads, args.reps, bf16)))
        return 0
    from danet_deploy.bench.machine import load_average, machine_info
    from danet_deploy.util.files import atomic_write_text

    before = load_average()
    rows: list[dict[str, Any]] = []
    for engine in FORMS:
        print(f"[attention_padding] {engine}", file=sys.stderr, flush=True)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--n",
                str(args.n),
                "--threads",
                str(args.threads),
                "--reps",
                str(args.reps),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    machine = machine_info() | {"cpu_features": features, "load_average": {"before": before, "after": load_average()}}
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n": args.n,
        "key_dim": KEY_DIM,
        "value_dim": VALUE_DIM,
        "threads": args.threads,
        "reps": args.reps,
        "machine": machine,
        "rows": rows,
    }
    lines = [
        f"# Zero-padded PAM query/key: N = {args.n}, query/key {KEY_DIM}, value {VALUE_DIM}, {args.threads} threads",
        "",
        f"- created {report['created']}; CPU: {machine['cpu'].get('model', '?')} (bf16: {'yes' if bf16 else 'no'})",
        f"- load average before/after: {machine['load_average']}",
        "- median of interleaved repetitions; `x unpadded`: against the same engine, precision and form at "
        f"pad {KEY_DIM}, same run",
        "",
        "| variant | median ms | x unpadded | max error vs float64 | runtime kernels |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['median_ms']} | {r['x_unpadded']} | {r['max_error_vs_float64']:.1e} | {r['kernels']} |"
        for r in rows
    ]
    lines += ["", *fastest_lines(rows)]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output_dir / "attention_padding.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(args.output_dir / "attention_padding.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
