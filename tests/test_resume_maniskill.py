"""Interrupting and resuming the ManiSkill scripts (issue 11): --checkpoint-frequency, --resume RUN_DIR, SIGTERM/SIGINT
(exit 3, then 0 on resume). The episode rule for the vector env, as td3_accel_maniskill.py states it: at an episode
boundary (every env has just started an episode) a resumed run starts the same episodes again; it is exact on envs
without a history (a fake vector env here), and on ManiSkill's CPU simulator the same episodes start to the bit and,
measured, the short run after the resume logs the uninterrupted run's values (PhysX drifts apart later, which the
tests do not pin); mid-episode, every env starts a fresh episode. A signal during an evaluation stops it at its next
step and the resumed run redoes it (issue 27). Bad input to --resume is one line and exit 2 in all four scripts."""

import ast
import dataclasses
import importlib.util
import os
import re
import signal
import subprocess
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import (  # noqa: E402
    REPO_ROOT,
    assert_each_step_once,
    checked,
    load_run_events,
    run_cli,
    scalars,
    single_run_dir,
    subprocess_env,
)

import td3_accel_maniskill as m  # noqa: E402

BASELINES = {}
for _name in ("mlp", "lstm", "transformer"):
    _path = os.path.join(REPO_ROOT, "baselines", f"td3_{_name}_maniskill.py")
    _spec = importlib.util.spec_from_file_location(f"td3_{_name}_maniskill", _path)
    BASELINES[_name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(BASELINES[_name])
SCRIPTS = {"accel": m, **BASELINES}

needs_maniskill = pytest.mark.skipif(
    importlib.util.find_spec("mani_skill") is None,
    reason="mani_skill is not installed (pip install -r requirements.txt)",
)


def flags(**kw) -> list:
    """Command-line flags from keyword arguments (booleans as tyro spells them: --flag, --no-flag)."""
    out = []
    for key, value in kw.items():
        name = key.replace("_", "-")
        out += [f"--{name}"] if value is True else [f"--no-{name}"] if value is False else [f"--{name}", value]
    return out


def sigterm_at(step: int):
    """An on_step hook that sends this process SIGTERM after global step `step`."""

    def hook(L):
        if L["global_step"] == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def run_cli_hooked(module, args: list, on_step) -> subprocess.CompletedProcess:
    """run_cli, with `on_step` passed to the module's main() (cli() calls main(args))."""
    real = module.main
    module.main = lambda a: real(a, on_step=on_step)
    try:
        return run_cli(module, args)
    finally:
        module.main = real


def interrupted_line(proc, script: str, signame: str, step: int | None = None) -> None:
    """The run exited 3 and said so in one last line: which signal, at which step, how to go on."""
    checked(proc, m.EXIT_INTERRUPTED)
    last = "\n".join(proc.stderr.strip().splitlines()[-2:])  # the command on a line of its own, to copy
    at = r"\d+" if step is None else str(step)
    assert re.fullmatch(rf"{script}: interrupted: {signame} at step {at}: resume\.pt written; continue with:\n"
                        rf"  python \S*{script} --resume \S+", last), proc.stderr  # fmt: skip


def assert_each_step_logged_once(ea) -> None:
    assert_each_step_once(ea)
    assert len(ea.Tensors("hyperparameters/text_summary")) == 1  # a resumed run adds no second table


def newest_transition(L) -> list:
    rb = L["rb"]
    i = (rb.ptr - 1) % rb.rows
    return [rb.obs[i].clone(), rb.actions[i].clone(), rb.rewards[i].clone(), rb.next_obs[i].clone()]


def resume_state(path: str) -> dict:
    return torch.load(os.path.join(path, m.RESUME_FILE), weights_only=False)


# ---------------------------------------------------------------------------------------------------------------
# Exact on envs without a history: a fake vector env whose episodes start from ManiSkill-style generators
LENGTH = 5  # every fake episode runs 5 steps, so all envs reset together: a boundary every 5 steps of all envs


class SeededEnv(gym.Env):
    """obs = [env index, t, start, 0.5]: `start` is drawn at each reset from the per-episode generator that
    EnvGenerators saves (as ManiSkill's tasks draw their initial states); reward start + t + action[0]; success at
    t == 2; truncated at LENGTH. Nothing else carries over from one step to the next."""

    def __init__(self, idx: int):
        self.idx, self.t, self.start = idx, 0, 0.0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._batched_episode_rng = types.SimpleNamespace(rngs=[np.random.RandomState(2022 + idx)])
        self._batched_main_rng = types.SimpleNamespace(rngs=[np.random.RandomState(idx)])

    def _obs(self):
        return np.array([self.idx, self.t, self.start, 0.5], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._batched_episode_rng.rngs[0].seed(seed)
        self.t, self.start = 0, float(self._batched_episode_rng.rngs[0].uniform())
        return self._obs(), {"success": False}

    def step(self, action):
        self.t += 1
        return self._obs(), self.start + self.t + float(action[0]), False, self.t >= LENGTH, {"success": self.t == 2}


def seeded_envs(num_envs: int, device) -> m.VecEnv:
    fns = [lambda i=i: m.EnvGenerators(SeededEnv(i)) for i in range(num_envs)]
    vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return m.VecEnv(vec, torch.device(device), on_gpu=False)


FAKE_TINY = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, accel_steps=60, finetune_steps=30, learning_starts=15,
                 batch_size=8, finetune_batch_size=8, buffer_size=12, accel_buffer_size=300, dim_model=16,
                 dim_feedforward=16, num_threads=1, eval_frequency=15, log_frequency=6, bc_frequency=3,
                 bc_buffer_size=50, critic_ascent=True, critic_warmup=6, checkpoint_frequency=0)  # fmt: skip


def assert_same_run(whole: str, path: str, nets=("transformer", "qf1", "qf2_target")) -> set:
    """The run in `path` (resumed) logged each step once and the values of the run in `whole` (SPS aside), and ended
    with its networks `nets`; the scalar tags compared."""
    a, b = load_run_events(whole), load_run_events(path)
    tags = set(a.Tags()["scalars"]) - {"charts/SPS"}
    assert tags == set(b.Tags()["scalars"]) - {"charts/SPS"}
    for tag in sorted(tags):
        assert scalars(a, tag) == scalars(b, tag), tag
    assert_each_step_logged_once(b)
    final_a = torch.load(os.path.join(whole, "final.pt"), weights_only=False)
    final_b = torch.load(os.path.join(path, "final.pt"), weights_only=False)
    for net in nets:
        for key, value in final_a[net].items():
            assert torch.equal(value, final_b[net][key]), (net, key)
    return tags


def test_resume_at_episode_starts_is_exact_on_envs_without_history(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "make_envs", lambda args, n, ignore, device: seeded_envs(n, device))
    whole = dataclasses.replace(m.Args(), **FAKE_TINY, run_dir=str(tmp_path / "whole"))
    m.main(whole)
    split = dataclasses.replace(whole, run_dir=str(tmp_path / "split"))
    with pytest.raises(m.Interrupted, match="SIGTERM at step 45"):  # 3 envs x 15 steps: 3 whole episodes each
        m.main(split, on_step=sigterm_at(45))
    path = single_run_dir(tmp_path / "split")
    assert resume_state(path)["episode_start"]
    with pytest.raises(m.Interrupted, match="SIGTERM at step 75"):  # and once more in stage 2
        m.main(dataclasses.replace(split, resume=path), on_step=sigterm_at(75))
    assert resume_state(path)["stage"] == 2
    m.main(dataclasses.replace(split, resume=path))
    assert not os.path.exists(os.path.join(path, m.RESUME_FILE))

    tags = assert_same_run(single_run_dir(tmp_path / "whole"), path)
    assert {"eval/accelerator_return", "eval/transformer_return", "losses/bc_loss", "losses/actor_loss"} <= tags


@pytest.fixture(scope="module")
def fake_whole(tmp_path_factory) -> str:
    """The uninterrupted FAKE_TINY run on the seeded fake envs: its run directory."""
    run_dir = tmp_path_factory.mktemp("whole")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(m, "make_envs", lambda args, n, ignore, device: seeded_envs(n, device))
        m.main(dataclasses.replace(m.Args(), **FAKE_TINY, run_dir=str(run_dir)))
    return single_run_dir(run_dir)


@pytest.mark.parametrize("step,stage,at", [(45, 1, 7), (60, 1, 7), (75, 2, 3), (90, 2, 3)])
def test_sigterm_during_an_evaluation_stops_it_and_the_resumed_run_redoes_it(fake_whole, tmp_path, monkeypatch, step,
                                                                            stage, at):  # fmt: skip
    """SIGTERM `at` policy calls into the evaluation at `step` (each evaluation: 5 steps of the 2 eval envs; in stage
    1 the accelerator's, then the transformer's; steps 60 and 90 end stage 1 and the run): the evaluation stops at its
    next step (not at its end), resume.pt is written for `step` marked eval_pending, and the resumed run evaluates
    `step` again first, then ends exactly as the run never interrupted."""
    monkeypatch.setattr(m, "make_envs", lambda args, n, ignore, device: seeded_envs(n, device))
    calls, sent = [], []
    real = m.evaluate

    def counted(envs, policy, episodes, seed, context_len, at_step, *rest):
        def counting(windows):
            calls.append(1)
            if len(calls) == at and not sent:
                sent.append(len(calls))
                os.kill(os.getpid(), signal.SIGTERM)
            return policy(windows)

        return real(envs, counting if at_step == step else policy, episodes, seed, context_len, at_step, *rest)

    monkeypatch.setattr(m, "evaluate", counted)
    args = dataclasses.replace(m.Args(), **FAKE_TINY, run_dir=str(tmp_path))
    with pytest.raises(m.Interrupted, match=f"^SIGTERM at step {step}: resume.pt written; continue with:\n  python "):
        m.main(args)
    assert len(calls) == sent[0], "the evaluation went on after the signal"
    monkeypatch.setattr(m, "evaluate", real)
    path = single_run_dir(tmp_path)
    state = resume_state(path)
    assert (state["global_step"], state["stage"], state["eval_pending"]) == (step, stage, True)
    proc = checked(run_cli(m, ["--resume", path]))
    redo = f"resumed {path} at step {step} (stage {stage}); a signal stopped its evaluation, which runs again first"
    assert redo in proc.stdout, proc.stdout
    assert re.search(rf"^step={step} stage={stage} SPS=\d+ eta=\S+ episodes=", proc.stdout, re.M), proc.stdout
    assert_same_run(fake_whole, path)


def test_resume_mid_episode_starts_fresh_episodes(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "make_envs", lambda args, n, ignore, device: seeded_envs(n, device))
    args = dataclasses.replace(m.Args(), **FAKE_TINY, run_dir=str(tmp_path))
    with pytest.raises(m.Interrupted):
        m.main(args, on_step=sigterm_at(24))  # each env 3 steps into its 5th episode
    path = single_run_dir(tmp_path)
    first = {}
    proc = checked(run_cli_hooked(m, ["--resume", path], lambda L: first.setdefault("t", newest_transition(L))))
    assert "resumed mid-episode: the 3 interrupted episodes (up to 3 steps in) are not counted" in proc.stdout
    obs = first["t"][0]
    assert obs[:, 1].tolist() == [0, 0, 0]  # the resumed run's first transitions open new episodes
    assert_each_step_logged_once(load_run_events(path))
    assert torch.load(os.path.join(path, "final.pt"), weights_only=False)["global_step"] == 90


# ---------------------------------------------------------------------------------------------------------------
# The real CPU simulator (PushCube-v1, 2 train envs, 1 eval env)
TINY = dict(env_id="PushCube-v1", num_envs=2, num_eval_envs=1, eval_episodes=1, accel_steps=120, finetune_steps=20,
            learning_starts=40, batch_size=32, finetune_batch_size=32, buffer_size=64, accel_buffer_size=1000,
            dim_model=32, dim_feedforward=64, eval_frequency=1000, log_frequency=20, num_threads=1, critic_warmup=10,
            ignore_terminations=True)  # fmt: skip
# with --ignore-terminations both envs run PushCube's 50-step episodes side by side: boundaries at steps 100, 200, ...


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """An uninterrupted run that also writes resume.pt every 100 steps; its first transitions after step 100."""
    run_dir = tmp_path_factory.mktemp("whole")
    seen = {}

    def hook(L):
        if L["global_step"] == 102:
            seen["transition"] = newest_transition(L)
            seen["resume"] = resume_state(os.path.join(str(run_dir), os.listdir(run_dir)[0]))
        seen["last_step"] = L["global_step"]

    proc = checked(run_cli_hooked(m, [*flags(**TINY, checkpoint_frequency=100), "--run-dir", run_dir], hook))
    return proc, single_run_dir(run_dir), seen


@needs_maniskill
def test_periodic_resume_file_is_written_and_removed_at_the_end(uninterrupted):
    _, path, seen = uninterrupted
    assert seen["resume"]["global_step"] == 100 and seen["resume"]["episode_start"]
    assert len(seen["resume"]["env_generators"]) == 2 and seen["last_step"] == 140
    assert sorted(f for f in os.listdir(path) if f.endswith(".pt")) == ["accelerated.pt", "final.pt"]


@needs_maniskill
def test_sigterm_at_an_episode_start_resumes_the_same_episodes(uninterrupted, tmp_path):
    _, whole, seen = uninterrupted
    interrupted_line(run_cli_hooked(m, [*flags(**TINY), "--run-dir", tmp_path], sigterm_at(100)),
                     "td3_accel_maniskill.py", "SIGTERM", 100)  # fmt: skip
    path = single_run_dir(tmp_path)
    assert resume_state(path)["episode_start"]
    first = {}
    proc = checked(run_cli_hooked(m, ["--resume", path], lambda L: first.setdefault("t", newest_transition(L))))
    assert f"resumed {path} at step 100 (stage 1)" in proc.stdout and "mid-episode" not in proc.stdout
    # the same episode starts (PushCube draws the cube's place from the env process's torch generator), the same
    # networks and RNG act on it, and the simulator's first step agrees; later steps may drift (PhysX's history)
    for mine, theirs in zip(first["t"], seen["transition"], strict=True):
        assert torch.equal(mine, theirs)
    assert torch.load(os.path.join(path, "final.pt"), weights_only=False)["global_step"] == 140
    ea, eb = load_run_events(whole), load_run_events(path)
    assert_each_step_logged_once(eb)
    # what the resumed process logged, after the resume point: stage 1's end (120) and the run's (140), evaluations
    # and losses, against the uninterrupted run's. They depend on everything resume.pt restores (networks, Adam's
    # moments, replay buffer, T, RNGs) and on the 10 steps per env simulated since; measured: those steps agree to the
    # bit (the drift of PhysX's history, above, comes later), so these values are the uninterrupted run's exactly
    after = {"eval/accelerator_return": [120], "eval/transformer_return": [120, 140], "losses/qf1_loss": [120, 140],
             "losses/actor_loss": [120, 140], "losses/bc_loss": [120], "charts/stage": [120, 140]}  # fmt: skip
    for tag, steps in after.items():
        mine, theirs = [x for x in scalars(eb, tag) if x[0] > 100], [x for x in scalars(ea, tag) if x[0] > 100]
        assert [s for s, _ in mine] == steps and mine == theirs, (tag, mine, theirs)


@needs_maniskill
def test_ctrl_c_stops_the_whole_process_group_cleanly_and_the_run_resumes(tmp_path):
    """Ctrl-C reaches every process of the group: the env processes ignore it, the main one saves and exits 3."""
    args = flags(**{**TINY, "ignore_terminations": False, "accel_steps": 4000, "eval_frequency": 20})
    proc = subprocess.Popen([sys.executable, "td3_accel_maniskill.py", *map(str, args), "--run-dir", str(tmp_path)],
                            cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if line.startswith("step="):  # in the loop: the handlers are in place
                break
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    interrupted_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "td3_accel_maniskill.py",
                     "SIGINT")  # fmt: skip
    assert "SIGINT: finishing the current step" in err
    path = single_run_dir(tmp_path)
    state = resume_state(path)
    step = state["global_step"]
    leftover = os.path.join(path, "resume.pt.tmp12345")  # as a process killed mid-write leaves it
    open(leftover, "wb").close()
    # shorter than planned: the stage lengths may change as long as the steps already run fit
    proc = checked(run_cli(m, ["--resume", path, "--accel-steps", step + 20, "--finetune-steps", 20,
                               "--eval-frequency", 1000]))  # fmt: skip
    assert ("resumed mid-episode" in proc.stdout) == (not state["episode_start"]), proc.stdout
    assert not os.path.exists(leftover) and not os.path.exists(os.path.join(path, m.RESUME_FILE))
    assert torch.load(os.path.join(path, "final.pt"), weights_only=False)["global_step"] == step + 40
    ea = load_run_events(path)
    assert_each_step_logged_once(ea)
    stages = dict(scalars(ea, "charts/stage"))
    assert (stages[step + 20], stages[step + 40], max(stages)) == (1, 2, step + 40)  # each stage's end


# ---------------------------------------------------------------------------------------------------------------
# Baselines (TD3 from scratch with the MLP, LSTM and transformer actors): the same round trip
BASELINE_TINY = dict(env_id="PushCube-v1", num_envs=2, num_eval_envs=1, eval_episodes=1, total_timesteps=60,
                     learning_starts=20, batch_size=16, buffer_size=200, eval_frequency=1000, log_frequency=10,
                     num_threads=1)  # fmt: skip
ARCH_TINY = {"mlp": {}, "lstm": dict(lstm_hidden_size=8), "transformer": dict(dim_model=16, dim_feedforward=16)}


@needs_maniskill
@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_sigterm_then_resume(name, tmp_path):
    b = BASELINES[name]
    args = [*flags(**BASELINE_TINY, **ARCH_TINY[name]), "--run-dir", tmp_path]
    interrupted_line(run_cli_hooked(b, args, sigterm_at(30)), script_name(name), "SIGTERM", 30)
    path = single_run_dir(tmp_path)
    state = resume_state(path)
    assert (state["script"], state["global_step"], state["episode_start"]) == (script_name(name), 30, False)
    proc = checked(run_cli(b, ["--resume", path]))
    assert f"resumed {path} at step 30" in proc.stdout
    assert "resumed mid-episode: the 2 interrupted episodes (up to 15 steps in) are not counted" in proc.stdout
    assert torch.load(os.path.join(path, "final.pt"), weights_only=False)["global_step"] == 60
    assert not os.path.exists(os.path.join(path, b.RESUME_FILE))
    ea = load_run_events(path)
    assert_each_step_logged_once(ea)
    assert [s for s, _ in scalars(ea, "losses/qf1_loss")] == [30, 40, 50, 60]  # learning from step 20 on
    assert [s for s, _ in scalars(ea, "eval/success_once")] == [60]


# the baselines' evaluation, as td3_accel_maniskill.py's (test_sigterm_during_an_evaluation_...): on the fake envs
BASELINE_FAKE = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, total_timesteps=90, learning_starts=15, batch_size=8,
                     buffer_size=300, num_threads=1, eval_frequency=15, log_frequency=6, checkpoint_frequency=0,
                     history_len=3, lstm_hidden_size=8)  # fmt: skip


