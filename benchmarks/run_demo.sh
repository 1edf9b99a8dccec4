#!/usr/bin/env bash
# Reproduce benchmarks/results/danet_demo-512x512: the shipped demo model (trained on generated
# street scenes) at 512x512 on every CPU engine and precision, 2 threads each, 3 interleaved
# rounds of 10 timed iterations per combination, accuracy on 8 generated val scenes.
# Artifacts are exported once into artifacts/bench/ and reused on later runs.
# The results folder is this script's own, so its reports are replaced (--force).
#   usage: benchmarks/run_demo.sh [extra danet-bench options]  (later options win, so
#   benchmarks/results/danet_demo-512x512-1thread came from
#   benchmarks/run_demo.sh --threads 1 --rounds 2 --output benchmarks/results/danet_demo-512x512-1thread)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m danet_deploy.cli.bench \
    --model danet_demo --input-size 512x512 \
    --targets torch,onnxruntime,openvino --precisions fp32,fp16,int8 \
    --threads 2 --iters 10 --rounds 3 --warmup 2 --scenes 8 --calib-count 32 \
    --artifacts artifacts/bench --force --output benchmarks/results/danet_demo-512x512 "$@"
