"""td3_accel_lstm_pomdp.py: resumable runs (issue 11, the design of td3_accel_mujoco.py). SIGTERM at an episode
boundary, in stage 1 and in stage 2, then --resume gives exactly the uninterrupted run (eval returns, weights,
optimizers), and SIGTERM during an evaluation stops it at its next step and the resumed run redoes it first (issue 27);
SIGTERM mid-episode to a subprocess exits 3 with one line naming --resume, and the resumed run ends with
no step logged twice, and no history or context window reaches back into the interrupted episode; bad --resume input
is one line and exit code 2. Pendulum-v1 (--pomdp none): its episodes are 200 steps long, so the boundaries are known
in advance. Every run is tiny (LSTM hidden size 8, small transformer)."""

import dataclasses
import glob
import inspect
import os
import re
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import (  # noqa: E402
    assert_each_step_once,
    assert_identical,
    checked,
    load_pt,
    load_run_events,
    run_cli,
    scalars,
    single_run_dir,
    start_script,
)
from test_accel_lstm_pomdp import sha256  # noqa: E402 - the script's other tests' helper

import td3_accel_lstm_pomdp as m  # noqa: E402
import td3_accel_mujoco as accel_mujoco  # noqa: E402

SCRIPT = "td3_accel_lstm_pomdp.py"
EPISODE = 200  # Pendulum-v1's time limit: episodes end at fixed steps after each reset
ACCEL_STEPS, FINETUNE_STEPS = 250, 210  # stage 2 resets at 250, so its first episode ends at 450
TINY = dict(env_id="Pendulum-v1", pomdp="none", batch_size=32, buffer_size=64, accel_buffer_size=1000, dim_model=32,
            dim_feedforward=64, lstm_hidden_size=8, eval_episodes=1, num_threads=1, critic_warmup=20, history_len=2,
            context_len=4)  # fmt: skip
LEARNERS = ("actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target", "transformer", "transformer_target",
            "q_optimizer", "actor_optimizer", "transformer_optimizer")  # fmt: skip
ERROR = re.compile(r"^td3_accel_lstm_pomdp\.py: error: --resume .+$")


def run_args(run_dir, **overrides) -> m.Args:
    return dataclasses.replace(m.Args(), **TINY, accel_steps=ACCEL_STEPS, learning_starts=150,
                               finetune_steps=FINETUNE_STEPS, eval_frequency=50, log_frequency=50,
                               run_dir=str(run_dir), **overrides)  # fmt: skip


def sigterm_at(step: int, seen: dict):
    """on_step that sends this process SIGTERM after `step`, recording where in the episode that was."""

    def on_step(L):
        if L["global_step"] == step:
            seen.update(stage=L["stage"], episode_step=L["episode_step"])
            os.kill(os.getpid(), signal.SIGTERM)

    return on_step


def test_resume_design_is_td3_accel_mujoco_s():
    """Same constants, flags and (CleanRL style: copied) resume functions as td3_accel_mujoco.py."""
    assert (m.RESUME_FILE, m.RESUME_SAFE, m.EXIT_INTERRUPTED) == (
        accel_mujoco.RESUME_FILE, accel_mujoco.RESUME_SAFE, accel_mujoco.EXIT_INTERRUPTED)  # fmt: skip
    assert (m.Args().checkpoint_frequency, m.Args().resume) == (50_000, None)
    for name in ("Interrupted", "buffer_state", "load_buffer_state", "save_checkpoint", "load_resume_state",
                 "check_resume_args", "cli"):  # fmt: skip
        assert inspect.getsource(getattr(m, name)) == inspect.getsource(getattr(accel_mujoco, name)), (
            f"{name} differs from td3_accel_mujoco.py: re-sync the copy"
        )


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM at an episode boundary, --resume: exactly the uninterrupted run
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    m.main(run_args(run_dir))
    path = single_run_dir(run_dir)
    return {"path": path, "events": load_run_events(path)}


