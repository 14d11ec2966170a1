"""analysis/compare_checkpoints.py: a run stopped at the end of stage 1 (--finetune-steps 0) writes the same
accelerated.pt as the whole run, but for the flags that name it (the Hopper study's rq4_stage1 stands in for accel's
stage 1 this way); another seed's differs; an unreadable file is exit 2."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import run_script  # noqa: E402
from test_export_curves import TINY, tool  # noqa: E402

TOOL = "analysis/compare_checkpoints.py"


def stage1_checkpoint(tmp_path, name: str, seed: int, finetune: int) -> str:
    flags = [*TINY, "--finetune-steps", finetune, "--seed", seed, "--run-dir", tmp_path, "--exp-name", name]
    r = run_script("td3_accel_mujoco.py", [*flags, "--buffer-size", 200])
    assert r.returncode == 0, r.stderr
    (run,) = tmp_path.glob(f"*__{name}__*")
    return str(run / "accelerated.pt")


def test_stage_one_alone_gives_the_whole_runs_checkpoint_and_another_seed_does_not(tmp_path):
    whole = stage1_checkpoint(tmp_path, "whole", 1, 100)
    alone = stage1_checkpoint(tmp_path, "alone", 1, 0)
    other = stage1_checkpoint(tmp_path, "other", 2, 100)
    r = tool(TOOL, whole, alone)
    assert r.returncode == 1 and "/args/exp_name" in r.stdout and "/args/finetune_steps" in r.stdout, r.stdout
    assert "2 difference(s)" in r.stdout
    r = tool(TOOL, whole, alone, "--ignore", "args/exp_name", "args/finetune_steps")
    assert r.returncode == 0 and "0 difference(s)" in r.stdout, r.stdout
    r = tool(TOOL, whole, other, "--ignore", "args/exp_name", "args/seed")
    assert r.returncode == 1 and "/recent_transitions" in r.stdout and "tensor" in r.stdout, r.stdout


def test_a_missing_or_foreign_file_is_exit_2(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    for args in ([tmp_path / "missing.pt", junk], [junk, junk]):
        r = tool(TOOL, *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read" in r.stderr, r.stderr
