#!/bin/bash
# The Ant study's numbers and figures (RESULTS.md, "Ant-v4: the headline command at 300k steps"), from finished runs
# only, so it can run while analysis/ant_study.sh goes on in its worktree. Run it from the main checkout:
#   1. 50 deterministic episodes of each finished run's final.pt (tools/evaluate.py; kept beside it as
#      eval_final.csv, done once per final.pt);
#   2. each finished run's curves and eval_final.csv into the repository (analysis/export_curves.py), so every number
#      below can be made again from results/ant/curves alone (ROOT= unset and no runs: steps 1-2 are skipped);
#   3. the tables and figures: RQ4 (against the transformer from scratch with 15k), RQ2 (against MLP TD3 and the
#      transformer from scratch with Table 1's 100k), the cost (hours and steps/s per run, steps/s per arm), RQ1
#      (the tracking gap over stage 1, per seed).
#   ROOT=DIR  the study's runs (default ../study-ant/runs/ant)   EPISODES=N  final.pt episodes (default 50)
#   CURVES=DIR  the kept curves (default results/ant/curves)      FIGS=DIR  where the figures go (default results)
# A question none of whose runs has finished says so in one line and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-../study-ant/runs/ant}
EPISODES=${EPISODES:-50}
CURVES=${CURVES:-results/ant/curves}
if [[ -d $ROOT ]]; then
  for f in "$ROOT"/*/final.pt; do
    [[ -f $f ]] || continue
    d=$(dirname "$f")
    if [[ ! $d/eval_final.csv -nt $f ]]; then
      python tools/evaluate.py "$f" --episodes "$EPISODES" --csv "$d/eval_final.csv" | tail -n 3
    fi
  done
  python analysis/export_curves.py "$ROOT" "$CURVES" | grep -v "unfinished, left out"
fi
plot() {
  python tools/plot_runs.py "$CURVES" --table --per-seed --last 3 --final-eval \
    --label accel="accelerated transformer, 15k buffer" --label scratch_15k="transformer from scratch, 15k buffer" \
    --label scratch_100k="transformer from scratch, 100k buffer" --label mlp="MLP TD3, 500k buffer" "$@"
}
echo "## RQ4: the accelerated transformer and the references against the transformer from scratch, 15k buffer"
plot --reference scratch_15k --out "${FIGS:-results}/ant_rq4.png"
echo; echo "## RQ2: the accelerated transformer against MLP TD3 and the transformer from scratch with 100k"
plot --reference accel --methods accel mlp scratch_100k --out "${FIGS:-results}/ant_rq2.png"
echo; echo "## Cost: each finished run's running time and steps/s per stage (analysis/run_costs.py)"
python analysis/run_costs.py "$CURVES"
echo; echo "## RQ1: the transformer against its accelerator over stage 1 (analysis/transfer_metrics.py)"
python analysis/transfer_metrics.py "$CURVES" 2>/dev/null | grep -v "^skipped"
