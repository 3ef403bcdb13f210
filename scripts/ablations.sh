#!/usr/bin/env bash
# Recipe ablations on the CPU: train one variant of configs/mnist_cpu.json for a fixed number of steps,
# then score its EMA weights (DDIM-20, unguided, N samples). Usage:
#   DDPM_DATA_ROOT=../shared/data bash scripts/ablations.sh VARIANT [VARIANT ...]
# STEPS (default 1000), N (default 500), THREADS (default 1: two variants can run side by side),
# OUT (default runs/ablations), PRECISION (default fp32, so that runs on CPUs with and without native bf16
# compare). Results: $OUT/<variant>/eval.json; summary: scripts/ablation_table.py.
set -euo pipefail
steps=${STEPS:-1000}
n=${N:-500}
threads=${THREADS:-1}
out=${OUT:-runs/ablations}
precision=${PRECISION:-fp32}
py=${PYTHON:-python}
export OMP_NUM_THREADS=$threads
overrides() {  # the --set arguments of each variant, relative to configs/mnist_cpu.json (the v recipe)
  local double="train.max_steps=$((2 * steps)) train.checkpoint_every=$((2 * steps))"  # same images, batch 32
  case "$1" in
    # Algorithm 1 as written (eps target, L_simple) and changes to it
    eps) echo "diffusion.prediction_type=eps" ;;
    eps_scale_shift) echo "diffusion.prediction_type=eps model.scale_shift=true" ;;
    eps_stratified) echo "diffusion.prediction_type=eps train.timestep_sampling=stratified" ;;
    eps_min_snr) echo "diffusion.prediction_type=eps train.loss_weighting=min_snr" ;;
    eps_batch32) echo "diffusion.prediction_type=eps train.batch_size=32 $double" ;;
    # the shipped recipe (v target) and changes to it
    v) echo "" ;;
    v_cosine) echo "diffusion.schedule=cosine" ;;
    v_batch32) echo "train.batch_size=32 $double" ;;
    v_constant_lr) echo "train.lr_schedule=constant" ;;
    v_no_ema_warmup) echo "train.ema_warmup=false" ;;
    v_no_ema) echo "train.ema_decay=0" ;;
    v_wide) echo "model.base_channels=24" ;;
    v_min_snr) echo "train.loss_weighting=min_snr" ;;
    v_bf16) echo "train.precision=bf16" ;;  # needs a CPU with native bf16 (or a GPU) to be faster
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}
for v in "$@"; do
  sets=$(overrides "$v")
  dir="$out/$v"
  echo "== $v: ${sets:-(no overrides)}"
  # shellcheck disable=SC2086
  $py -m ddpmlib.train --config configs/mnist_cpu.json --out "$dir" --set train.max_steps="$steps" train.max_minutes=null \
    train.num_threads="$threads" train.precision="$precision" train.snapshot_minutes=[] train.sample_every=0 train.checkpoint_every="$steps" $sets
  $py -m ddpmlib.evaluate --checkpoint "$dir/checkpoint" --sampler ddim --steps 20 --guidance 0 \
    --num-samples "$n" --seed 0 --threads "$threads" --no-full-baseline --no-progress --json "$dir/eval.json"
done
