"""tools/evaluate.py on checkpoints written by tiny real runs of each of the nine scripts: for the same seeds, its
episodes give the returns (and success rates) each run logged in its own evaluation at the checkpoint's step; and bad
input is one line and exit code 2."""

import csv
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from accel_helpers import REPO_ROOT, load_run_events, load_script, subprocess_env

from tools import evaluate

HAVE_MANISKILL = importlib.util.find_spec("mani_skill") is not None
needs_maniskill = pytest.mark.skipif(not HAVE_MANISKILL, reason="mani_skill is not installed")

# Tiny runs (a few seconds each on one core). Each evaluates at the end of every stage and at the step the copied
# resume.pt was written (accel: 100 stage 1, 150 handover, 200 end; baselines: 100, 200).
TINY_TRANSFORMER = dict(dim_model=16, dim_feedforward=32, num_heads=2)
MUJOCO_COMMON = dict(env_id="Hopper-v4", batch_size=16, eval_episodes=2, eval_frequency=100, log_frequency=50,
                     checkpoint_frequency=100, num_threads=1)  # fmt: skip
ACCEL_MUJOCO = dict(accel_steps=150, finetune_steps=50, learning_starts=60, buffer_size=64, accel_buffer_size=500,
                    critic_warmup=10, **MUJOCO_COMMON, **TINY_TRANSFORMER)  # fmt: skip
BASELINE_MUJOCO = dict(total_timesteps=200, learning_starts=60, buffer_size=500, **MUJOCO_COMMON)
RUNS = {
    "td3_accel_mujoco.py": ACCEL_MUJOCO,
    "td3_accel_lstm_pomdp.py": dict(ACCEL_MUJOCO, pomdp="velocity", lstm_hidden_size=8),
    "td3_mlp_mujoco.py": BASELINE_MUJOCO,
    "td3_lstm_mujoco.py": dict(BASELINE_MUJOCO, pomdp="velocity", lstm_hidden_size=8),
    "td3_transformer_mujoco.py": dict(BASELINE_MUJOCO, **TINY_TRANSFORMER),
}
# ManiSkill: one eval env (the evaluation runs its episodes in one env, as evaluate.py does), PushCube's 50 steps
MANISKILL_COMMON = dict(env_id="PushCube-v1", num_envs=2, num_eval_envs=1, eval_episodes=1, batch_size=16,
                        eval_frequency=10_000, log_frequency=50, checkpoint_frequency=0, num_threads=1,
                        sim_backend="cpu")  # fmt: skip
RUNS_MANISKILL = {
    "td3_accel_maniskill.py": dict(accel_steps=60, finetune_steps=20, learning_starts=30, buffer_size=64,
                                   finetune_batch_size=16, accel_buffer_size=500, critic_warmup=4,
                                   **MANISKILL_COMMON, **TINY_TRANSFORMER),
    "td3_mlp_maniskill.py": dict(total_timesteps=60, learning_starts=30, buffer_size=200, **MANISKILL_COMMON),
    "td3_lstm_maniskill.py": dict(total_timesteps=60, learning_starts=30, buffer_size=200, lstm_hidden_size=8,
                                  **MANISKILL_COMMON),
    "td3_transformer_maniskill.py": dict(total_timesteps=60, learning_starts=30, buffer_size=200,
                                         **MANISKILL_COMMON, **TINY_TRANSFORMER),
}  # fmt: skip


def tiny_run(script: str, flags: dict, root) -> str:
    """Run the script's main() in this process; returns the run directory. A copy of resume.pt, written at step
    --checkpoint-frequency and removed by the run at its end, is kept as RUN/resume_copy/resume.pt."""
    mod = load_script(os.path.join(REPO_ROOT, evaluate.SCRIPTS[script]), f"_test_evaluate_{script[:-3]}")
    args = dataclasses.replace(mod.Args(), run_dir=str(root), **flags)

    def on_step(v):
        run_path = v["run"].path
        path = os.path.join(run_path, "resume.pt")
        if os.path.exists(path) and not os.path.exists(os.path.join(run_path, "resume_copy")):
            os.makedirs(os.path.join(run_path, "resume_copy"))
            shutil.copy(path, os.path.join(run_path, "resume_copy", "resume.pt"))

    mod.main(args, on_step=on_step)
    (run,) = [os.path.join(root, d) for d in os.listdir(root) if d.endswith(tuple("0123456789_"))]
    return run


