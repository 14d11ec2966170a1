#!/bin/bash
# The GPU checks in one go, for a session that is lent a CUDA GPU (under 10 minutes on one GPU; no GPU is needed to
# read it). Everything goes under one folder: OUT (default gpu_check_out), with summary.md as the table to copy into
# BENCHMARKS.md beside the card's name.
#   1. the device: nvidia-smi, torch's CUDA build, the card;
#   2. the tests whose CUDA variants run where a GPU is (the device buffer, the deferred finite check, --compile's
#      losses, the update paths' equivalences), fast tests only;
#   3. eager against --compile on CUDA (CUDA graphs): benchmarks/bench_compile.py --device cuda;
#   4. a tiny run of each of the nine scripts on cuda, and of td3_accel_mujoco.py with --compile (the ManiSkill ones with the CPU simulator, --sim-backend cpu:
#      SAPIEN's GPU simulator needs a library no machine here can download; ENVIRONMENT.md).
# Usage: benchmarks/gpu_check.sh          (on the device tool: `OUT=$OUT benchmarks/gpu_check.sh`)
# Exit code: 2 without a CUDA GPU (one line), 1 if a check failed, 0 if all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
# GPU_CHECK_ANY_DEVICE=1 runs it where there is no GPU (to check this script itself; the CUDA rows then fail or run
# on the CPU)
if [[ -z ${GPU_CHECK_ANY_DEVICE:-} ]] && ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check" >&2
  exit 2
fi
mkdir -p "$OUT"
export PYTHONWARNINGS="ignore::DeprecationWarning" MUJOCO_GL=egl
SUMMARY="$OUT/summary.md"
failed=0
{
  echo "# GPU checks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  python -c "import torch; p = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None; print(f'- device: {p.name if p else \"no GPU\"}, {p.total_memory / 2**30 if p else 0:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}')"
  echo "- CPU: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| check | result | seconds | log |"
  echo "|---|---|---|---|"
} > "$SUMMARY"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

check() {  # check NAME TIMEOUT_S COMMAND...: runs it, logs it, adds a row
  local name=$1 limit=$2 log="$OUT/$1.log" start rc
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@" > "$log" 2>&1
  rc=$?
  local result="passed"
  [[ $rc == 0 ]] || { result="FAILED (exit $rc$([[ $rc == 124 ]] && echo ', timed out'))"; failed=1; }
  echo "| $name | $result | $(($(date +%s) - start)) | $(basename "$log"): $(tail -n 1 "$log" | tr '|' '/' | cut -c1-120) |" >> "$SUMMARY"
  echo "gpu_check: $name: $result" >&2
}

check tests_cuda 240 python -m pytest -q -x -m "not slow" -p no:cacheprovider tests/test_compile.py \
  tests/test_speed_equivalence.py tests/test_speed_equivalence_maniskill.py tests/test_accel_units.py
check bench_compile_cuda 240 python benchmarks/bench_compile.py --device cuda --rounds 5 --steps 200

TINY="--eval-episodes 1 --batch-size 32 --checkpoint-frequency 0 --run-dir $OUT/runs"
ACCEL="--accel-steps 300 --learning-starts 100 --finetune-steps 200 --eval-frequency 100 --critic-warmup 20"
BASE="--total-timesteps 300 --learning-starts 100 --eval-frequency 100"
MS="--env-id PushCube-v1 --sim-backend cpu --num-envs 2 --num-eval-envs 1"
check run_accel_mujoco 120 python td3_accel_mujoco.py --env-id Hopper-v4 $ACCEL $TINY
check run_accel_mujoco_compile 300 python td3_accel_mujoco.py --env-id Hopper-v4 $ACCEL $TINY --compile
check run_accel_lstm_pomdp 120 python td3_accel_lstm_pomdp.py --env-id Hopper-v4 --pomdp velocity $ACCEL $TINY
check run_accel_maniskill 180 python td3_accel_maniskill.py $MS $ACCEL --eval-episodes 1 --checkpoint-frequency 0 \
  --run-dir "$OUT/runs"
for arch in mlp lstm transformer; do
  check "run_${arch}_mujoco" 120 python "baselines/td3_${arch}_mujoco.py" --env-id Hopper-v4 $BASE $TINY
  check "run_${arch}_maniskill" 180 python "baselines/td3_${arch}_maniskill.py" $MS $BASE --eval-episodes 1 \
    --checkpoint-frequency 0 --run-dir "$OUT/runs"
done
# each run's device, as it printed it (the scripts print the device they train on)
grep -h "device" "$OUT"/run_*.log | head -n 20 > "$OUT/devices.txt"
cat "$SUMMARY"
exit $failed
