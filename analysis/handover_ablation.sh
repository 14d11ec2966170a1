#!/usr/bin/env bash
# Stage 2 again from each stage-1 checkpoint of a transfer_grid.sh run, once per variant of the handover flags,
# with the same seed and budget as the grid (4000 fine-tuning steps, evaluations every 1000). Runs one process at a
# time (start it beside the grid) and waits for checkpoints that are still being written.
# Usage: analysis/handover_ablation.sh GRID_DIR OUT_DIR "name:flags" ["name:flags" ...]
#   env: SEEDS="1 2 3", ENVS, FINETUNE=4000 (stage-2 steps), EPISODES (per evaluation; default as the grid)
#   e.g. analysis/handover_ablation.sh runs/transfer_after runs/handover "alg4:--no-prefill" \
#            "warmup:--no-prefill --critic-warmup 1000"
# Summarize: python analysis/transfer_metrics.py OUT_DIR --stage1-from GRID_DIR
set -euo pipefail
grid=${1:?}; out=${2:?}; shift 2
script=${SCRIPT:-td3_accel_mujoco.py}
mkdir -p "$out"
for env in ${ENVS:-Hopper-v4 InvertedPendulum-v4 Pendulum-v1 HalfCheetah-v4}; do
  episodes=5; [ "$env" = HalfCheetah-v4 ] && episodes=2  # as in transfer_grid.sh
  episodes=${EPISODES:-$episodes}
  for seed in ${SEEDS:-1 2 3}; do
    until ckpt=$(ls "$grid"/"$env"__*__"$seed"__*/accelerated.pt 2>/dev/null | head -1) && [ -n "$ckpt" ]; do
      sleep 30
    done
    for variant in "$@"; do
      OMP_NUM_THREADS=1 python "$script" --env-id "$env" --accelerated-checkpoint "$ckpt" --finetune-steps "${FINETUNE:-4000}" \
        --eval-frequency 1000 --eval-episodes "$episodes" --num-threads 1 --seed "$seed" --exp-name "${variant%%:*}" \
        --run-dir "$out" ${variant#*:} >> "$out/log.txt" 2>&1
    done
  done
done
