#!/bin/bash
# The runs behind the eight figures drawn before issue 23's figure standard (RESULTS.md, top), again, each with the
# code it first ran with, so that each section's tables can be checked against the rerun before its figure is redrawn
# with the section's own command. tools/grid.py of the frozen study worktree (study-ant-v1) drives every part: rerun
# this script to go on (complete runs are skipped; an unfinished run of an older script, which cannot resume, or of
# the study part starts over, its folder moved aside to ROOT.killed first; another of today's scripts resumes).
#   PART="..."  which runs, in the order given: rq1small compare transfer1 transfer3 study (the default, the cheapest
#               first). Two lanes on a 2-core machine: PART="rq1small compare transfer1" in one and PART=transfer3 in
#               the other (different folders), then PART=study JOBS=2 alone; never two lanes on the same part
#   JOBS=N      runs at a time in each grid, one thread each (default 1)
#   STUDY=DIR   the frozen worktree at study-ant-v1 (default ../study-ant, made if missing); the older code goes in
#               worktrees beside it, ../wt-COMMIT
#   DRY=1       list the runs (grid --dry-run), run nothing
# Runs go to STUDY/runs/NAME, NAME the folder the section names (the figures group runs by it). Which commit, and why:
#   rq1small   RQ1 in small (rq1_lstm_hopper_velocity.png): 2476349, the LSTM script as it ran (before DAgger)
#   compare    the first comparison (compare_Hopper-v4_30000.png): ac69913, the first stage-1 schedule
#   transfer1  transfer.png's round 1: before at ac69913; after at 33d768a, before fused Adam
#   transfer3  the state noise grid (in both transfer figures): HalfCheetah, Hopper and InvertedPendulum at 33d768a,
#              Pendulum after fused Adam, at today's arithmetic (b021c96 with flags); transfer_round3.png's
#              transfer_dg and transfer_dg_hop10k with today's defaults (b021c96)
#   study      the Hopper study's core, rq1 and rq4 parts (study_rq1..4.png): analysis/study.sh's runs at b021c96, the
#              same script and defaults they ran with (its bc part was rerun already), but accel_lstm_velocity at
#              a35f2b9 (the LSTM script before 9a87db1 changed its arithmetic; RESULTS.md, RQ1), one run per grid call
#              so that a run whose curves are kept in results/study/curves is skipped: about 23 core-hours, more than
#              one session, and a new session's machine may hold only the repository (analysis/study_report.sh keeps
#              each finished run's curves; commit them before a session ends). accel_buf10k/20k fine-tune from accel's
#              stage-1 checkpoint of the same seed, or, where accel's run is not on this machine, from rq4_stage1's:
#              accel's command stopped at step 50000 (--finetune-steps 0), which makes the same checkpoint (seed 1's, by
#              analysis/compare_checkpoints.py: every tensor and transition equal; its args differ in --exp-name and
#              --finetune-steps, which stage 2 does not read)
#   STUDY_ORDER="METHOD SEED ..."  the study's runs, in order (default: all 33, a figure's runs before the next's)
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN=$PWD
STUDY=$(realpath -m "${STUDY:-../study-ant}")
JOBS=${JOBS:-1}
PART=" ${PART:-rq1small compare transfer1 transfer3 study} "
[[ -d $STUDY ]] || git worktree add --detach "$STUDY" b021c96  # the tag study-ant-v1, which a fresh clone may lack
GRID=$STUDY/tools/grid.py

