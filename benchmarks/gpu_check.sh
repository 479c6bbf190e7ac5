#!/usr/bin/env bash
# The prepared GPU check: one command, one folder with gpu_check.json and gpu_check.md.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--device cuda|cuda:N|cpu] [--sections a,b,...] [--methods m,...]
#
# On an H100/H200 it takes under 8 minutes: every method's FPS at 1/2/4/8 objects at 480p in
# bf16 (paper and shipped size), whole `vostool segment` processes on a 480p mp4, RAFT-small ms
# per frame, one training step's time and memory, and CUDA-vs-CPU mask agreement on the example
# clip. `--device cpu` is its smoke test (tiny networks, small frames): under 2 minutes.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
