"""Cross-backend benchmark: timing, memory, FLOP count, GEMM peak, machine facts, reports, plots.

Entry points: :func:`danet_deploy.bench.request.run_bench` with a
:class:`~danet_deploy.bench.request.BenchRequest` (what ``danet-bench`` runs: checks, benchmark,
report files) and, below it, :func:`danet_deploy.bench.runner.run_benchmark` (a
:class:`~danet_deploy.bench.runner.BenchConfig` in, a typed
:class:`~danet_deploy.bench.report.BenchReport` out); the JSON schema is documented in
:mod:`danet_deploy.bench.report`.
"""
