#!/usr/bin/env bash
# The transfer study (stage-1 tracking gap and stage-2 handover drop): 4 environments x the given seeds, at
# budgets a 2-core machine finishes in under an hour, two runs at a time with one torch thread each.
# Usage: analysis/transfer_grid.sh OUT_DIR [seeds...]   (env: SCRIPT=td3_accel_mujoco.py, JOBS=2, EXTRA="flags")
# Summarize: python analysis/transfer_metrics.py OUT_DIR --markdown
set -euo pipefail
out=${1:?usage: transfer_grid.sh OUT_DIR [seeds...]}; shift
seeds=("${@:-1 2 3}"); seeds=(${seeds[@]})
script=${SCRIPT:-td3_accel_mujoco.py}; jobs_n=${JOBS:-2}; extra=${EXTRA:-}
# env, accel steps, learning starts, finetune steps (evaluations every 1000 steps, 5 episodes)
budgets=("HalfCheetah-v4 20000 5000 4000" "Hopper-v4 20000 5000 4000"
         "InvertedPendulum-v4 10000 1000 4000" "Pendulum-v1 10000 1000 4000")
jobs=()
for b in "${budgets[@]}"; do
  read -r env accel starts finetune <<< "$b"
  for s in "${seeds[@]}"; do
    jobs+=("$script --env-id $env --accel-steps $accel --learning-starts $starts --finetune-steps $finetune --seed $s")
  done
done
mkdir -p "$out"
printf '%s\n' "${jobs[@]}" | OMP_NUM_THREADS=1 xargs -P "$jobs_n" -I{} sh -c \
  "python {} --eval-frequency 1000 --eval-episodes 5 --num-threads 1 --run-dir $out $extra >> $out/log.txt 2>&1"
