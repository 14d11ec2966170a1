#!/bin/bash
# A tools/grid.py grid as a Slurm job array: array task K runs only run K of the grid (`grid.py --index K`), and
# requeues itself until its run is complete (README, "The same grid on a Slurm cluster"). Without arguments it is
# the README's grid (2 envs x 2 methods x 3 seeds = 12 runs); arguments replace the grid's (tools/grid.py's own,
# then `--` and the flags of every run). Size the array from the last line of `tools/grid.py ... --dry-run`:
#
#   sbatch examples/slurm/grid_array.sh
#   sbatch --array=0-3 examples/slurm/grid_array.sh --root runs/tiny --envs Pendulum-v1 --seeds 1 2 \
#       --method accel:td3_accel_mujoco.py --method mlp:baselines/td3_mlp_mujoco.py -- --checkpoint-frequency 1000
#
# Signals, as Slurm 22.05 sends them (tests/test_slurm.py runs this file on a one-node Slurm). 300 s before the time
# limit (Slurm may send it up to 60 s earlier), --signal=B:USR1@300 sends SIGUSR1 to this shell alone: it passes it
# on to the run as the SIGTERM the scripts expect (finish the step, write resume.pt, exit 3) and requeues the task
# once the run has exited. To end a job (scancel, with --signal=KILL too; scontrol requeue; the time limit) Slurm
# sends SIGCONT and SIGTERM to every process of it, the run included, and SIGKILL after KillWait (30 s by default):
# the run writes resume.pt on its own, and this shell passes no SIGTERM on (a second one would make the run quit at
# once without writing it). After scancel the task stays cancelled (submit the array again to resume it); after
# scontrol requeue Slurm requeues it itself. A requeued task starts again after Slurm's credential lifetime
# (AuthInfo cred_expire, 120 s by default). By hand, `scancel --batch --signal=USR1 JOBID_K` is the time-limit
# warning: the task writes resume.pt, requeues itself and resumes. A task whose run waits for another run's output
# (a glob in its flags that matches nothing yet: grid.py --index exits 3) requeues itself to look again.
#
#SBATCH --job-name=grid
#SBATCH --array=0-11
#SBATCH --cpus-per-task=1
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%A_%a.out
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-.}" || exit 1
if [[ -z ${SLURM_ARRAY_TASK_ID:-} ]]; then
  echo "grid_array.sh: not an array task (SLURM_ARRAY_TASK_ID is not set): sbatch --array=0-N $0 ..." >&2
  exit 2
fi

if (( $# == 0 )); then
  set -- --root runs/rq2 --envs Hopper-v4 HalfCheetah-v4 --seeds 1 2 3 \
    --method accel:td3_accel_mujoco.py:"--accel-steps 150000 --finetune-steps 150000" \
    --method mlp:baselines/td3_mlp_mujoco.py:"--total-timesteps 300000" \
    -- --eval-frequency 5000 --checkpoint-frequency 10000
fi
# the grid's options, then --index (before the `--` that starts the flags of every run); one torch thread per CPU
grid=(--threads "${SLURM_CPUS_PER_TASK:-1}") runs=()
while (( $# )) && [[ $1 != -- ]]; do grid+=("$1"); shift; done
runs=("$@")
grid+=(--index "$SLURM_ARRAY_TASK_ID")

source examples/slurm/run_forwarding.sh
# grid.py execs the run in its own process, so the warning passed on reaches the run itself. Requeue this task as
# JOBID_TASK: the task's own SLURM_JOB_ID is the whole array's id for one of the tasks
if run_forwarding python tools/grid.py "${grid[@]}" "${runs[@]}"; then
  task=${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID
  echo "grid_array.sh: run $SLURM_ARRAY_TASK_ID exited $rc: requeueing task $task"
  scontrol requeue "$task"
elif (( rc == 3 )); then
  echo "grid_array.sh: run $SLURM_ARRAY_TASK_ID exited 3 as Slurm ended the task: resume.pt written, submit again"
fi
exit "$rc"
