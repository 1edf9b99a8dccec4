"""This CPU's measured GEMM peaks (FP32 and INT8), the yardsticks for each engine's achieved rate.

Why measure instead of computing ``cores * GHz * FLOPs/cycle``: clocks, SMT siblings, shared
hosts and the kernels actually linked all change what is reachable. Why several candidates and
sizes, best kept: a yardstick that reads low makes an engine look better than the hardware
allows (an ONNX Runtime FP32 row once showed 119% of a single ``torch.mm`` 2048³; an INT8 row
showed 7099% of ``torch._int_mm``, which on a CPU without VNNI takes a slow reference path).
So the FP32 peak is the best of ``torch.mm`` and ONNX Runtime's own ``MatMul`` (MLAS, the
kernels ORT's convolutions use) over several sizes and runs, and the INT8 peak is measured with
an engine's own INT8 matrix multiply -- ONNX Runtime ``MatMulInteger`` and ``QLinearMatMul``
(u8 x s8, the format the exporter picks on x86), built with ``onnx.helper`` -- never with a
torch kernel the INT8 engines do not use. When no INT8 engine is installed the INT8 peak is
``None`` with the reason, and INT8 rows get no efficiency (rather than a wrong one).

Interference from other processes only ever makes a run slower, so the best (not the median)
run is the estimate of what the hardware reaches. Runs in the caller's process in a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import summarize_exception

#: Square sizes tried by default: small ones suffer thread-barrier waits, large ones cache misses.
DEFAULT_SIZES: tuple[int, ...] = (1024, 2048)
DTYPES = ("float32", "int8")


def _time(run: Callable[[], Any], repeats: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - start)
    return times


def _torch_mm(n: int, threads: int) -> tuple[str, Callable[[], Any], Callable[[], None]]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    gen = torch.Generator().manual_seed(0)
    a, b, out = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen), torch.empty(n, n)
    return f"torch.mm float32 {n}x{n}x{n}", lambda: torch.mm(a, b, out=out), lambda: torch.set_num_threads(previous)


def matmul_model(n: int, op: str) -> Any:
    """A one-node ONNX graph ``Y = A @ B`` (``B`` a constant, as weights are) for ``op``.

    ``op``: ``MatMul`` (float32), ``MatMulInteger`` (u8 x s8 -> int32) or ``QLinearMatMul``
    (u8 x s8 -> u8 with scales and zero points, what ORT's QDQ fusion runs).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = []
    if op == "MatMul":
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B"))
        a_type, y_type, inputs = TensorProto.FLOAT, TensorProto.FLOAT, ["A", "B"]
    elif op == "MatMulInteger":
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B"))
        a_type, y_type, inputs = TensorProto.UINT8, TensorProto.INT32, ["A", "B"]
    elif op == "QLinearMatMul":
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B"),
            numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "b_zp"),
            numpy_helper.from_array(np.array(float(n), np.float32), "y_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "y_zp"),
        ]
        a_type, y_type = TensorProto.UINT8, TensorProto.UINT8
        inputs = ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp", "y_scale", "y_zp"]
    else:
        raise ValueError(f"op must be MatMul, MatMulInteger or QLinearMatMul, got {op!r}")
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["Y"])],
        f"gemm_{op}",
        [helper.make_tensor_value_info("A", a_type, [n, n])],
        [helper.make_tensor_value_info("Y", y_type, [n, n])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _ort_matmul(op: str, n: int, threads: int) -> tuple[str, Callable[[], Any], Callable[[], None]]:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(matmul_model(n, op).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    a: np.ndarray
    if op == "MatMul":
        a, out = rng.standard_normal((n, n), dtype=np.float32), np.empty((n, n), np.float32)
    else:
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        out = np.empty((n, n), np.int32 if op == "MatMulInteger" else np.uint8)
    binding = session.io_binding()  # preallocated output: time the multiply, not an allocation
    binding.bind_cpu_input("A", a)
    binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy(out))
    kind = {"MatMul": "float32", "MatMulInteger": "u8 x s8 -> int32", "QLinearMatMul": "u8 x s8 -> u8"}[op]
    return (f"onnxruntime {op} {kind} {n}x{n}x{n}", lambda: session.run_with_iobinding(binding), lambda: None)


def _candidates(
    dtype: str,
) -> list[tuple[str, Callable[[int, int], tuple[str, Callable[[], Any], Callable[[], None]]]]]:
    """(package, factory) of every GEMM that can stand for ``dtype``'s peak."""
    if dtype == "float32":
        return [("torch", _torch_mm), ("onnxruntime", lambda n, t: _ort_matmul("MatMul", n, t))]
    return [
        ("onnxruntime", lambda n, t: _ort_matmul("MatMulInteger", n, t)),
        ("onnxruntime", lambda n, t: _ort_matmul("QLinearMatMul", n, t)),
    ]


def measure_gemm_peak(
    threads: int,
    n: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    dtype: str = "float32",
    sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The best GFLOP/s (GOP/s for int8) of every candidate GEMM at every size, ``threads`` threads.

    Returns ``{method, threads, repeats, sizes, gflops_peak, gflops_median, candidates[], reason}``:
    the fastest candidate's method and numbers, every candidate's result (or its error), and --
    when no candidate ran -- ``gflops_peak: None`` with the reason. ``n`` is one size (tests);
    ``sizes`` several (default :data:`DEFAULT_SIZES`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    chosen = [int(n)] if n is not None else list(sizes or DEFAULT_SIZES)
    results: list[dict[str, Any]] = []
    for package, factory in _candidates(dtype):
        for size in chosen:
            try:
                method, run, restore = factory(size, threads)
            except ImportError:
                results.append({"method": f"{package} ({dtype} {size})", "error": f"{package} not installed"})
                continue
            except Exception as exc:
                results.append({"method": f"{package} ({dtype} {size})", "error": summarize_exception(exc)})
                continue
            try:
                times = _time(run, repeats, warmup)
            except Exception as exc:
                results.append({"method": method, "error": summarize_exception(exc)})
                continue
            finally:
                restore()
            ops = 2 * size**3
            results.append(
                {
                    "method": method,
                    "n": size,
                    "gflops_peak": round(ops / (min(times) / 1e9) / 1e9, 2),
                    "gflops_median": round(ops / (sorted(times)[len(times) // 2] / 1e9) / 1e9, 2),
                }
            )
    ran = [r for r in results if r.get("gflops_peak")]
    out: dict[str, Any] = {
        "threads": int(threads),
        "repeats": repeats,
        "sizes": chosen,
        "dtype": dtype,
        "candidates": results,
    }
    if not ran:
        errors = "; ".join(f"{r['method']}: {r['error']}" for r in results) or "no candidate"
        return out | {
            "method": None,
            "gflops_peak": None,
            "gflops_median": None,
            "reason": f"no {dtype} GEMM could be measured ({errors})",
        }
    best = max(ran, key=lambda r: r["gflops_peak"])
    return out | {
        "method": best["method"],
        "gflops_peak": best["gflops_peak"],
        "gflops_median": best["gflops_median"],
        "reason": None,
    }


def efficiency(
    achieved: float | None, peak: Mapping[str, Any] | None, precision: str
) -> tuple[float | None, str | None]:
    """(fraction of ``peak`` reached, or ``None`` with the reason) for a row of ``precision``.

    A fraction above 1 means the yardstick read low on this run (the machine was busier while it
    was measured than while the row ran): then no efficiency is given, rather than a wrong one.
    """
    if achieved is None:
        return None, None
    if not peak or not peak.get("gflops_peak"):
        why = (peak or {}).get("reason") or f"no {precision} GEMM peak was measured"
        return None, f"unknown: {why}"
    fraction = achieved / peak["gflops_peak"]
    if fraction > 1.0:
        return None, (
            f"unknown: {achieved:.1f} GFLOP/s is above the measured {precision} GEMM peak "
            f"{peak['gflops_peak']} ({peak['method']}); the yardstick read low on this run"
        )
    return round(fraction, 4), None
