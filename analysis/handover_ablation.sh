#!/usr/bin/env bash
# Stage 2 again from each stage-1 checkpoint of a transfer_grid.sh run, with other handover flags, same seed and
# budget (4000 fine-tuning steps, evaluations every 1000). Waits for checkpoints that are still being written.
# Usage: analysis/handover_ablation.sh GRID_DIR OUT_DIR EXP_NAME "flags"
#   e.g. analysis/handover_ablation.sh runs/transfer_after runs/handover warmup0 "--critic-warmup 0"
# Summarize: python analysis/transfer_metrics.py OUT_DIR --stage1-from GRID_DIR
set -euo pipefail
grid=${1:?}; out=${2:?}; name=${3:?}; flags=${4:-}
script=${SCRIPT:-td3_accel_mujoco.py}
mkdir -p "$out"
for env in HalfCheetah-v4 Hopper-v4 InvertedPendulum-v4 Pendulum-v1; do
  for seed in 1 2 3; do
    until ckpt=$(ls "$grid"/"$env"__*__"$seed"__*/accelerated.pt 2>/dev/null | head -1) && [ -n "$ckpt" ]; do sleep 30; done
    OMP_NUM_THREADS=1 python "$script" --env-id "$env" --accelerated-checkpoint "$ckpt" --finetune-steps 4000 \
      --eval-frequency 1000 --eval-episodes 5 --num-threads 1 --seed "$seed" --exp-name "$name" --run-dir "$out" \
      $flags >> "$out/log.txt" 2>&1
  done
done
