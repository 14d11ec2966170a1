"""baselines/td3_{mlp,lstm,transformer}_mujoco.py: resumable runs (issue 11, td3_accel_mujoco.py's design copied into
each script). SIGTERM at an episode boundary, then --resume, is exactly the uninterrupted run (eval returns, losses,
weights, optimizers); SIGTERM mid-episode to a subprocess exits 3 with one line naming --resume, and the resumed run
ends with no step logged twice; bad --resume input is one line and exit code 2, the run directory untouched.
Pendulum-v1: 200-step episodes (time limit only), so the boundaries are known in advance; tiny networks."""

import dataclasses
import glob
import importlib.util
import inspect
import os
import re
import shutil
import signal
import sys
import time
from operator import attrgetter

import pytest
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import (  # noqa: E402
    REPO_ROOT,
    assert_each_step_once,
    checked,
    load_pt,
    load_run_events,
    run_cli,
    scalars,
    single_run_dir,
    start_script,
)

import td3_accel_mujoco as accel  # noqa: E402

NAMES = ["mlp", "lstm", "transformer"]
SCRIPTS = {name: os.path.join("baselines", f"td3_{name}_mujoco.py") for name in NAMES}
EPISODE = 200  # Pendulum-v1's time limit
TINY = {"mlp": [], "lstm": ["--lstm-hidden-size", "8"], "transformer": ["--dim-model", "8", "--dim-feedforward", "16"]}
PENDULUM = ["--env-id", "Pendulum-v1", "--learning-starts", "100", "--batch-size", "8", "--buffer-size", "1000",
            "--eval-episodes", "1", "--log-frequency", "50", "--num-threads", "1"]  # fmt: skip
LEARNERS = ("actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target")
OPTIMIZERS = ("q_optimizer", "actor_optimizer")

_modules = {}