@pytest.mark.parametrize("step", [45, 90])  # an evaluation mid-run (each env 3 episodes in), and the last step's
def test_baseline_sigterm_during_an_evaluation_stops_it_and_the_resumed_run_redoes_it(tmp_path, monkeypatch, step):
    """td3_lstm_maniskill.py: SIGTERM 3 policy calls into the evaluation at `step` (5 steps of the 2 eval envs): the
    evaluation stops at its next step, resume.pt is written for `step` marked eval_pending, and the resumed run
    evaluates `step` again first, then ends exactly as the run never interrupted."""
    b = BASELINES["lstm"]
    monkeypatch.setattr(b, "make_envs", lambda args, n, ignore, device: seeded_envs(n, device))
    b.main(dataclasses.replace(b.Args(), **BASELINE_FAKE, run_dir=str(tmp_path / "whole")))
    policy_steps, real = [], b.check_action  # evaluate() checks each of the policy's actions

    def check_action(action, who, at_step, *rest):
        if who == "evaluated policy" and at_step == step:
            policy_steps.append(at_step)
            if len(policy_steps) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
        return real(action, who, at_step, *rest)

    monkeypatch.setattr(b, "check_action", check_action)
    args = dataclasses.replace(b.Args(), **BASELINE_FAKE, run_dir=str(tmp_path / "split"))
    with pytest.raises(b.Interrupted, match=f"^SIGTERM at step {step}: resume.pt written; continue with:\n  python "):
        b.main(args)
    assert len(policy_steps) == 3, "the evaluation went on after the signal"
    monkeypatch.setattr(b, "check_action", real)
    path = single_run_dir(tmp_path / "split")
    state = resume_state(path)
    assert (state["global_step"], state["episode_start"], state["eval_pending"]) == (step, True, True)
    proc = checked(run_cli(b, ["--resume", path]))
    assert f"resumed {path} at step {step}; a signal stopped its evaluation, which runs again first" in proc.stdout
    assert re.search(rf"^step={step} SPS=\d+ episodes=\d+ eval_success_once=", proc.stdout, re.M), proc.stdout
    tags = assert_same_run(single_run_dir(tmp_path / "whole"), path, nets=("actor", "qf1", "qf2_target"))
    assert "eval/return" in tags