@pytest.mark.parametrize("stop, stage", [(EPISODE, 1), (ACCEL_STEPS + EPISODE, 2)])
def test_sigterm_at_an_episode_boundary_then_resume_is_the_uninterrupted_run(reference, tmp_path, stop, stage):
    seen, handlers = {}, (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    with pytest.raises(m.Interrupted, match=rf"SIGTERM at step {stop}: resume\.pt written; continue with:\n  python "
                       rf"{SCRIPT} --resume "):  # fmt: skip
        m.main(run_args(tmp_path / "runs"), on_step=sigterm_at(stop, seen))
    assert seen == {"stage": stage, "episode_step": 0}, "the test's boundary is not one"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored
    path = single_run_dir(tmp_path / "runs")
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert (state["script"], state["stage"], state["global_step"], state["episode_step"]) == (SCRIPT, stage, stop, 0)
    assert state["rb"]["count"] == (stop if stage == 1 else 64)  # stage 2: the small buffer, full (prefilled)
    assert len(state["trajectory"]["windows"]) == (stop - 150 if stage == 1 else 0)  # T: after the warm-up only
    assert not os.path.exists(os.path.join(path, "final.pt"))

    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    assert f"resumed {path} at step {stop} (stage {stage})" in proc.stdout
    assert "mid-episode" not in proc.stdout
    assert sorted(f for f in os.listdir(path) if ".pt" in f) == ["accelerated.pt", "final.pt"]

    ours, ref = load_run_events(path), reference["events"]
    for tag in ("eval/transformer_return", "eval/accelerator_return", "charts/episodic_return", "charts/stage",
                "losses/qf1_loss", "losses/actor_loss", "losses/bc_loss"):  # fmt: skip
        assert scalars(ours, tag) == scalars(ref, tag), tag
    assert_each_step_once(ours)
    assert len(ours.Tensors("hyperparameters/text_summary")) == 1  # the resumed process adds no second one
    for name in ("accelerated.pt", "final.pt"):
        a, b = load_pt(os.path.join(path, name)), load_pt(os.path.join(reference["path"], name))
        assert a["global_step"] == b["global_step"]
        for learner in LEARNERS:
            assert_identical(a[learner], b[learner], f"{name}:{learner}")


@pytest.mark.parametrize("step, stage", [(EPISODE, 1), (ACCEL_STEPS + EPISODE, 2)])
def test_sigterm_during_an_evaluation_stops_it_and_the_resumed_run_redoes_it(reference, tmp_path, monkeypatch, step,
                                                                            stage):  # fmt: skip
    """SIGTERM 10 transformer calls into the evaluation at `step` (an episode boundary, evaluated at
    --eval-frequency 50): the evaluation stops at its next step (not at its end), resume.pt is written for `step`
    marked eval_pending, and the resumed run evaluates `step` again first, then ends exactly as the run never
    interrupted."""
    calls, sent = [], []
    real = m.transformer_act

    def counted(*a):
        calls.append(1)
        if len(calls) == 10 and not sent:  # step `step`'s own action is at most one call: this one is the evaluation's
            sent.append(len(calls))
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a)

    def arm(L):
        if L["global_step"] == step - 1:
            calls.clear()
            monkeypatch.setattr(m, "transformer_act", counted)

    with pytest.raises(m.Interrupted, match=rf"^SIGTERM at step {step}: resume\.pt written; continue with:\n  python "):
        m.main(run_args(tmp_path / "runs"), on_step=arm)
    assert len(calls) - sent[0] <= 1, "the evaluation went on after the signal"
    monkeypatch.setattr(m, "transformer_act", real)
    path = single_run_dir(tmp_path / "runs")
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert (state["global_step"], state["stage"], state["episode_step"]) == (step, stage, 0)
    assert state["eval_pending"] is True
    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    redo = "a signal stopped its evaluation, which runs again first"
    assert f"resumed {path} at step {step} (stage {stage}); {redo}" in proc.stdout
    ours, ref = load_run_events(path), reference["events"]
    for tag in ("eval/transformer_return", "eval/accelerator_return", "charts/episodic_return", "charts/stage",
                "losses/qf1_loss", "losses/actor_loss", "losses/bc_loss"):  # fmt: skip
        assert scalars(ours, tag) == scalars(ref, tag), tag
    assert step in [s for s, _ in scalars(ours, "eval/transformer_return")]
    assert_each_step_once(ours)
    for name in ("accelerated.pt", "final.pt"):
        a, b = load_pt(os.path.join(path, name)), load_pt(os.path.join(reference["path"], name))
        for learner in LEARNERS:
            assert_identical(a[learner], b[learner], f"{name}:{learner}")


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM to a subprocess mid-episode: exit 3, one line naming --resume; the resumed run logs no step twice
def test_sigterm_mid_episode_to_a_subprocess_exits_3_and_resumes_to_the_end(tmp_path):
    run_dir, accel_steps, total = tmp_path / "runs", 220, 250
    argv = ["--env-id", "Pendulum-v1", "--pomdp", "none", "--accel-steps", accel_steps, "--learning-starts", 200,
            "--finetune-steps", total - accel_steps, "--eval-frequency", 1000, "--log-frequency", 25,
            "--checkpoint-frequency", 50, "--batch-size", 32, "--buffer-size", 64, "--accel-buffer-size", 1000,
            "--dim-model", 32, "--dim-feedforward", 64, "--lstm-hidden-size", 8, "--eval-episodes", 1,
            "--num-threads", 1, "--critic-warmup", 20, "--history-len", 2, "--context-len", 4,
            "--run-dir", run_dir]  # fmt: skip
    proc = start_script(SCRIPT, argv)
    try:
        deadline = time.time() + 120
        while not glob.glob(str(run_dir / "*" / m.RESUME_FILE)):  # the periodic one at step 50: inside the loop
            assert proc.poll() is None, f"exited early: {proc.communicate()}"
            assert time.time() < deadline, "no resume.pt after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == m.EXIT_INTERRUPTED, f"exit code {proc.returncode}\n{out}\n{err}"
    path = single_run_dir(run_dir)
    lines = err.strip().splitlines()  # the handler's, then the interrupted line and the --resume command below it
    assert len(lines) == 3 and re.fullmatch(r"SIGTERM: finishing the current step, then writing resume\.pt "
                                            r"\(again to quit at once\)", lines[0]), err  # fmt: skip
    match = re.fullmatch(rf"{SCRIPT}: interrupted: SIGTERM at step (\d+): resume\.pt written; continue with:\n  python "
                         rf"{SCRIPT} --resume (.+)", "\n".join(lines[1:]))  # fmt: skip
    assert match and match.group(2) == path, lines[1:]
    stopped = int(match.group(1))
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert state["global_step"] == stopped and 50 < stopped < total
    # Pendulum never terminates: episodes begin at steps 0 and 200, and at the handover (stage 2)
    stage, episode_step = (1, stopped % EPISODE) if stopped <= accel_steps else (2, stopped - accel_steps)
    assert (state["stage"], state["episode_step"]) == (stage, episode_step)

    resumed = checked(run_cli(m, ["--resume", path, "--eval-frequency", 100], cwd=tmp_path))  # a RESUME_SAFE flag
    assert f"resumed {path} at step {stopped} (stage {stage})" in resumed.stdout
    if episode_step:  # mid-episode, as SIGTERM nearly always lands: that episode is dropped, a fresh one begins
        assert f"resumed mid-episode: the interrupted episode ({episode_step} steps)" in resumed.stdout
    assert sorted(f for f in os.listdir(path) if ".pt" in f) == ["accelerated.pt", "final.pt"]
    assert load_pt(os.path.join(path, "final.pt"))["global_step"] == total
    ea = load_run_events(path)
    assert_each_step_once(ea)
    logged = sorted({*range(25, total + 1, 25), accel_steps, total})  # every logged step, once
    assert [s for s, _ in scalars(ea, "charts/SPS")] == logged
    # the episode ending at 200 is logged unless it was the one interrupted; the fresh one cannot end in stage 1
    ends = [s for s, _ in scalars(ea, "charts/episodic_return")] if stopped >= EPISODE else []
    assert ends == [EPISODE] * (stopped >= EPISODE) and ("charts/episodic_return" in ea.Tags()["scalars"]) == bool(ends)
    assert len(ea.Tensors("hyperparameters/text_summary")) == 1
    assert load_pt(os.path.join(path, "final.pt"))["args"]["eval_frequency"] == 100