def logged(run: str, tag: str) -> dict:
    return {e.step: e.value for e in load_run_events(run).Scalars(tag)}


def evaluated(capsys, tmp_path, path: str, *flags) -> list[dict]:
    """evaluate.py's episodes (its CSV rows) for a checkpoint."""
    out = tmp_path / "episodes.csv"
    rc = evaluate.main([str(path), "--csv", str(out), *map(str, flags)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    with open(out) as f:
        return list(csv.DictReader(f))


def same_as_logged(rows: list[dict], value: float, key: str = "return") -> None:
    """The mean over the run's own evaluation episodes equals the logged (float32) value to the bit."""
    assert np.float32(np.mean([float(r[key]) for r in rows])) == np.float32(value)


@pytest.fixture(scope="module")
def mujoco_runs(tmp_path_factory):
    return {script: tiny_run(script, flags, tmp_path_factory.mktemp(script[:-3])) for script, flags in RUNS.items()}


@pytest.mark.parametrize("script", list(RUNS))
def test_final_pt_repeats_the_runs_last_evaluation(script, mujoco_runs, capsys, tmp_path):
    run = mujoco_runs[script]
    flags = RUNS[script]
    accel = "accel" in script
    tag = "eval/transformer_return" if accel else "eval/return"
    last = 200
    rows = evaluated(capsys, tmp_path, os.path.join(run, "final.pt"), "--episodes", 3)
    assert [int(r["seed"]) for r in rows] == [flags.get("seed", 1) + 10_000 + last + k for k in range(3)]
    assert {r["script"] for r in rows} == {script} and all(int(r["length"]) > 0 for r in rows)
    same_as_logged(rows[:2], logged(run, tag)[last])
    assert len({r["return"] for r in rows}) == 3  # three different episodes, not one repeated
    if flags.get("pomdp") == "velocity":
        assert rows[0]["env_id"] == "Hopper-v4 (velocity-only observations)"
    # other seeds, other episodes
    other = evaluated(capsys, tmp_path, os.path.join(run, "final.pt"), "--episodes", 2, "--seed", 5)
    assert [int(r["seed"]) for r in other] == [5, 6] and other[0]["return"] != rows[0]["return"]


@pytest.mark.parametrize("script", list(RUNS))
def test_resume_pt_repeats_the_evaluation_at_its_step(script, mujoco_runs, capsys, tmp_path):
    run = mujoco_runs[script]
    path = os.path.join(run, "resume_copy", "resume.pt")
    assert torch.load(path, weights_only=False)["global_step"] == 100
    tag = "eval/transformer_return" if "accel" in script else "eval/return"
    rows = evaluated(capsys, tmp_path, path, "--episodes", 2)
    same_as_logged(rows, logged(run, tag)[100])


@pytest.mark.parametrize("script", [s for s in RUNS if "accel" in s])
@pytest.mark.parametrize("policy", ["transformer", "accelerator"])
def test_accelerated_pt_both_policies(script, policy, mujoco_runs, capsys, tmp_path):
    run = mujoco_runs[script]
    rows = evaluated(capsys, tmp_path, os.path.join(run, "accelerated.pt"), "--episodes", 2, "--policy", policy)
    assert {r["policy"] for r in rows} == {policy} and {int(r["step"]) for r in rows} == {150}
    same_as_logged(rows, logged(run, f"eval/{policy}_return")[150])


def test_summary_names_std_convention_and_the_logged_value(mujoco_runs, capsys):
    run = mujoco_runs["td3_mlp_mujoco.py"]
    assert evaluate.main([os.path.join(run, "final.pt"), "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    assert rows[0].startswith("evaluate: td3_mlp_mujoco.py's final.pt at step 200, Hopper-v4: its actor, 4 ")
    assert "std " in rows[1] and "(sample, ddof=1)" in rows[1] and "median " in rows[1] and "max " in rows[1]
    value = logged(run, "eval/return")[200]
    assert f"logged {value:.4f}" in out and f"here {value:.4f}" in out


@needs_maniskill
@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=[pytest.mark.slow] if "accel" in s else []) for s in RUNS_MANISKILL]
)
def test_maniskill_final_pt_repeats_the_runs_last_evaluation(script, capsys, tmp_path):
    """ManiSkill's CPU simulator, env processes and all: about 6 s per baseline, 25 s for td3_accel_maniskill.py
    (its final.pt, and its accelerated.pt's accelerator)."""
    run = tiny_run(script, RUNS_MANISKILL[script], tmp_path / "runs")
    who = "transformer_" if "accel" in script else ""
    rows = evaluated(capsys, tmp_path, os.path.join(run, "final.pt"), "--episodes", 1)
    for key in ("return", "success_once", "success_at_end"):
        same_as_logged(rows, logged(run, f"eval/{who}{key}")[80 if "accel" in script else 60], key)
    assert int(rows[0]["length"]) == 50  # PushCube's time limit: evaluation episodes run to it
    if "accel" in script:
        rows = evaluated(capsys, tmp_path, os.path.join(run, "accelerated.pt"), "--episodes", 1, "--policy",
                         "accelerator")  # fmt: skip
        same_as_logged(rows, logged(run, "eval/accelerator_return")[60])


# ---------------------------------------------------------------------------------------------------------- bad input
def one_line_exit_2(capsys, argv, message):
    rc = evaluate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("evaluate: error: "), err
    assert message in err, err


def test_missing_truncated_and_foreign_files(mujoco_runs, capsys, tmp_path):
    one_line_exit_2(capsys, [tmp_path / "nope.pt"], "nope.pt: no such file")
    data = open(os.path.join(mujoco_runs["td3_mlp_mujoco.py"], "final.pt"), "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    one_line_exit_2(capsys, [tmp_path / "cut.pt"], "not a whole checkpoint")
    (tmp_path / "text.pt").write_text("hello\n")
    one_line_exit_2(capsys, [tmp_path / "text.pt"], "not a checkpoint of the training scripts")
    torch.save({"model": torch.zeros(3)}, tmp_path / "other.pt")
    one_line_exit_2(capsys, [tmp_path / "other.pt"], "no args and global_step")
    torch.save({"args": {"env_id": "Hopper-v4"}, "global_step": 3, "actor": {}}, tmp_path / "which.pt")
    one_line_exit_2(capsys, [tmp_path / "which.pt"], "cannot tell which training script wrote it")
    torch.save({"args": {}, "global_step": 3, "script": "train.py"}, tmp_path / "script.pt")
    one_line_exit_2(capsys, [tmp_path / "script.pt"], "written by train.py, not one of the nine training scripts")


def test_weights_that_do_not_fit_the_network(mujoco_runs, capsys, tmp_path):
    ckpt = torch.load(os.path.join(mujoco_runs["td3_transformer_mujoco.py"], "final.pt"), weights_only=False)
    ckpt["args"]["dim_model"] = 32  # the weights are 16 wide
    torch.save(ckpt, tmp_path / "final.pt")
    one_line_exit_2(capsys, [tmp_path / "final.pt"], "its transformer weights do not fit td3_transformer_mujoco.py")


def test_bad_flags(mujoco_runs, capsys):
    final = os.path.join(mujoco_runs["td3_mlp_mujoco.py"], "final.pt")
    one_line_exit_2(capsys, [final, "--policy", "accelerator"], "td3_mlp_mujoco.py trains no accelerator")
    one_line_exit_2(capsys, [final, "--policy", "transformer"], "td3_mlp_mujoco.py trains no transformer")
    one_line_exit_2(capsys, [final, "--episodes", 0], "--episodes 0: give 1 or more")
    one_line_exit_2(capsys, [final, "--policy", "lstm"], "invalid choice")


def test_video_without_moviepy_is_one_line(mujoco_runs, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # as if not installed: `import moviepy` raises ImportError
    final = os.path.join(mujoco_runs["td3_mlp_mujoco.py"], "final.pt")
    one_line_exit_2(capsys, [final, "--video", tmp_path / "videos"], "--video needs moviepy")
    assert not (tmp_path / "videos").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("moviepy") is None, reason="moviepy is not installed")
def test_video_records_episodes(mujoco_runs, capsys, tmp_path):
    final = os.path.join(mujoco_runs["td3_accel_lstm_pomdp.py"], "final.pt")
    rc = evaluate.main([final, "--episodes", "2", "--video", str(tmp_path / "videos")])
    assert rc == 0, capsys.readouterr().err
    videos = sorted(os.listdir(tmp_path / "videos"))
    assert [v for v in videos if v.endswith(".mp4")] == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]
    assert all(os.path.getsize(tmp_path / "videos" / v) > 1000 for v in videos if v.endswith(".mp4"))


def test_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "tools/evaluate.py", str(tmp_path / "final.pt")], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"evaluate: error: {tmp_path / 'final.pt'}: no such file"
