"""analysis/export_curves.py keeps a finished run's curves in the repository; tools/plot_runs.py reads the exported
folder as it reads the run: the same tables from the CSV as from the TensorBoard events, and the run itself gone."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import REPO_ROOT, run_script, subprocess_env  # noqa: E402

TINY = ["--env-id", "Pendulum-v1", "--accel-steps", "300", "--learning-starts", "100", "--finetune-steps", "100",
        "--eval-frequency", "100", "--eval-episodes", "1", "--batch-size", "16", "--dim-model", "16",
        "--dim-feedforward", "32", "--critic-warmup", "20"]  # fmt: skip


def tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_exported_runs_give_the_same_tables_and_unfinished_runs_are_left_out(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "curves"
    for seed in (1, 2):
        r = run_script("td3_accel_mujoco.py", [*TINY, "--seed", seed, "--run-dir", runs, "--exp-name", "accel"])
        assert r.returncode == 0, r.stderr
    # an unfinished run: its events, no final.pt (as a run interrupted before its first resume.pt)
    r = run_script("td3_accel_mujoco.py", [*TINY, "--seed", 3, "--run-dir", runs, "--exp-name", "accel"])
    unfinished = next(p for p in runs.iterdir() if "__3__" in p.name)
    os.remove(unfinished / "final.pt")
    r = tool("analysis/export_curves.py", runs, out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in runs.iterdir() if "__3__" not in p.name)
    assert "unfinished, left out" in r.stdout
    meta = json.loads(next(out.iterdir()).joinpath("run.json").read_text())
    active = meta["active_seconds"]  # both stages ran, none of it stopped
    assert set(active) == {"stage1", "stage2"} and 0 < sum(active.values()) <= meta["wall_seconds"] + 0.2, meta
    table = ["tools/plot_runs.py", "--table", "--complete-only", "--reference", "accel", "--per-seed"]
    before = tool(*table[:1], runs, *table[1:])
    shutil.rmtree(runs)  # runs/ is gone: the repository's copy is all there is
    after = tool(*table[:1], out, *table[1:])
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert "| Pendulum-v1 | accel | transformer_return |" in after.stdout
    assert after.stdout == before.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = tool("analysis/export_curves.py", tmp_path / "missing", tmp_path / "out")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = tool("analysis/export_curves.py", tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_active_seconds_leave_out_stops_and_split_by_stage():
    sys.path.insert(0, REPO_ROOT)
    from analysis.export_curves import active_seconds

    # events every 10 s; a 700-s stop (SIGSTOP, or the night between two sessions) before step 30; stage 2 from 40
    events = [(0.0, 0), (10.0, 10), (20.0, 20), (720.0, 30), (730.0, 40), (740.0, 50), (750.0, 50)]
    stage_at = {0: 1, 20: 1, 40: 2, 50: 2}
    assert active_seconds(events, stage_at) == {"stage1": 20.0, "stage2": 30.0}
    assert active_seconds(events, stage_at, max_gap=1000) == {"stage1": 720.0, "stage2": 30.0}
    assert active_seconds(events, {}) == {"stage1": 50.0}  # a baseline logs no stage: all of it is stage 1


def test_run_costs_from_exported_run_json(tmp_path):
    """analysis/run_costs.py: hours and steps/s per stage from run.json's active_seconds, per run and per method."""
    runs = {
        "Ant-v4__accel__1__1": {"args": {"exp_name": "accel", "seed": "1", "accel_steps": "3600",
                                         "finetune_steps": "1800"}, "active_seconds": {"stage1": 36.0, "stage2": 36.0}},
        "Ant-v4__mlp__2__2": {"args": {"exp_name": "mlp", "seed": "2", "total_timesteps": "7200"},
                              "active_seconds": {"stage1": 3600.0}},
        "Ant-v4__mlp__4__4": {"args": {"exp_name": "mlp", "seed": "4", "total_timesteps": "7200"},
                              "active_seconds": {"stage1": 900.0}},
        "Ant-v4__mlp__5__5": {"args": {"exp_name": "mlp", "seed": "5", "total_timesteps": "7200"},
                              "active_seconds": {"stage1": 1800.0}},
        "Ant-v4__mlp__3__3": {"args": {"exp_name": "mlp", "seed": "3", "total_timesteps": "7200"}},  # no active_seconds
    }  # fmt: skip
    for name, meta in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps(meta))
    r = tool("analysis/run_costs.py", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| accel | 1 | 0.02 | 0.01, 100 | 0.01, 50 |" in r.stdout
    assert "| mlp | 2 | 1.00 | 1.00, 2 | - |" in r.stdout
    assert "accel: 1 run, 0.02 h; mlp: 3 runs, 1.75 h; all: 1.77 core-hours" in r.stdout
    assert "| accel | 1 | 100 (100-100) | 50 (50-50) |" in r.stdout  # steps/s per method: median (min-max)
    assert "| mlp | 3 | 4 (2-8) | - |" in r.stdout
    assert "Ant-v4__mlp__3__3: exported without active_seconds" in r.stdout
    r = tool("analysis/run_costs.py", tmp_path / "missing")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
