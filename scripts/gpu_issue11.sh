#!/usr/bin/env bash
# One GPU session for notebooks 10-12: train, in parallel on one GPU, the strict shifted-digit model (7s never placed
# in the bottom half: data.holdout_rule=exclude), the cold-diffusion (blur) model, a same-budget pair of CIFAR-10
# CPU-config models (T = 1000 and T = 500, 1,500 steps each) and a short smoke run of the GPU-sized CIFAR-10 config;
# then measure the shifted-digit model (scripts/shifted_table.py) on the GPU. The shipped shifted-digit model
# (data.holdout_rule=unlabel, the config's default) was trained afterwards on the same GPU, alone, with
#   python -m ddpmlib.train --config configs/shifted_mnist.json --device cuda --set train.max_steps=7000 \
#       train.max_minutes=2.3 data.holdout_rule=unlabel --export checkpoints/shifted_mnist
#   python scripts/shifted_table.py --checkpoint checkpoints/shifted_mnist --device cuda --n 100 \
#       --conditions none joint:1 compose:1
#
#   DATA=/path/with/MNIST+CIFAR OUT=/path/for/results bash scripts/gpu_issue11.sh
#
# Every job is an ordinary project command (printed to OUT/commands.txt); the sizes are environment variables:
#   STEPS_MNIST (7000)  steps of batch 128 for the shifted and blur models, cut at MINUTES_MNIST (4.3) minutes
#   STEPS_CIFAR (1500)  steps of each CIFAR model of the T pair (the CPU config trains 3,000 on 2 cores)
#   STEPS_SMOKE (300)   steps of configs/cifar10_gpu.json (on data.classes [1, 8]), to check it runs and time it
# Small models on one GPU are limited by kernel launches, not arithmetic, so several run at once with one CPU
# thread each (OMP_NUM_THREADS=1).
set -u
PY=${PYTHON:-python3}
DATA=${DATA:?set DATA to the data root}
OUT=${OUT:?set OUT to the output folder}
STEPS_MNIST=${STEPS_MNIST:-7000}
MINUTES_MNIST=${MINUTES_MNIST:-4.3}
STEPS_CIFAR=${STEPS_CIFAR:-1500}
STEPS_SMOKE=${STEPS_SMOKE:-300}
RUNS=${RUNS:-runs/gpu11}
DEVICE=${DEVICE:-cuda}
N_PAIR=${N_PAIR:-100}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"

job() {  # job NAME ARGS...: one training run, its log and exit status in OUT
    local name=$1
    shift
    local cmd=("$PY" -m ddpmlib.train --device "$DEVICE" --data-root "$DATA" --no-progress --overwrite --out "$RUNS/$name" "$@")
    echo "${cmd[*]}" >>"$OUT/commands.txt"
    "${cmd[@]}" >"$OUT/$name.log" 2>&1
    local rc=$?
    cp "$RUNS/$name/log.csv" "$OUT/$name.log.csv" 2>/dev/null
    echo "$name rc=$rc $(date -u +%H:%M:%S)" >>"$OUT/status.txt"
    return $rc
}

(
    job shifted --config configs/shifted_mnist.json --set data.holdout_rule=exclude \
        train.max_steps="$STEPS_MNIST" train.max_minutes="$MINUTES_MNIST" --export "$OUT/shifted_mnist" &&
        "$PY" scripts/shifted_table.py --checkpoint "$OUT/shifted_mnist" --device "$DEVICE" --data-root "$DATA" --n "$N_PAIR" \
            --no-progress --csv "$OUT/shifted_mnist/eval/pairs.csv" >"$OUT/shifted_table.log" 2>&1
    echo "shifted_table rc=$? $(date -u +%H:%M:%S)" >>"$OUT/status.txt"
) &
job cold --config configs/mnist_cold.json \
    --set train.max_steps="$STEPS_MNIST" train.max_minutes="$MINUTES_MNIST" train.sample_every=0 \
    --export "$OUT/cold_mnist" &
job cifar_T1000 --config configs/cifar10_cpu.json --set train.max_steps="$STEPS_CIFAR" train.snapshot_minutes=[] train.precision=auto \
    --export "$OUT/cifar10_cpu" &
job cifar_T500 --config configs/cifar10_cpu_T500.json --set train.max_steps="$STEPS_CIFAR" train.snapshot_minutes=[] train.precision=auto \
    --export "$OUT/cifar10_cpu_T500" &
job cifar_gpu_smoke --config configs/cifar10_gpu.json \
    --set train.max_steps="$STEPS_SMOKE" train.sample_every=0 train.checkpoint_every="$STEPS_SMOKE" "data.classes=[1,8]" &
wait
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
cat "$OUT/status.txt"
