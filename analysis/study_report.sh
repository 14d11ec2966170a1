#!/bin/bash
# The study's figures and tables (RESULTS.md, "The study"): one tools/plot_runs.py call per question, finished runs
# only (so it can run while the grid goes on), "final" = each seed's mean over its last 3
# evaluations (--last 3), also listed per seed (--per-seed). A question none of whose runs has finished says so and
# the script goes on. Each table is followed by rliable's intervals (IQM and mean, and the probability of improvement
# over accel); each figure is a PNG (300 dpi) and a PDF, one panel per comparison with accel.
# First each finished run's curves go into the repository (analysis/export_curves.py ROOT CURVES), and every table and
# figure is made from CURVES, so they can be made again when runs/ is gone (ROOT missing: the export is skipped).
#   ROOT=DIR  the study's runs (default runs/study)     OUT=DIR  where the figures go (default results)
#   CURVES=DIR  the kept curves (default results/study/curves)
#   REPS=N    bootstrap resamples (default 2000)        FINAL_EVAL=1  "final" from each run's eval_final.csv
#             (tools/grid.py --evaluate N) instead of the last 3 in-run evaluations
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/study}
OUT=${OUT:-results}
CURVES=${CURVES:-results/study/curves}
if [[ -d $ROOT ]]; then
  python analysis/export_curves.py "$ROOT" "$CURVES" | grep -v "unfinished, left out"
fi
# RQ2's and RQ4's curves differ in their buffers, so their legends name them (accel's stage-2 buffer is 15k; given
# for accel_buf* too, else their words would be built from accel's: "..., 15k buffer, 10k buffer")
ACCEL15K="accelerated transformer, 15k buffer"
BUFS=(--label "accel=$ACCEL15K" --label "accel_buf10k=accelerated transformer, 10k buffer"
  --label "accel_buf20k=accelerated transformer, 20k buffer")
plot() { python tools/plot_runs.py "$CURVES" --table --last 3 --per-seed --reps "${REPS:-2000}" \
  ${FINAL_EVAL:+--final-eval} "$@" 2>&1; }

echo "## RQ1: the transformer against its accelerator over stage 1 (50k steps)"
plot --max-step 50000 --methods accel accel_lstm_velocity --out "$OUT/study_rq1.png"
echo; echo "## RQ1: tracking gap and handover drop per run (analysis/transfer_metrics.py)"
python analysis/transfer_metrics.py "$CURVES" 2>/dev/null | grep -v "^skipped"
echo; echo "## RQ2: the accelerated transformer (stage 1 then 2) against the MLP, LSTM and transformer baselines"
plot --methods accel mlp lstm transformer --reference accel --out "$OUT/study_rq2.png" \
  --label "accel=$ACCEL15K" --label "transformer=transformer from scratch, 500k buffer"
echo; echo "## RQ3: with and without critic ascent"
plot --methods accel accel_ascent --reference accel --out "$OUT/study_rq3.png"
echo; echo "## RQ4: small buffers, accelerated (stage 2 from accel's stage 1) against from scratch"
plot --methods accel 'accel_buf*' 'transformer_buf*' --reference accel --out "$OUT/study_rq4.png" "${BUFS[@]}" \
  --panel accel_buf10k,transformer_buf10k --panel accel,transformer_buf15k --panel accel_buf20k,transformer_buf20k
echo; echo "## RQ4: stage 2 alone (the evaluations after step 50000), the same stage 1 with three buffer sizes"
plot --min-step 50001 --methods accel 'accel_buf*' --reference accel "${BUFS[@]}"
echo; echo "## BC target and source: stage 1 (50k steps) against accel's own"
plot --max-step 50000 --methods accel bc_behavior bc_eval --reference accel --out "$OUT/study_bc.png"
