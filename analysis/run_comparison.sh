#!/usr/bin/env bash
# First small comparison of the four MuJoCo methods (NOT the paper's protocol: a short budget, few seeds).
# Usage: analysis/run_comparison.sh [env_id] [total_steps] [seeds...]
# Runs two processes at a time with one torch thread each (2-core machine), longest jobs first, into
# runs/compare_{env}_{steps}; summarize with:
#   python analysis/summarize_runs.py runs/compare_<env>_<steps> --markdown --plot <png>
set -euo pipefail
cd "$(dirname "$0")/.."
env=${1:-Hopper-v4}; steps=${2:-30000}; shift 2 || true
seeds=("${@:-1 2}"); seeds=(${seeds[@]})
starts=5000; accel=$((steps * 2 / 3)); finetune=$((steps - accel)); every=2500
dir="runs/compare_${env}_${steps}"
common="--env-id $env --learning-starts $starts --eval-frequency $every --num-threads 1 --run-dir $dir"
jobs=()
for s in "${seeds[@]}"; do jobs+=("baselines/td3_lstm_mujoco.py --exp-name lstm --total-timesteps $steps --seed $s"); done
for s in "${seeds[@]}"; do jobs+=("baselines/td3_transformer_mujoco.py --exp-name transformer --total-timesteps $steps --seed $s"); done
for s in "${seeds[@]}"; do jobs+=("td3_accel_mujoco.py --exp-name accel --accel-steps $accel --finetune-steps $finetune --seed $s"); done
for s in "${seeds[@]}"; do jobs+=("baselines/td3_mlp_mujoco.py --exp-name mlp --total-timesteps $steps --seed $s"); done
mkdir -p "$dir"
printf '%s\n' "${jobs[@]}" | OMP_NUM_THREADS=1 xargs -P 2 -I{} sh -c "python {} $common >> $dir/log.txt 2>&1"
