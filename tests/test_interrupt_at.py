"""analysis/interrupt_at.py stops a run at the step asked, the way SIGTERM does: exit 3, resume.pt at that step, and
the resumed run is the uninterrupted one (Pendulum's episodes are 200 steps long: step 200 is a boundary, where a
resumed run continues bit for bit). Bad input is one line and exit 2."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import load_pt, run_script  # noqa: E402
from test_export_curves import TINY, tool  # noqa: E402

TOOL = "analysis/interrupt_at.py"


def test_stopped_at_a_step_then_resumed_gives_the_uninterrupted_run(tmp_path):
    flags = [*TINY, "--seed", 1, "--exp-name", "r"]
    whole = run_script("td3_accel_mujoco.py", [*flags, "--run-dir", tmp_path / "whole"])
    assert whole.returncode == 0, whole.stderr
    r = tool(TOOL, 200, "td3_accel_mujoco.py", *flags, "--run-dir", tmp_path / "cut")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "SIGTERM at step 200" in r.stdout
    (cut,) = (tmp_path / "cut").glob("*__r__*")
    assert load_pt(cut / "resume.pt")["global_step"] == 200
    resumed = run_script("td3_accel_mujoco.py", ["--resume", cut])
    assert resumed.returncode == 0, resumed.stderr
    (first,) = (tmp_path / "whole").glob("*__r__*")
    r = tool(
        "analysis/compare_checkpoints.py",
        first / "final.pt",
        cut / "final.pt",
        "--ignore",
        "args/run_dir",
        "args/resume",
    )
    assert r.returncode == 0 and "0 difference(s)" in r.stdout, r.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args in ([0, "td3_accel_mujoco.py"], [10, tmp_path / "missing.py"]):
        r = tool(TOOL, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) <= 2, r.stderr
        assert "error:" in r.stderr.strip().splitlines()[-1], r.stderr
