#!/usr/bin/env bash
# The GPU checks of issue 11 as one command (run from anywhere):
#     bash benchmarks/gpu_check.sh            # writes benchmarks/results/*_cuda_*.json
# 1. bench_inference.py --device cuda (float32) and --amp (float16 autocast), R-50-DC5, 600x1000
# 2. bench_train.py --device cuda (float32), R-50-DC5, 600x1000
# 3. check_amp.py --device cuda: AMP detections match float32 (tolerance printed; exit 1 if not)
# fps are printed by each benchmark (ms/frame and fps columns), with the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-benchmarks/results}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: no CUDA device")'
"$PY" benchmarks/bench_inference.py --device cuda --repeat 3 --json "$OUT/inference_cuda_r50_600x1000.json"
"$PY" benchmarks/bench_inference.py --device cuda --amp --repeat 3 --json "$OUT/inference_cuda_amp_r50_600x1000.json"
"$PY" benchmarks/bench_train.py --device cuda --iters 10 --warmup 3 --json "$OUT/train_cuda_r50_600x1000.json"
"$PY" benchmarks/check_amp.py --device cuda
