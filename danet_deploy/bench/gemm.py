"""This CPU's measured FP32 GEMM peak, the yardstick for each engine's achieved GFLOP/s.

Why measure instead of computing ``cores * GHz * FLOPs/cycle``: clocks, SMT siblings, shared
hosts and the BLAS actually linked all change what is reachable; a square SGEMM through torch's
BLAS with the same thread count as the benchmark is the practical ceiling a convolution
engine can approach. 2048^3 rather than 1024^3: on a shared 2-core machine the smaller product
is dominated by thread-barrier waits (measured 53-238 GFLOP/s from run to run here), the larger
one much less so. Runs in the caller's process in one to three seconds.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import summarize_exception


def measure_gemm_peak(threads: int, n: int = 2048, repeats: int = 5, warmup: int = 1,
                      dtype: str = "float32") -> dict[str, Any]:
    """Best-of-``repeats`` GFLOP/s (GOP/s for int8) of an ``n x n`` matmul with ``threads`` threads.

    ``dtype="int8"`` times ``torch._int_mm`` (int8 x int8 -> int32, oneDNN: VNNI/AMX where the
    CPU has them), the yardstick for INT8 rows: on such CPUs it is a multiple of the FP32 peak,
    so measuring INT8 engines against the FP32 peak would overstate their efficiency.
    The best (not the median) run is reported because the question is what the hardware can
    reach; interference from other processes only ever makes a run slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator().manual_seed(0)
        if dtype == "int8":
            a = torch.randint(-127, 128, (n, n), generator=gen, dtype=torch.int8)
            b = torch.randint(-127, 128, (n, n), generator=gen, dtype=torch.int8)

            def run() -> Any:
                return torch._int_mm(a, b)
            method = f"torch._int_mm int8 {n}x{n}x{n} -> int32"
        elif dtype == "float32":
            a = torch.randn(n, n, generator=gen)
            b = torch.randn(n, n, generator=gen)
            out = torch.empty(n, n)

            def run() -> Any:
                return torch.mm(a, b, out=out)
            method = f"torch.mm float32 {n}x{n}x{n}"
        else:
            raise ValueError(f"dtype must be 'float32' or 'int8', got {dtype!r}")
        try:
            for _ in range(warmup):
                run()
        except RuntimeError as exc:  # an int8 GEMM this torch build cannot run on this CPU
            return {"method": method, "threads": int(threads), "error": summarize_exception(exc),
                    "gflops_peak": None, "gflops_median": None}
        times = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            run()
            times.append(time.perf_counter_ns() - start)
    finally:
        torch.set_num_threads(previous)
    flops = 2 * n ** 3
    best = min(times) / 1e9
    median = sorted(times)[len(times) // 2] / 1e9
    return {"method": method, "threads": int(threads), "repeats": repeats,
            "gflops_peak": round(flops / best / 1e9, 2), "gflops_median": round(flops / median / 1e9, 2)}