# ---------------------------------------------------------------------------------------------------------------
# Bad --resume input: one line, exit code 2, the run directory untouched
@pytest.fixture(scope="module")
def unfinished(tmp_path_factory):
    """An unfinished run: SIGTERM at step 30 of 60 (stage 1)."""
    run_dir = tmp_path_factory.mktemp("unfinished")
    args = dataclasses.replace(run_args(run_dir), accel_steps=40, learning_starts=20, finetune_steps=20)
    with pytest.raises(m.Interrupted):
        m.main(args, on_step=sigterm_at(30, {}))
    return single_run_dir(run_dir)


def resume_state_of(script: str):
    def edit(path):
        state = load_pt(os.path.join(path, m.RESUME_FILE))
        state["script"] = script
        torch.save(state, os.path.join(path, m.RESUME_FILE))

    return edit


BAD_RESUME = {
    "missing run directory": (["--resume", "NOWHERE"], None, "no such run directory"),
    "no resume.pt": (["--resume", "RUN"], lambda p: os.remove(os.path.join(p, m.RESUME_FILE)), "no resume.pt to "),
    "finished run": (["--resume", "RUN"], lambda p: os.rename(os.path.join(p, m.RESUME_FILE),
                                                              os.path.join(p, "final.pt")),
                     "no resume.pt to resume from (the run finished: final.pt is there)"),
    "corrupt resume.pt": (["--resume", "RUN"],
                          lambda p: open(os.path.join(p, m.RESUME_FILE), "wb").write(b"\x00 not a state \xff" * 40),
                          "resume.pt is not readable"),
    "resume.pt of td3_accel_mujoco.py": (["--resume", "RUN"], resume_state_of("td3_accel_mujoco.py"),
                                         "resume.pt was not written by td3_accel_lstm_pomdp.py"),
    "contradicting flag": (["--resume", "RUN", "--history-len", 3], None,
                           "--history-len 3 contradicts the run's 2; only accel_steps, "),
    "contradicting env": (["--resume", "RUN", "--env-id", "Hopper-v4"], None,
                          "--env-id Hopper-v4 contradicts the run's Pendulum-v1"),
    "stage 1 shorter than run": (["--resume", "RUN", "--accel-steps", 20], None,
                                 "--accel-steps 20 is less than the 30 steps stage 1 has already run"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_RESUME))