# ---------------------------------------------------------------------------------------------------------------
# Bad input to --resume: one line, exit 2, nothing run (no envs are made before these checks)
def script_name(name: str) -> str:
    return os.path.basename(SCRIPTS[name].__file__)


def saved_run(tmp_path, name: str, **state) -> str:
    """A run directory holding a resume.pt of `name`'s format (the fields the checks before the run read)."""
    path = tmp_path / "run"
    path.mkdir(exist_ok=True)
    state = {"script": script_name(name), "args": dataclasses.asdict(SCRIPTS[name].Args()), "stage": 1,
             "global_step": 100, "stage1_end": 500_000, **state}  # fmt: skip
    torch.save(state, path / "resume.pt")
    return str(path)


def finished_run(tmp_path, name):
    (tmp_path / "run").mkdir()
    torch.save({}, tmp_path / "run" / "final.pt")
    return str(tmp_path / "run")


def corrupt_run(tmp_path, name):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resume.pt").write_bytes(b"half a file")
    return str(tmp_path / "run")


def other_scripts_run(tmp_path, name):
    return saved_run(tmp_path, name, script="td3_accel_mujoco.py")


def stage_2_run(tmp_path, name):
    return saved_run(tmp_path, name, stage=2)


# case: (how to make the run directory, extra flags, what the error says)
BAD_RESUME = {
    "missing dir": (lambda tmp_path, name: str(tmp_path / "nope"), [], "no such run directory"),
    "no resume.pt": (finished_run, [], "no resume.pt to resume from (the run finished: final.pt is there)"),
    "corrupt": (corrupt_run, [], "resume.pt is not readable ("),
    "contradicting flag": (saved_run, ["--env-id", "PullCube-v1"], "--env-id PullCube-v1 contradicts the run's Push"),
    "another script": (other_scripts_run, [], "resume.pt was not written by {script}"),
}
ACCEL_BAD_RESUME = {
    "stage 1 is over": (stage_2_run, ["--accel-steps", 100], "--accel-steps cannot change, stage 1 is over"),
    "steps already run": (saved_run, ["--accel-steps", 50], "--accel-steps 50 is less than the 100 steps stage 1"),
}
BASELINE_BAD_RESUME = {
    "steps already run": (saved_run, ["--total-timesteps", 50], "--total-timesteps 50 ends the run before step 100"),
}
BAD_CASES = [(name, case) for name in SCRIPTS for case in BAD_RESUME] + [("accel", c) for c in ACCEL_BAD_RESUME]
BAD_CASES += [(name, case) for name in BASELINES for case in BASELINE_BAD_RESUME]


