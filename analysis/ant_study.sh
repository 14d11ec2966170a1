#!/bin/bash
# The headline case (issue 24): `td3_accel_mujoco.py --env-id Ant-v4 --buffer-size 15000` against the transformer
# trained from scratch with the same 15k buffer, at 300k environment steps per run (accel: 150k of stage 1 + 150k of
# stage 2), Table 1's settings (25k random steps, the baselines' too), 10 evaluation episodes every 10k steps,
# resume.pt every 10k. Seeds fixed before any run: 1-5 for the two decisive arms, 1-3 for the references.
# The decisive pair runs first, seed by seed (accel and scratch_15k on seed 1, then seed 2, ...), so a study
# stopped early is still a paired comparison. Rerun this script to finish what is left: complete runs are skipped,
# interrupted ones resume from their resume.pt.
#   PART=decisive|refs|all   which grid (default all, in that order)
#   JOBS=N                   runs at a time, one thread each (2 on an otherwise idle 2-core machine, else 1)
#   ROOT=DIR                 where the runs go (default runs/ant)
# Run it from the study's frozen worktree (RESULTS.md, "Ant-v4: the headline command at 300k steps"):
#   git worktree add ../study-ant study-ant-v1 && cd ../study-ant && JOBS=2 nohup analysis/ant_study.sh &
# Then, from any checkout: analysis/export_curves.py ROOT results/ant (each finished run's curves as CSV).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/ant}
JOBS=${JOBS:-1}
PART=${PART:-all}
COMMON="--eval-frequency 10000 --eval-episodes 10 --checkpoint-frequency 10000"
grid() { python tools/grid.py --root "$ROOT" --envs Ant-v4 --jobs "$JOBS" ${DRY:+--dry-run} "$@" -- $COMMON; }

if [[ $PART == all || $PART == decisive ]]; then
  grid --seeds 1 2 3 4 5 \
       --method accel:td3_accel_mujoco.py:"--accel-steps 150000 --finetune-steps 150000 --buffer-size 15000" \
       --method scratch_15k:baselines/td3_transformer_mujoco.py:"--total-timesteps 300000 --buffer-size 15000"
fi
if [[ $PART == all || $PART == refs ]]; then
  # Table 1's transformer buffer (100k), and MLP TD3 with its default buffer (Table 1's accelerator, 500k)
  grid --seeds 1 2 3 \
       --method scratch_100k:baselines/td3_transformer_mujoco.py:"--total-timesteps 300000 --buffer-size 100000" \
       --method mlp:baselines/td3_mlp_mujoco.py:"--total-timesteps 300000"
fi
