#!/usr/bin/env bash
# A td3_accel_mujoco.py run that outlives Slurm's time limit (README, "Interrupting and resuming a run"). 120 s
# before the limit Slurm sends SIGUSR1 to this script (--signal=B:USR1@120), which passes it on to the run as
# SIGTERM; the run finishes its step, writes resume.pt and exits 3, and the job requeues itself. Each start resumes
# the newest run directory of this env, experiment name and seed if it holds resume.pt, else starts a fresh run
# (extra arguments go to fresh runs):
#
#   ENV_ID=Ant-v4 SEED=1 sbatch examples/slurm_resume.sh --buffer-size 15000
#
# Slurm may send the warning up to 60 s early. To end a job (scancel, with --signal=KILL too; scontrol requeue; the
# time limit) Slurm sends SIGCONT and SIGTERM to every process of it, the run included, and SIGKILL after KillWait
# (30 s by default): the run writes resume.pt on its own, and this script passes no SIGTERM on (a second one would
# make the run quit at once without writing it). After scancel the job stays cancelled (submit it again to resume);
# after scontrol requeue Slurm requeues it itself. A requeued job starts again after Slurm's credential lifetime
# (AuthInfo cred_expire, 120 s by default). By hand, `scancel --batch --signal=USR1 JOBID` is the time-limit
# warning: the job writes resume.pt, requeues itself and resumes.
# tests/test_slurm.py runs this script on a one-node Slurm (examples/slurm/local_cluster.sh).
#
#SBATCH --job-name=td3-accel
#SBATCH --time=24:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail
shopt -s nullglob

ENV_ID=${ENV_ID:-HalfCheetah-v4}
SEED=${SEED:-1}
EXP_NAME=${EXP_NAME:-td3_accel_mujoco}
RUN_DIR=${RUN_DIR:-runs}
THREADS=${SLURM_CPUS_PER_TASK:-2}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
cd "${SLURM_SUBMIT_DIR:-.}" || exit 1

# run directories are named ENV__EXP__SEED__UNIXTIME[_], so the last in glob order is the newest
runs=("$RUN_DIR/${ENV_ID}__${EXP_NAME}__${SEED}__"*)
if (( ${#runs[@]} )) && [[ -f ${runs[-1]}/resume.pt ]]; then
  args=(--resume "${runs[-1]}" --num-threads "$THREADS")
else
  args=(--env-id "$ENV_ID" --seed "$SEED" --exp-name "$EXP_NAME" --run-dir "$RUN_DIR" --num-threads "$THREADS" "$@")
fi

source examples/slurm/run_forwarding.sh
# an array task requeues itself as JOBID_TASK: its own SLURM_JOB_ID may be the whole array's id
if run_forwarding python td3_accel_mujoco.py "${args[@]}"; then
  job=${SLURM_JOB_ID:-}
  [[ -n ${SLURM_ARRAY_JOB_ID:-} ]] && job=${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID
  echo "run interrupted (exit code $rc): requeueing job ${job:-?} to resume it"
  [[ -n $job ]] && scontrol requeue "$job"
elif (( rc == 3 )); then
  echo "run interrupted as Slurm ended the job: resume.pt written; submit again to resume (a requeue does itself)"
fi
exit "$rc"
