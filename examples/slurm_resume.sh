#!/usr/bin/env bash
# A td3_accel_mujoco.py run that outlives Slurm's time limit and preemption (README, "Interrupting and resuming a
# run"). 120 s before the limit Slurm sends SIGTERM to this script, which passes it on; the run finishes its step,
# writes resume.pt and exits 3, and the job requeues itself. Each start resumes the newest run directory of this
# env, experiment name and seed if it holds resume.pt, else starts a fresh run (extra arguments go to fresh runs):
#
#   ENV_ID=Ant-v4 SEED=1 sbatch examples/slurm_resume.sh --buffer-size 15000
#
#SBATCH --job-name=td3-accel
#SBATCH --time=24:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --requeue
#SBATCH --signal=B:TERM@120
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail
shopt -s nullglob

ENV_ID=${ENV_ID:-HalfCheetah-v4}
SEED=${SEED:-1}
EXP_NAME=${EXP_NAME:-td3_accel_mujoco}
RUN_DIR=${RUN_DIR:-runs}
cd "${SLURM_SUBMIT_DIR:-.}" || exit 1

# run directories are named ENV__EXP__SEED__UNIXTIME[_], so the last in glob order is the newest
runs=("$RUN_DIR/${ENV_ID}__${EXP_NAME}__${SEED}__"*)
if (( ${#runs[@]} )) && [[ -f ${runs[-1]}/resume.pt ]]; then
  args=(--resume "${runs[-1]}")
else
  args=(--env-id "$ENV_ID" --seed "$SEED" --exp-name "$EXP_NAME" --run-dir "$RUN_DIR"
        --num-threads "${SLURM_CPUS_PER_TASK:-2}" "$@")
fi

# bash runs a trap only between commands: run the script in the background and wait for it
term=0
trap 'term=1; kill -TERM "$pid" 2>/dev/null' TERM
python td3_accel_mujoco.py "${args[@]}" &
pid=$!
wait "$pid"
rc=$?
if (( term )); then  # the trap cut the first wait short: wait for the run's own exit code
  wait "$pid"
  rc=$?
fi

# 3: interrupted, resume.pt written; 143 after our SIGTERM: it came before the run had set its handler (start-up)
if (( rc == 3 || (term && rc == 143) )); then
  echo "run interrupted (exit code $rc): requeueing job ${SLURM_JOB_ID:-?} to resume it"
  [[ -n ${SLURM_JOB_ID:-} ]] && scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
