#!/usr/bin/env bash
# Reproduce benchmarks/results/danet_r50_d8-512x1024: the paper-size DANet (dilated ResNet-50,
# output stride 8) at 512x1024 with RANDOM (seeded) weights: latency, memory and FLOP figures
# are real, accuracy columns only say how closely each engine follows the FP32 reference
# (random weights make attention nearly one-hot, so INT8 agreement here is pessimistic).
# Fewer iterations than the demo run: one forward pass is ~0.9 TFLOP.
# The results folder is this script's own, so its reports are replaced (--force).
#   usage: benchmarks/run_paper.sh [extra danet-bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m danet_deploy.cli.bench \
    --model danet_r50_d8 --input-size 512x1024 \
    --targets torch,onnxruntime,openvino --precisions fp32,int8 \
    --threads 2 --iters 3 --rounds 1 --warmup 1 --scenes 2 --calib-count 8 \
    --artifacts artifacts/bench --force --output benchmarks/results/danet_r50_d8-512x1024 "$@"
