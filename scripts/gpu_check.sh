#!/usr/bin/env bash
# The GPU path, ready to prove on a machine with CUDA (scripts/gpu_check.py says what it runs): model=base with
# trainer=gpu (bf16-mixed, DDP over every GPU when there are several) for a few hundred steps, its images/s and peak
# memory, a sampling on the GPU against the CPU with the same seed, all in one JSON, within 8 minutes.
#
#   scripts/gpu_check.sh [OUT_JSON] [STEPS]     # defaults: $OUT/gpu_check.json (or ./gpu_check.json), 300 steps
#   scripts/gpu_check.sh --smoke [OUT_JSON]     # the tiny model on the CPU: tests the script without a GPU
#
# Exit status 0 when every step ran and the GPU's digits match the CPU's within the tolerance, 1 otherwise (the JSON
# says which), 2 on bad arguments. DDPM_DATA_ROOT names the folder that holds MNIST/raw.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=()
if [ "${1:-}" = "--smoke" ]; then
    smoke=(--smoke)
    shift
fi
out="${1:-${OUT:-.}/gpu_check.json}"
steps="${2:-300}"
if ! [[ "$steps" =~ ^[0-9]+$ ]]; then
    echo "error: STEPS=$steps is not a whole number of training steps, e.g. 300" >&2
    exit 2
fi
if [ ${#smoke[@]} -eq 0 ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
fi
exec timeout 480 python scripts/gpu_check.py "${smoke[@]}" --out "$out" --steps "$steps" --deadline 450