tree() {  # the worktree of a commit: the study's for b021c96, else ../wt-COMMIT (made if missing)
  if [[ $1 == b021c96 ]]; then echo "$STUDY"; return; fi
  local dir
  dir=$(dirname "$STUDY")/wt-$1
  [[ -d $dir ]] || git -C "$MAIN" worktree add --detach "$dir" "$1" >&2
  echo "$dir"
}
set_aside() {  # set_aside NAME [GLOB [all]]: unfinished runs in STUDY/runs/NAME start over, moved to NAME.killed: an
  # older script's (it cannot resume) or, with "all", a resumable one too, as a run resumed mid-episode does not repeat
  # an uninterrupted one (RESULTS.md, RQ1 and RQ2)
  local d
  for d in "$STUDY/runs/$1"/${2:-*__*__*__*}; do
    [[ -d $d && ! -e $d/final.pt && ( ${3:-} == all || ! -e $d/resume.pt ) ]] || continue
    [[ $1 != rq4_stage1 || ! -e $d/accelerated.pt || -e $d/resume.pt ]] || continue  # stage 1 only: finished
    mkdir -p "$STUDY/runs/$1.killed" && mv "$d" "$STUDY/runs/$1.killed/" && echo "moved aside (unfinished): $d"
  done
}
grid() {  # grid COMMIT NAME GRID-ARGS...: from that commit's worktree, runs into STUDY/runs/NAME
  local dir
  dir=$(tree "$1")
  [[ $1 == b021c96 || -n ${DRY:-} ]] || set_aside "$2"
  cd "$dir" && python "$GRID" --root "$STUDY/runs/$2" --jobs "$JOBS" ${DRY:+--dry-run} "${@:3}"
  cd "$MAIN"
}
transfer() {  # transfer COMMIT NAME "FLAGS" BUDGET...: one grid per env, as the budgets differ (the transfer runs set
  # no --exp-name: the script's name is their method); a budget is: env, accel steps, learning starts, finetune
  # steps, evaluation episodes
  local commit=$1 name=$2 flags=$3 b env steps starts finetune episodes
  shift 3
  for b in "$@"; do
    read -r env steps starts finetune episodes <<<"$b"
    grid "$commit" "$name" --envs "$env" --seeds 1 2 3 --method td3_accel_mujoco:td3_accel_mujoco.py:"--accel-steps \
$steps --learning-starts $starts --finetune-steps $finetune --eval-episodes $episodes" -- --eval-frequency 1000 $flags
  done
}
# The Hopper study's runs: analysis/study.sh at b021c96 (the same in main), one grid call per run with that
# method's flags, so each run is the one the study ran (tests/test_rerun_figures.py holds these flags to study.sh's)
STUDY_COMMON="--learning-starts 5000 --eval-frequency 5000 --eval-episodes 5 --checkpoint-frequency 10000"
STUDY_ACCEL="--accel-steps 50000 --finetune-steps 50000 --buffer-size 15000"
study_spec() {  # SCRIPT:FLAGS of a study method
  local buf=${1##*_buf}
  buf=${buf%k}000  # accel_buf10k, transformer_buf10k: 10000
  case $1 in
    accel) echo "td3_accel_mujoco.py:$STUDY_ACCEL" ;;
    accel_ascent) echo "td3_accel_mujoco.py:$STUDY_ACCEL --critic-ascent" ;;
    mlp | transformer | lstm) echo "baselines/td3_$1_mujoco.py:--total-timesteps 100000" ;;
    accel_lstm_velocity)
      echo "td3_accel_lstm_pomdp.py:--pomdp velocity --accel-steps 50000 --finetune-steps 20000 --buffer-size 15000" ;;
    transformer_buf*) echo "baselines/td3_transformer_mujoco.py:--total-timesteps 100000 --buffer-size $buf" ;;
    accel_buf*) echo "td3_accel_mujoco.py:--finetune-steps 50000 --buffer-size $buf" ;;
    # accel's stage 1 alone, the checkpoint accel_buf* fine-tune from when accel's own run is not on this machine:
    # the same run up to step 50000 (bc part: accel_stage1 repeated accel's stage 1 exactly), and --buffer-size
    # 15000 makes its accelerated.pt hold accel's last 15k transitions, as accel's does
    rq4_stage1) echo "td3_accel_mujoco.py:--accel-steps 50000 --finetune-steps 0 --buffer-size 15000" ;;
    *) echo "rerun_figures.sh: unknown study method $1" >&2; return 2 ;;
  esac
}
STUDY_ORDER=${STUDY_ORDER:-"$(for m in accel accel_ascent accel_lstm_velocity mlp transformer lstm transformer_buf10k \
  transformer_buf15k transformer_buf20k accel_buf10k accel_buf20k; do for s in 1 2 3; do echo "$m $s"; done; done)"}