@pytest.mark.parametrize("name,case", BAD_CASES)
def test_bad_resume_exits_2_with_one_line(name, case, tmp_path):
    make, extra, message = {**BAD_RESUME, **(ACCEL_BAD_RESUME if name == "accel" else BASELINE_BAD_RESUME)}[case]
    path = make(tmp_path, name)
    before = sorted(os.listdir(tmp_path))
    proc = run_cli(SCRIPTS[name], ["--resume", path, *extra])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip()
    assert re.fullmatch(rf"{script_name(name)}: error: --resume {re.escape(path)}: .+", line), proc.stderr
    assert message.format(script=script_name(name)) in line, line
    assert sorted(os.listdir(tmp_path)) == before and proc.stdout == ""


RESUME_SHARED = ["RESUME_FILE", "EXIT_INTERRUPTED", "Interrupted", "EnvGenerators", "buffer_state",
                 "load_buffer_state", "load_resume_state"]  # fmt: skip


def top_level(path: str) -> dict:
    """A script's top-level definitions by name (classes, functions, assigned constants), as source text."""
    text = open(path).read()
    named = {}
    for node in ast.parse(text).body:
        name = node.targets[0].id if isinstance(node, ast.Assign) else getattr(node, "name", None)
        named[name] = ast.get_source_segment(text, node)
    return named


@pytest.mark.parametrize("name", list(BASELINES))
def test_resume_code_is_identical_across_the_maniskill_scripts(name):
    """What resuming needs is written once and copied (CleanRL style), like the env layer, windows and evaluation
    (tests/test_accel_maniskill.py): the copies must not drift."""
    main, theirs = top_level(m.__file__), top_level(BASELINES[name].__file__)
    for key in RESUME_SHARED:
        assert theirs.get(key) == main[key], f"{key} differs between td3_accel_maniskill.py and td3_{name}_maniskill.py"
