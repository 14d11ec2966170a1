"""Learning check (the transfer study of RESULTS.md, in small): in one stage-1 run on InvertedPendulum-v4 the
transformer, trained only from its accelerator, ends stage 1 close to that accelerator. The figure is the tracking
gap (accelerator - transformer) / (accelerator - random policy) over the last 3 evaluations, inside the run, so no
absolute return is tuned to a few seeds; the bound is the transfer issue's target for the mean, 0.15. Stage 1 is the
study's first 6k steps: there Algorithm 1 as printed (T emptied every 1000 steps) gave gaps 0.23, 0.36 and 0.39 on
seeds 1-3, round 1's schedule (no state noise) 0.10, -0.01 and 0.05, and round 2's 0.07, 0.17 and 0.01 (the
study's runs, evaluated up to step 6000; every run is identical to a 6k-step run up to there). The test runs seed 1,
fixed before any run. About 2 minutes on one core, hence `slow`."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis"))
from accel_helpers import load_events, run_script, scalars, single_run_dir  # noqa: E402
from transfer_metrics import random_return, transfer_figures  # noqa: E402

ENV_ID, ACCEL_STEPS = "InvertedPendulum-v4", 6000


@pytest.mark.slow
def test_stage_1_transformer_tracks_its_accelerator(tmp_path):
    # the first 6k steps of the transfer study's InvertedPendulum runs, seed 1, default schedule and model
    argv = [
        "--env-id",
        ENV_ID,
        "--accel-steps",
        ACCEL_STEPS,
        "--learning-starts",
        1000,
        "--finetune-steps",
        0,
        "--eval-frequency",
        1000,
        "--eval-episodes",
        5,
        "--num-threads",
        1,
        "--seed",
        1,
        "--run-dir",
        tmp_path,
    ]
    proc = run_script("td3_accel_mujoco.py", argv, timeout=900)
    assert proc.returncode == 0, proc.stderr
    ea = load_events(single_run_dir(tmp_path))
    accel = dict(scalars(ea, "eval/accelerator_return"))
    transformer = dict(scalars(ea, "eval/transformer_return"))
    assert max(accel) == max(transformer) == ACCEL_STEPS
    f = transfer_figures(accel, transformer, random_return(ENV_ID))
    # precondition: the accelerator learned something to track (a random policy balances for about 5 steps)
    assert f["accelerator"] > 5 * f["random"], f
    assert f["tracking_gap"] <= 0.15, f"transformer {f['transformer_stage1']:.1f} vs accelerator {f['accelerator']:.1f}"
