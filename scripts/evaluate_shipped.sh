#!/usr/bin/env bash
# Evaluation table of the shipped model (checkpoints/mnist/README.md). Usage:
#   DDPM_DATA_ROOT=../shared/data bash scripts/evaluate_shipped.sh [CHECKPOINT] [OUT_DIR] [N] [N_DDPM]
# PART=ddim|ddpm|all, THREADS=N (torch threads).
# N samples for the DDIM rows, N_DDPM for the (1000-step, slow on a CPU) DDPM rows.
set -euo pipefail
ckpt=${1:-checkpoints/mnist}
out=${2:-$ckpt/eval}
n=${3:-1000}
n_ddpm=${4:-$n}
guidance=${GUIDANCE:-2.0}
py=${PYTHON:-python}
mkdir -p "$out"
run() {  # sampler steps guidance samples
  local name="$1-$2-w$3"
  echo "== $name ($4 samples)"
  $py -m ddpmlib.evaluate --checkpoint "$ckpt" --sampler "$1" --steps "$2" --guidance "$3" \
    --num-samples "$4" --seed 0 --threads "${THREADS:-2}" --no-full-baseline --json "$out/$name.json" --grid "$out/$name.png"
}
part=${PART:-all}  # "ddim", "ddpm" or "all": two parts can run side by side, one core each
if [ "$part" != ddpm ]; then
  for w in 0 "$guidance"; do
    run ddim 20 "$w" "$n"
    run ddim 50 "$w" "$n"
  done
fi
if [ "$part" != ddim ]; then
  for w in 0 "$guidance"; do
    run ddpm 1000 "$w" "$n_ddpm"
  done
fi