study_grid() {  # study_grid METHOD SEED [FLAGS]: that one run, the frozen worktree's grid, into STUDY/runs/study
  # (rq4_stage1: STUDY/runs/rq4_stage1, so that the study's curves and tables hold the study's runs only)
  local spec root=runs/study dir=$STUDY
  spec=$(study_spec "$1") || return 2
  [[ $1 != rq4_stage1 ]] || root=runs/rq4_stage1
  # the study's rq1 runs began before 9a87db1 changed the LSTM script's float arithmetic (RESULTS.md, "RQ1"):
  # at b021c96 they do not repeat, so they run at a35f2b9, the script as it was then. Seeds 1 and 2 repeat there;
  # the study's seed 3 (started after 9a87db1, resumed from step 5758) does not, nor at b021c96 stopped at that step
  [[ $1 != accel_lstm_velocity ]] || dir=$(dirname "$STUDY")/wt-a35f2b9
  if [[ -z ${DRY:-} ]]; then  # never one run twice at once; an unfinished one starts over (set_aside)
    if pgrep -f -- "--seed $2 --exp-name $1 " > /dev/null; then
      echo "running already, not started: $1 seed $2"; return
    fi
    set_aside "${root#runs/}" "Hopper-v4__$1__$2__*" all
  fi
  cd "$dir" && python "$STUDY/tools/grid.py" --root "$STUDY/$root" --envs Hopper-v4 --seeds "$2" --jobs 1 \
    --method "$1:${spec%%:*}:${spec#*:}${3:+ $3}" ${DRY:+--dry-run} -- $STUDY_COMMON
}
study_run() {  # study_run METHOD SEED: skipped if its curves are kept; accel_buf* first finds its stage-1 checkpoint
  local m=$1 s=$2 runs=$STUDY/runs/study from accel_ckpt
  if compgen -G "$MAIN/results/study/curves/Hopper-v4__${m}__${s}__*" > /dev/null; then
    echo "kept in results/study/curves, skipped: $m seed $s"; return 0
  fi
  if [[ $m == accel_buf* ]]; then
    accel_ckpt="$runs/Hopper-v4__accel__${s}__*/accelerated.pt"  # a glob: accel's run of this seed, if on this machine
    while [[ -z ${DRY:-} ]] && pgrep -f -- "--seed $s --exp-name accel --" > /dev/null \
      && ! compgen -G "$accel_ckpt" > /dev/null; do sleep 30; done
    if compgen -G "$accel_ckpt" > /dev/null; then from="{root}/{env_id}__accel"; else
      from="$STUDY/runs/rq4_stage1/{env_id}__rq4_stage1"  # one lane makes it, another waits for it (flock)
      mkdir -p "$runs" && flock "$runs/.rq4_stage1_$s.lock" bash -c "study_grid rq4_stage1 $s" || return
    fi
    study_grid "$m" "$s" "--accelerated-checkpoint '${from}__{seed}__*/accelerated.pt'"
  else
    study_grid "$m" "$s"
  fi
}
export -f set_aside study_spec study_grid study_run
export STUDY_COMMON STUDY_ACCEL
ROUND1=("HalfCheetah-v4 40000 5000 4000 2" "Hopper-v4 20000 5000 4000 5" "InvertedPendulum-v4 10000 1000 4000 5")
PENDULUM="Pendulum-v1 10000 1000 4000 5"

if [[ $PART == *" rq1small "* ]]; then
  grid 2476349 rq1_lstm --envs Hopper-v4 --seeds 1 2 3 --method td3_accel_lstm_pomdp:td3_accel_lstm_pomdp.py:"--pomdp \
velocity --accel-steps 12000 --learning-starts 3000 --finetune-steps 3000" -- --eval-frequency 1000 --eval-episodes 5
fi
if [[ $PART == *" compare "* ]]; then
  grid ac69913 compare_Hopper-v4_30000 --envs Hopper-v4 --seeds 1 2 \
    --method lstm:baselines/td3_lstm_mujoco.py:"--total-timesteps 30000" \
    --method transformer:baselines/td3_transformer_mujoco.py:"--total-timesteps 30000" \
    --method accel:td3_accel_mujoco.py:"--accel-steps 20000 --finetune-steps 10000" \
    --method mlp:baselines/td3_mlp_mujoco.py:"--total-timesteps 30000" -- --learning-starts 5000 --eval-frequency 2500
fi
if [[ $PART == *" transfer1 "* ]]; then
  transfer ac69913 transfer_before "" "HalfCheetah-v4 20000 5000 4000 5" "Hopper-v4 20000 5000 4000 5" \
    "InvertedPendulum-v4 10000 1000 4000 5" "$PENDULUM"
  transfer 33d768a transfer_after "--bc-state-noise 0" "${ROUND1[@]}" "$PENDULUM"
fi
if [[ $PART == *" transfer3 "* ]]; then
  transfer 33d768a transfer_sn "--critic-warmup 0" "${ROUND1[@]}"
  transfer b021c96 transfer_sn "--critic-warmup 0 --bc-dagger 0" "$PENDULUM"
  transfer b021c96 transfer_dg "" "HalfCheetah-v4 40000 5000 10000 5" "Hopper-v4 20000 5000 4000 5" \
    "InvertedPendulum-v4 10000 1000 10000 10" "$PENDULUM"
  transfer b021c96 transfer_dg_hop10k "" "Hopper-v4 20000 5000 10000 5"
fi
if [[ $PART == *" study "* ]]; then
  # One tools/grid.py call per run, JOBS at a time, in STUDY_ORDER: a session's machine may start without the last
  # one's runs (only the repository is sure to carry over), so a run whose curves are kept in results/study/curves
  # is done, and the order finishes a figure's runs before the next figure's (RQ3, RQ1, RQ2, RQ4).
  [[ $STUDY_ORDER != *accel_lstm_velocity* ]] || tree a35f2b9 > /dev/null
  export STUDY MAIN DRY
  printf '%s\n' $STUDY_ORDER | xargs -P "$([[ -n ${DRY:-} ]] && echo 1 || echo "$JOBS")" -n 2 bash -c 'study_run "$@"' _
fi
