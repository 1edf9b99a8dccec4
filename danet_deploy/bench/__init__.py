"""Cross-backend benchmark: timing, memory, FLOP count, GEMM peak, machine facts, reports, plots.

Entry points: :func:`danet_deploy.bench.runner.run_benchmark` (and the ``danet-bench`` CLI);
the JSON schema is documented in :mod:`danet_deploy.bench.report`.
"""
