#!/bin/bash
# The RQ1-RQ4 study (issue 12) at this machine's budget: Hopper-v4, 100k environment steps per method
# (the accelerated transformer: 50k of stage 1 + 50k of stage 2), 3 seeds, 5k random steps everywhere,
# an evaluation (5 episodes) every 5k steps, resume.pt every 10k. Each part is one tools/grid.py call;
# rerun this script to finish what is left (complete runs are skipped, interrupted ones resumed).
#   PART=core|rq1|rq4|bc  which grid (default: all four in that order)
#   JOBS=N             runs at a time (default 1; 2 on an otherwise idle 2-core machine)
#   ROOT=DIR           where the runs go (default runs/study)
# Then: analysis/study_report.sh  (each question's table and figure, finished runs only; RESULTS.md, "The study")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/study}
JOBS=${JOBS:-1}
PART=${PART:-all}
ENVS=${ENVS:-Hopper-v4}
SEEDS=${SEEDS:-"1 2 3"}
COMMON="--learning-starts 5000 --eval-frequency 5000 --eval-episodes 5 --checkpoint-frequency 10000"
ACCEL="--accel-steps 50000 --finetune-steps 50000 --buffer-size 15000"
grid() { python tools/grid.py --root "$ROOT" --envs $ENVS --seeds $SEEDS --jobs "$JOBS" "$@" -- $COMMON; }

if [[ $PART == all || $PART == core ]]; then
  # RQ1 (stage 1's curves of accel), RQ2 (accel against the three baselines at 100k steps), RQ3 (ascent)
  grid --method accel:td3_accel_mujoco.py:"$ACCEL" \
       --method mlp:baselines/td3_mlp_mujoco.py:"--total-timesteps 100000" \
       --method transformer:baselines/td3_transformer_mujoco.py:"--total-timesteps 100000" \
       --method lstm:baselines/td3_lstm_mujoco.py:"--total-timesteps 100000" \
       --method accel_ascent:td3_accel_mujoco.py:"$ACCEL --critic-ascent"
fi
if [[ $PART == all || $PART == rq1 ]]; then
  # RQ1 as the paper's Figure 1: the LSTM accelerator on velocity-only Hopper, then stage 2 on histories
  grid --method accel_lstm_velocity:td3_accel_lstm_pomdp.py:"--pomdp velocity --accel-steps 50000 --finetune-steps 20000 --buffer-size 15000"
fi
if [[ $PART == all || $PART == rq4 ]]; then
  # RQ4: the transformer from scratch with the small buffers (accel above already uses 15k in stage 2).
  # accel_buf10k/20k change only stage 2's buffer, so they fine-tune from the stage-1 checkpoint of accel's run
  # of the same env and seed (core part) instead of repeating its stage 1: the same stage 1 for every buffer size,
  # a cleaner comparison, without paying for stage 1 again. The grid fills in {root}, {env_id}, {seed} and resolves
  # the glob (single-quoted, in the double quotes: the shell leaves it alone); a run whose accel checkpoint does not
  # exist yet waits (exit 3, rerun later). Steps continue from the checkpoint's 50k, so the curves line up with accel's.
  # The checkpoint holds accel's last 15k transitions: buf10k's prefill is the same as with its own stage 1 (the
  # last 10k), buf20k starts stage 2 with those 15k in its 20k buffer instead of 20k.
  ACCEL_CKPT="--accelerated-checkpoint '{root}/{env_id}__accel__{seed}__*/accelerated.pt'"
  grid --method transformer_buf10k:baselines/td3_transformer_mujoco.py:"--total-timesteps 100000 --buffer-size 10000" \
       --method transformer_buf15k:baselines/td3_transformer_mujoco.py:"--total-timesteps 100000 --buffer-size 15000" \
       --method transformer_buf20k:baselines/td3_transformer_mujoco.py:"--total-timesteps 100000 --buffer-size 20000" \
       --method accel_buf10k:td3_accel_mujoco.py:"--finetune-steps 50000 --buffer-size 10000 $ACCEL_CKPT" \
       --method accel_buf20k:td3_accel_mujoco.py:"--finetune-steps 50000 --buffer-size 20000 $ACCEL_CKPT"
fi
if [[ $PART == all || $PART == bc ]]; then
  # BC target and source: stage 1 only, against accel's own stage 1 (bc-target actor, bc-source train)
  grid --method bc_behavior:td3_accel_mujoco.py:"--accel-steps 50000 --finetune-steps 0 --bc-target behavior" \
       --method bc_eval:td3_accel_mujoco.py:"--accel-steps 50000 --finetune-steps 0 --bc-source eval"
fi
