#!/bin/bash
# A short run of each of the nine scripts (CPU, one thread), its progress lines kept with the timing fields masked:
# run at two commits and diff the folders to check a change left the runs themselves alone (issue 25).
#   benchmarks/progress_lines.sh OUT_DIR [SCRIPT_NAME...]     e.g. benchmarks/progress_lines.sh /tmp/before
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/progress_lines.sh OUT_DIR [SCRIPT_NAME...]}; shift
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
TINY="--eval-episodes 2 --batch-size 32 --checkpoint-frequency 0 --no-cuda"
ACCEL="--accel-steps 300 --learning-starts 100 --finetune-steps 200 --eval-frequency 100 --critic-warmup 20"
BASE="--total-timesteps 300 --learning-starts 100 --eval-frequency 100"
MS="--env-id PushCube-v1 --sim-backend cpu --num-envs 2 --num-eval-envs 1"
declare -A RUNS=(
  [td3_accel_mujoco]="td3_accel_mujoco.py --env-id Hopper-v4 $ACCEL"
  [td3_accel_lstm_pomdp]="td3_accel_lstm_pomdp.py --env-id Hopper-v4 --pomdp velocity $ACCEL"
  [td3_accel_maniskill]="td3_accel_maniskill.py $MS $ACCEL"
  [td3_mlp_mujoco]="baselines/td3_mlp_mujoco.py --env-id Hopper-v4 $BASE"
  [td3_lstm_mujoco]="baselines/td3_lstm_mujoco.py --env-id Hopper-v4 $BASE"
  [td3_transformer_mujoco]="baselines/td3_transformer_mujoco.py --env-id Hopper-v4 $BASE"
  [td3_mlp_maniskill]="baselines/td3_mlp_maniskill.py $MS $BASE"
  [td3_lstm_maniskill]="baselines/td3_lstm_maniskill.py $MS $BASE"
  [td3_transformer_maniskill]="baselines/td3_transformer_maniskill.py $MS $BASE"
)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(td3_accel_mujoco td3_accel_lstm_pomdp td3_accel_maniskill td3_mlp_mujoco td3_lstm_mujoco
                                    td3_transformer_mujoco td3_mlp_maniskill td3_lstm_maniskill td3_transformer_maniskill)
tmp=$(mktemp -d)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086 # the flags are word lists
  python ${RUNS[$name]} $TINY --run-dir "$tmp/runs" > "$tmp/$name.log" 2>&1
  echo "exit=$?" >> "$tmp/$name.log"
  # run directories carry the start time; SPS and eta are timings
  sed -E -e 's/__[0-9]{10}_*/__TIME/g' -e 's/SPS=[0-9]+/SPS=_/' -e 's/eta=[^ ]+/eta=_/' -e "s|$tmp|TMP|g" \
    "$tmp/$name.log" | grep -v "Warning\|warn(" > "$OUT/$name.txt"
  echo "$name: $(grep -c . "$OUT/$name.txt") lines, $(tail -n 1 "$OUT/$name.txt")"
done
rm -rf "$tmp"
