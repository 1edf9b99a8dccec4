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


def measure_gemm_peak(threads: int, n: int = 2048, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Best-of-``repeats`` GFLOP/s of an ``n x n`` float32 matmul with ``threads`` intra-op threads.

    The best (not the median) run is reported because the question is what the hardware can
    reach; interference from other processes only ever makes a run slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen)
        b = torch.randn(n, n, generator=gen)
        out = torch.empty(n, n)
        for _ in range(warmup):
            torch.mm(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter_ns() - start)
    finally:
        torch.set_num_threads(previous)
    flops = 2 * n ** 3
    best = min(times) / 1e9
    median = sorted(times)[len(times) // 2] / 1e9
    return {"method": f"torch.mm float32 {n}x{n}x{n}", "threads": int(threads), "repeats": repeats,
            "gflops_peak": round(flops / best / 1e9, 2), "gflops_median": round(flops / median / 1e9, 2)}