def load(name: str):
    """A baseline script as a module, once (its own name: tests/test_baselines.py imports the same files)."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"_resume_{name}", os.path.join(REPO_ROOT, SCRIPTS[name]))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def parse(name: str, argv: list) -> object:
    return tyro.cli(load(name).Args, args=[*map(str, PENDULUM), *TINY[name], *map(str, argv)])


def signal_at(step: int, signum=signal.SIGTERM, seen: dict | None = None):
    """on_step: send this process `signum` after environment step `step` (recording the loop's episode_step)."""

    def on_step(loop):
        if loop["global_step"] == step:
            if seen is not None:
                seen["episode_step"] = loop["episode_step"]
            os.kill(os.getpid(), signum)

    return on_step


def sigterm_once_there(proc, pattern: str, timeout: float = 120):
    """SIGTERM to a started script as soon as a file matching `pattern` exists; (proc, stdout, stderr) at its exit."""
    try:
        deadline = time.time() + timeout
        while not glob.glob(pattern):
            assert proc.poll() is None, f"exited before {pattern} was there: {proc.communicate()}"
            assert time.time() < deadline, f"no {pattern} after {timeout} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        return proc, *proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def steps_of(ea, tag: str) -> list[int]:
    return [step for step, _ in scalars(ea, tag)]


def assert_same_run(path: str, reference: str) -> None:
    """A resumed run (2 * EPISODE steps, evaluated every EPISODE) logged and ended as the uninterrupted `reference`:
    eval returns, episodes and losses, each step once; weights and optimizers to the bit."""
    ours, ref = load_run_events(path), load_run_events(reference)
    for tag in ("eval/return", "charts/episodic_return", "losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss"):
        assert scalars(ours, tag) == scalars(ref, tag), tag
    assert steps_of(ours, "eval/return") == [EPISODE, 2 * EPISODE]
    assert_each_step_once(ours)
    assert len(ours.Tensors("hyperparameters/text_summary")) == 1  # the resumed process adds no second one
    a, b = load_pt(os.path.join(path, "final.pt")), load_pt(os.path.join(reference, "final.pt"))
    assert (a["global_step"], a["eval_return"]) == (b["global_step"], b["eval_return"])
    for key in LEARNERS:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    for key in OPTIMIZERS:
        torch.testing.assert_close(a[key]["state"], b[key]["state"], rtol=0, atol=0, msg=key)
        assert a[key]["param_groups"] == b[key]["param_groups"], key


# ---------------------------------------------------------------------------------------------------------------
# The design, copied: constants, flags, functions
def test_resume_design_is_td3_accel_mujoco_s():
    mods = [load(name) for name in NAMES]
    for m in mods:
        assert (m.RESUME_FILE, m.EXIT_INTERRUPTED) == (accel.RESUME_FILE, accel.EXIT_INTERRUPTED)
        assert (m.Args().checkpoint_frequency, m.Args().resume) == (accel.Args().checkpoint_frequency, None)
        fields = {f.name for f in dataclasses.fields(m.Args)}
        # a misspelt name would make a flag silently unchangeable; the steps flag is the baselines' own
        assert set(m.RESUME_SAFE) <= fields and m.RESUME_SAFE[-1] == "resume"
        assert set(m.RESUME_SAFE) - {"total_timesteps"} == set(accel.RESUME_SAFE) - {"accel_steps", "finetune_steps"}
        for name in ("Interrupted", "save_checkpoint", "load_resume_state"):
            assert inspect.getsource(getattr(m, name)) == inspect.getsource(getattr(accel, name)), name
    for m in mods[1:]:  # the copies in the three baselines must not drift apart
        for name in ("check_resume_args", "cli", "ReplayBuffer.load_state_dict"):
            assert inspect.getsource(attrgetter(name)(m)) == inspect.getsource(attrgetter(name)(mods[0])), name


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM at an episode boundary, --resume: exactly the uninterrupted run
@pytest.mark.parametrize("name", NAMES)
def test_sigterm_at_an_episode_boundary_then_resume_is_the_uninterrupted_run(name, tmp_path):
    m = load(name)
    argv = ["--total-timesteps", 2 * EPISODE, "--eval-frequency", EPISODE, "--checkpoint-frequency", 150]

    periodic = {}

    def watch(loop):  # the periodic resume.pt: written after step 150's on_step, there at step 151's
        if loop["global_step"] in (150, 151):
            path = os.path.join(loop["run"].path, m.RESUME_FILE)
            periodic[loop["global_step"]] = os.path.exists(path) and load_pt(path)["global_step"]

    m.main(parse(name, [*argv, "--run-dir", tmp_path / "reference"]), on_step=watch)
    reference = single_run_dir(tmp_path / "reference")
    assert periodic == {150: False, 151: 150}
    assert sorted(f for f in os.listdir(reference) if ".pt" in f) == ["final.pt"]  # resume.pt removed at the end

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = {}
    interrupted = rf"^SIGTERM at step {EPISODE}: resume\.pt written; continue with:\n  python "
    with pytest.raises(m.Interrupted, match=interrupted):
        m.main(parse(name, [*argv, "--run-dir", tmp_path / "runs"]), on_step=signal_at(EPISODE, seen=seen))
    assert seen == {"episode_step": 0}, "the test's boundary is not one"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored
    path = single_run_dir(tmp_path / "runs")
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert (state["script"], state["global_step"], state["episode_step"]) == (f"td3_{name}_mujoco.py", EPISODE, 0)
    assert state["rb"]["count"] == len(state["rb"]["obs"]) == EPISODE  # the buffer's filled part only
    assert not os.path.exists(os.path.join(path, "final.pt"))

    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    assert f"resumed {path} at step {EPISODE}" in proc.stdout and "mid-episode" not in proc.stdout
    assert proc.stderr == ""
    assert sorted(f for f in os.listdir(path) if ".pt" in f) == ["final.pt"]
    assert_same_run(path, reference)


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM during an evaluation: it stops at its next step, and the resumed run evaluates that step again first
ACT = {"mlp": "mlp_act", "lstm": "lstm_act", "transformer": "transformer_act"}  # the policy call of each baseline
EVAL_ARGV = ["--total-timesteps", 2 * EPISODE, "--eval-frequency", EPISODE]
_uninterrupted = {}


def uninterrupted(name: str, tmp_path_factory) -> str:
    """The run directory of a whole run with EVAL_ARGV, once per baseline."""
    if name not in _uninterrupted:
        run_dir = tmp_path_factory.mktemp(f"uninterrupted_{name}")
        load(name).main(parse(name, [*EVAL_ARGV, "--run-dir", run_dir]))
        _uninterrupted[name] = single_run_dir(run_dir)
    return _uninterrupted[name]


@pytest.mark.parametrize("step", [EPISODE, 2 * EPISODE])  # an evaluation mid-run, and the last step's
@pytest.mark.parametrize("name", NAMES)
def test_sigterm_during_an_evaluation_stops_it_and_the_resumed_run_redoes_it(name, step, tmp_path, tmp_path_factory,
                                                                            monkeypatch):  # fmt: skip
    """SIGTERM 10 policy calls into the evaluation at `step`: the evaluation stops at its next step (not at its end),
    resume.pt is written for `step` marked eval_pending, and the resumed run evaluates `step` again first, then ends
    exactly as the run never interrupted."""
    m, reference = load(name), uninterrupted(name, tmp_path_factory)
    calls, sent = [], []
    real = getattr(m, ACT[name])

    def counted(*a):
        calls.append(1)
        if len(calls) == 10 and not sent:  # step `step`'s own action is one call: this one is the evaluation's
            sent.append(len(calls))
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a)

    def arm(loop):
        if loop["global_step"] == step - 1:
            calls.clear()
            monkeypatch.setattr(m, ACT[name], counted)

    with pytest.raises(m.Interrupted, match=rf"^SIGTERM at step {step}: resume\.pt written; continue with:\n  python "):
        m.main(parse(name, [*EVAL_ARGV, "--run-dir", tmp_path / "runs"]), on_step=arm)
    assert len(calls) - sent[0] <= 1, "the evaluation went on after the signal"
    monkeypatch.setattr(m, ACT[name], real)
    path = single_run_dir(tmp_path / "runs")
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert (state["global_step"], state["episode_step"], state["eval_pending"]) == (step, 0, True)

    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    assert f"resumed {path} at step {step}; a signal stopped its evaluation, which runs again first" in proc.stdout
    assert proc.stderr == ""
    assert_same_run(path, reference)


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM to a subprocess mid-episode: exit 3, one line naming --resume; the resumed run logs no step twice
@pytest.mark.parametrize("name", NAMES)
def test_sigterm_mid_episode_to_a_subprocess_exits_3_and_resumes_to_the_end(name, tmp_path):
    m, run_dir, total = load(name), tmp_path / "runs", 300
    argv = [*PENDULUM, *TINY[name], "--total-timesteps", total, "--eval-frequency", 100, "--checkpoint-frequency", 50,
            "--run-dir", run_dir]  # fmt: skip
    # the periodic resume.pt at step 50: the loop runs, its handlers are installed
    proc, out, err = sigterm_once_there(start_script(SCRIPTS[name], argv), str(run_dir / "*" / m.RESUME_FILE))
    assert proc.returncode == m.EXIT_INTERRUPTED, f"exit code {proc.returncode}\n{out}\n{err}"
    path = single_run_dir(run_dir)
    lines = err.strip().splitlines()
    assert len(lines) == 3 and re.fullmatch(r"SIGTERM: finishing the current step, then writing resume\.pt "
                                            r"\(again to quit at once\)", lines[0]), err  # fmt: skip
    assert [line for line in lines if "--resume" in line] == lines[2:], err  # the command on a line of its own
    match = re.fullmatch(
        rf"td3_{name}_mujoco\.py: interrupted: SIGTERM at step (\d+): resume\.pt written; continue "
        rf"with:\n  python {re.escape(SCRIPTS[name])} --resume (.+)",
        "\n".join(lines[1:]),
    )
    assert match and match.group(2) == path, lines[1:]
    stopped = int(match.group(1))
    state = load_pt(os.path.join(path, m.RESUME_FILE))
    assert state["global_step"] == stopped and 50 <= stopped < total
    assert state["episode_step"] == stopped % EPISODE and state["episode_count"] == stopped // EPISODE

    open(os.path.join(path, f"{m.RESUME_FILE}.tmp4242"), "wb").write(b"half a file")  # a kill mid-write left it
    resumed = checked(run_cli(m, ["--resume", path, "--eval-frequency", 200], cwd=tmp_path))  # a RESUME_SAFE flag
    assert f"resumed {path} at step {stopped}" in resumed.stdout
    assert (f"resumed mid-episode: the interrupted episode ({stopped % EPISODE} steps) is not counted" in resumed.stdout
            ) == (stopped % EPISODE != 0)  # fmt: skip
    assert resumed.stderr == ""
    assert sorted(f for f in os.listdir(path) if ".pt" in f) == ["final.pt"]  # the leftover too is gone
    final = load_pt(os.path.join(path, "final.pt"))
    assert final["global_step"] == total and final["args"]["eval_frequency"] == 200

    ea = load_run_events(path)
    assert_each_step_once(ea)
    assert steps_of(ea, "charts/SPS") == list(range(50, total + 1, 50))
    next_eval = 200 * (stopped // 200 + 1)  # the resumed run's --eval-frequency 200, and the last step
    assert steps_of(ea, "eval/return") == [*range(100, stopped + 1, 100), *range(next_eval, total, 200), total]
    # the interrupted episode is dropped: a fresh one starts at the resumed step
    assert steps_of(ea, "charts/episodic_length") == [*range(EPISODE, stopped + 1, EPISODE),
                                                      *range(stopped + EPISODE, total + 1, EPISODE)]  # fmt: skip
    assert len(ea.Tensors("hyperparameters/text_summary")) == 1


# ---------------------------------------------------------------------------------------------------------------
# A crash after a periodic resume.pt: what the crashed process logged after it is logged again, once
@pytest.mark.parametrize("name", NAMES)
def test_resume_after_a_crash_logs_each_step_once(name, tmp_path):
    m = load(name)
    argv = ["--total-timesteps", 120, "--learning-starts", 30, "--log-frequency", 10, "--eval-frequency", 40,
            "--checkpoint-frequency", 60, "--run-dir", tmp_path / "runs"]  # fmt: skip

    def crash(loop):
        if loop["global_step"] == 90:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        m.main(parse(name, argv), on_step=crash)
    path = single_run_dir(tmp_path / "runs")
    assert steps_of(load_run_events(path), "charts/SPS")[-1] == 90  # logged past the saved step 60
    proc = checked(run_cli(m, ["--resume", path], cwd=tmp_path))
    assert f"resumed {path} at step 60" in proc.stdout
    assert "resumed mid-episode: the interrupted episode (60 steps) is not counted" in proc.stdout
    ea = load_run_events(path)
    assert_each_step_once(ea)
    assert steps_of(ea, "charts/SPS") == list(range(10, 121, 10))
    assert steps_of(ea, "eval/return") == [40, 80, 120]


# ---------------------------------------------------------------------------------------------------------------
# Bad --resume input: one line, exit code 2, the run directory untouched
@pytest.fixture(scope="module")
def unfinished(tmp_path_factory):
    """Unfinished runs of the three baselines (SIGINT at step 30 of 60) and of td3_accel_mujoco.py (SIGTERM)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    runs = {}
    try:
        for name in NAMES:
            run_dir = tmp_path_factory.mktemp(name)
            args = parse(name, ["--total-timesteps", 60, "--run-dir", run_dir])
            with pytest.raises(load(name).Interrupted, match="^SIGINT at step 30: "):
                load(name).main(args, on_step=signal_at(30, signal.SIGINT))
            runs[name] = single_run_dir(run_dir)
        run_dir = tmp_path_factory.mktemp("accel")
        args = dataclasses.replace(accel.Args(), env_id="Pendulum-v1", accel_steps=40, finetune_steps=20,
                                   learning_starts=20, batch_size=8, buffer_size=16, accel_buffer_size=100,
                                   dim_model=8, dim_feedforward=16, eval_episodes=1, num_threads=1,
                                   run_dir=str(run_dir))  # fmt: skip
        with pytest.raises(accel.Interrupted):
            accel.main(args, on_step=signal_at(30))
        runs["accel"] = single_run_dir(run_dir)
    finally:  # main() sets both; a module fixture runs outside conftest's per-test restore
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return runs


def bad_resume_cases(name: str) -> dict:
    """case -> (extra argv, damage done to a copy of the run directory, fragment of the error line)."""
    other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]

    def remove(path):
        os.remove(os.path.join(path, "resume.pt"))

    def finish(path):
        os.rename(os.path.join(path, "resume.pt"), os.path.join(path, "final.pt"))

    def garble(path):
        open(os.path.join(path, "resume.pt"), "wb").write(b"\x00 not a state \xff" * 40)

    def truncate(path):  # what a non-atomic write killed half-way would leave
        data = open(os.path.join(path, "resume.pt"), "rb").read()
        open(os.path.join(path, "resume.pt"), "wb").write(data[: len(data) // 2])

    return {
        "missing run directory": ("nowhere", [], None, "no such run directory"),
        "no resume.pt": (name, [], remove, "no resume.pt to resume from"),
        "finished run": (name, [], finish, "no resume.pt to resume from (the run finished: final.pt is there)"),
        "garbage resume.pt": (name, [], garble, "resume.pt is not readable ("),
        "truncated resume.pt": (name, [], truncate, "resume.pt is not readable ("),
        "run of td3_accel_mujoco.py": ("accel", [], None, f"resume.pt was not written by td3_{name}_mujoco.py"),
        f"run of td3_{other}_mujoco.py": (other, [], None, f"resume.pt was not written by td3_{name}_mujoco.py"),
        "contradicting env": (name, ["--env-id", "Hopper-v4"], None,
                              "--env-id Hopper-v4 contradicts the run's Pendulum-v1; only total_timesteps, "),
        "contradicting buffer": (name, ["--buffer-size", 999], None, "--buffer-size 999 contradicts the run's 1000"),
        "contradicting seed": (name, ["--seed", 2], None, "--seed 2 contradicts the run's 1"),
        "fewer steps than run": (name, ["--total-timesteps", 20], None,
                                 "--total-timesteps 20 ends the run before step 30, where it stopped"),
        "negative frequency": (name, ["--checkpoint-frequency", -1], None, "--checkpoint-frequency must be >= 0"),
    }  # fmt: skip


def snapshot(path) -> dict:
    return {f: open(os.path.join(path, f), "rb").read() for f in sorted(os.listdir(path))}


@pytest.mark.parametrize("name", NAMES)
def test_bad_resume_input_exits_2_with_one_line(name, unfinished, tmp_path):
    m = load(name)
    for case, (source, extra, damage, fragment) in bad_resume_cases(name).items():
        path = str(tmp_path / case.replace(" ", "_").replace(".", "_"))
        if source != "nowhere":
            shutil.copytree(unfinished[source], path)
            if damage is not None:
                damage(path)
        before = snapshot(path) if os.path.exists(path) else None
        proc = run_cli(m, ["--resume", path, *extra], cwd=tmp_path)
        assert proc.returncode == 2, f"{case}: exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"td3_{name}_mujoco.py: error: "), f"{case}:\n{proc.stderr}"
        assert fragment in lines[0], f"{case}: {lines[0]}"
        if case != "negative frequency":
            assert f"--resume {path}: " in lines[0], f"{case}: {lines[0]}"
        assert proc.stdout == "", case
        assert (snapshot(path) if os.path.exists(path) else None) == before, f"{case}: the run directory changed"