def test_bad_resume_input_exits_2_with_one_line(unfinished, tmp_path, case):
    argv, damage, fragment = BAD_RESUME[case]
    path = str(tmp_path / os.path.basename(unfinished))
    shutil.copytree(unfinished, path)
    if damage is not None:
        damage(path)
    before = {f: sha256(os.path.join(path, f)) for f in os.listdir(path)}
    argv = [{"RUN": path, "NOWHERE": str(tmp_path / "nowhere")}.get(a, a) if isinstance(a, str) else a for a in argv]
    proc = run_cli(m, argv, cwd=tmp_path)
    assert proc.returncode == 2, f"{case}: exit code {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ERROR.match(lines[0]), f"{case}: expected one error line, got:\n{proc.stderr}"
    assert fragment in lines[0], lines[0]
    assert {f: sha256(os.path.join(path, f)) for f in os.listdir(path)} == before  # nothing written or removed


def test_resume_removes_leftover_temporary_files_and_continues(unfinished, tmp_path):
    path = str(tmp_path / os.path.basename(unfinished))
    shutil.copytree(unfinished, path)
    open(os.path.join(path, f"{m.RESUME_FILE}.tmp12345"), "wb").write(b"half a file")  # a kill mid-write
    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    assert f"resumed {path} at step 30 (stage 1)" in proc.stdout
    assert "resumed mid-episode: the interrupted episode (30 steps) is not counted" in proc.stdout
    assert sorted(f for f in os.listdir(path) if not f.startswith("events.out.tfevents.")) == [
        "accelerated.pt", "final.pt"]  # fmt: skip
    assert len(glob.glob(os.path.join(path, "events.out.tfevents.*"))) == 2  # one per process
    final = load_pt(os.path.join(path, "final.pt"))
    assert final["global_step"] == 60
    assert all(np.isfinite(v).all() for v in final["qf1"].values())


def test_mid_episode_resume_starts_a_fresh_episode_no_window_reaches_back(unfinished, tmp_path):
    """The LSTMs carry no hidden state across steps (each reads its window from a zero state), so what a resume must
    not leak is the episode window: after a mid-episode resume the acting window and the replay buffer's rebuilt
    history/context windows start with the fresh episode, not inside the interrupted one (still in the buffer)."""
    path = str(tmp_path / os.path.basename(unfinished))
    shutil.copytree(unfinished, path)
    seen = []

    def on_step(L):
        if not seen:
            rb, window_len = L["rb"], L["window_len"]
            assert (L["global_step"], rb.count, rb.episode_step[30], rb.episode_step[29]) == (31, 31, 0, 29)
            window, valid, next_window, next_valid = rb.windows(np.array([30]), window_len)
            assert valid[0].tolist() == [False] * (window_len - 1) + [True]
            assert next_valid[0].tolist() == [False] * (window_len - 2) + [True, True]
            np.testing.assert_array_equal(window[0, -1], rb.obs[30])
            assert L["window"].valid.sum() == 2 and L["episode_step"] == 1
        seen.append(L["global_step"])

    args = dataclasses.replace(m.Args(**load_pt(os.path.join(path, m.RESUME_FILE))["args"]), resume=path)
    m.main(args, on_step=on_step)
    assert seen == list(range(31, 61))
