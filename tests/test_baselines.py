"""Tests of baselines/td3_{mlp,lstm,transformer}_mujoco.py: the velocity-only POMDP wrapper, the episode windows the
LSTM and transformer read (padding cannot leak), end-to-end tiny runs (TensorBoard tags, final.pt) and bad input."""

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["mlp", "lstm", "transformer"]
SCRIPTS = {name: ROOT / "baselines" / f"td3_{name}_mujoco.py" for name in NAMES}
# env id -> (velocity entries kept, whether gymnasium clips qvel to +-10 in the observation)
VELOCITY_ENVS = {
    "HalfCheetah-v4": (slice(8, 17), False), "HalfCheetah-v5": (slice(8, 17), False),
    "Hopper-v4": (slice(5, 11), True), "Hopper-v5": (slice(5, 11), True),
    "Walker2d-v4": (slice(8, 17), True), "Walker2d-v5": (slice(8, 17), True),
    "Ant-v4": (slice(13, 27), False), "Ant-v5": (slice(13, 27), False),
}  # fmt: skip
# tiny networks and budgets for end-to-end runs
TINY = {"mlp": [], "lstm": ["--lstm-hidden-size", "8"], "transformer": ["--dim-model", "8", "--dim-feedforward", "16"]}
TAGS = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "eval/return", "losses/qf1_loss",
        "losses/qf2_loss", "losses/actor_loss"]  # fmt: skip

_modules = {}


def load(name: str):
    """Import a baseline script (or td3_accel_mujoco.py as "accel") as a module, once."""
    if name not in _modules:
        path = ROOT / "td3_accel_mujoco.py" if name == "accel" else SCRIPTS[name]
        spec = importlib.util.spec_from_file_location(f"_baseline_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


# ---------------------------------------------------------------------------------------------------------------
# Flags
@pytest.mark.parametrize("name", NAMES)
def test_defaults_follow_table1_and_main_script(name):
    m, accel = load(name), load("accel")
    args, main_args = m.Args(), accel.Args()
    expected = dict(gamma=0.99, tau=0.005, policy_noise=0.2, noise_clip=0.5, exploration_noise=0.1, batch_size=256,
                    learning_rate=3e-4, buffer_size=500_000, learning_starts=25_000, policy_frequency=2,
                    total_timesteps=1_000_000, eval_frequency=10_000, eval_episodes=5,
                    pomdp="none")  # fmt: skip
    assert {k: getattr(args, k) for k in expected} == expected
    # every flag the main script also has means the same and defaults the same (its --buffer-size is stage 2's)
    shared = {f.name for f in dataclasses.fields(args)} & {f.name for f in dataclasses.fields(main_args)}
    assert {"env_id", "learning_starts", "batch_size", "gamma", "log_frequency", "run_dir", "seed"} <= shared
    for field in shared - {"exp_name", "buffer_size"}:
        assert getattr(args, field) == getattr(main_args, field), field
    assert args.exp_name == f"td3_{name}_mujoco"
    if name == "transformer":
        for field in ["context_len", "num_layers", "num_heads", "dim_model", "dim_feedforward", "dropout"]:
            assert getattr(args, field) == getattr(main_args, field), field
    if name == "lstm":
        assert (args.history_len, args.lstm_hidden_size) == (main_args.context_len, 128)


def test_shared_code_is_identical_across_scripts():
    """The wrapper and index table are copied into each script (CleanRL style); the copies must not drift."""
    mods = [load(name) for name in NAMES]
    for m in mods[1:]:
        assert m.VELOCITY_ONLY == mods[0].VELOCITY_ONLY
        assert inspect.getsource(m.VelocityOnly) == inspect.getsource(mods[0].VelocityOnly)
        assert inspect.getsource(m.make_env) == inspect.getsource(mods[0].make_env)
    assert inspect.getsource(load("lstm").ReplayBuffer.windows).replace("history_len", "context_len") == (
        inspect.getsource(load("transformer").ReplayBuffer.windows)
    )


# ---------------------------------------------------------------------------------------------------------------
# Velocity-only POMDP
@pytest.mark.parametrize("env_id", list(VELOCITY_ENVS))
def test_velocity_only_keeps_exactly_qvel(env_id):
    m = load("mlp")
    keep, clipped = VELOCITY_ENVS[env_id]
    env = m.make_env(env_id, 0, "velocity")
    data = env.unwrapped.data
    full_space = env.unwrapped.observation_space
    assert env.observation_space.shape == (data.qvel.size,) == (keep.stop - keep.start,)
    assert env.observation_space.dtype == full_space.dtype
    np.testing.assert_array_equal(env.observation_space.low, full_space.low[keep])
    np.testing.assert_array_equal(env.observation_space.high, full_space.high[keep])
    obs, _ = env.reset(seed=0)
    for t in range(4):
        qvel = np.clip(data.qvel, -10, 10) if clipped else data.qvel
        assert obs.shape == env.observation_space.shape and env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs, qvel)
        np.testing.assert_array_equal(obs, env.unwrapped._get_obs()[keep])  # the same entries of the full obs
        if t > 0:
            assert np.abs(obs).max() > 1e-3  # moving: the comparison is not between zeros
        obs, *_ = env.step(env.action_space.sample())
    env.close()


def test_velocity_only_ant_v5_drops_contact_forces():
    m = load("mlp")
    full = m.make_env("Ant-v5", 0)
    assert full.observation_space.shape == (105,)  # qpos[2:] 13 + qvel 14 + contact forces 78
    velocity = m.make_env("Ant-v5", 0, "velocity")
    assert velocity.observation_space.shape == (14,)
    assert m.VELOCITY_ONLY["Ant-v5"] == (13, 26, 105)


@pytest.mark.parametrize("name", NAMES)
def test_pomdp_none_and_unknown_env(name):
    m = load(name)
    assert m.make_env("Hopper-v4", 0).observation_space.shape == (11,)
    assert m.make_env("Hopper-v4", 0, "none").reset(seed=0)[0].shape == (11,)
    with pytest.raises(m.UsageError, match="no velocity index set for InvertedPendulum-v4"):
        m.make_env("InvertedPendulum-v4", 0, "velocity")


def test_velocity_only_rejects_an_unexpected_layout():
    m = load("lstm")
    env = gym.make("Ant-v4", use_contact_forces=True)  # 27 + 84 contact forces: the index set does not apply
    with pytest.raises(m.UsageError, match="expected a 27-dim observation"):
        m.VelocityOnly(env, *m.VELOCITY_ONLY["Ant-v4"])


# ---------------------------------------------------------------------------------------------------------------
# Episode windows and padding
def fill_buffer(m, size, episodes, obs_dim=2, act_dim=1, offset=0.0):
    """Episodes of the given lengths; observation of episode e, step t = (100 e + t + offset, -(100 e + t))."""
    rb = m.ReplayBuffer(size, obs_dim, act_dim, "cpu")
    for e, length in enumerate(episodes):
        for t in range(length):
            o, o2 = np.array([100 * e + t + offset, -(100 * e + t)]), np.array([100 * e + t + 1, -(100 * e + t + 1)])
            rb.add(o, o2, np.zeros(act_dim), 0.0, t == length - 1, t)
    return rb


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_replay_windows_never_cross_an_episode(name):
    m = load(name)
    rb = fill_buffer(m, 100, [2, 4])  # indices 0, 1: episode 0; 2..5: episode 1
    window, valid, next_window, next_valid = rb.windows(np.array([2, 3, 5]), 3)
    assert valid.tolist() == [[False, False, True], [False, True, True], [True, True, True]]
    assert next_valid.tolist() == [[False, True, True], [True, True, True], [True, True, True]]
    np.testing.assert_array_equal(window[0], [[0, 0], [0, 0], [100, -100]])  # padding is zero, not episode 0
    np.testing.assert_array_equal(window[2, :, 0], [101, 102, 103])
    np.testing.assert_array_equal(next_window[0], [[0, 0], [100, -100], [101, -101]])
    # ring buffer: entries that were overwritten are not valid history
    rb = fill_buffer(m, 4, [6])  # steps 2..5 remain at indices 2, 3, 0, 1
    _, valid, _, _ = rb.windows(np.array([2, 3, 0]), 3)
    assert valid.tolist() == [[False, False, True], [False, True, True], [True, True, True]]


def lstm_nets(obs_dim=2, act_dim=1, hidden=8):
    m = load("lstm")
    torch.manual_seed(0)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    return m.LSTMActor(obs_dim, low, high, hidden), m.LSTMQNetwork(obs_dim, act_dim, hidden)


VALID = torch.tensor([[False, False, True], [False, True, True], [True, True, True], [False, False, True]])


def test_lstm_padding_cannot_leak():
    actor, critic = lstm_nets()
    window = torch.randn(4, 3, 2) * VALID[..., None]
    action = torch.rand(4, 1) * 2 - 1
    garbage = window + torch.randn(4, 3, 2).mul(100) * ~VALID[..., None]  # only padded content changes
    assert not torch.equal(garbage, window)
    torch.testing.assert_close(actor(garbage, VALID), actor(window, VALID), rtol=0, atol=1e-6)
    torch.testing.assert_close(critic(garbage, VALID, action), critic(window, VALID, action), rtol=0, atol=1e-6)
    # ... and gets no gradient
    garbage.requires_grad_(True)
    (actor(garbage, VALID).sum() + critic(garbage, VALID, action).sum()).backward()
    assert garbage.grad[~VALID].abs().max() == 0 and garbage.grad[VALID].abs().max() > 0
    # changing valid content does change the outputs (the check above can fail)
    changed = window.clone()
    changed[2, 0] += 1.0
    assert not torch.allclose(actor(changed, VALID)[2], actor(window, VALID)[2])
    assert not torch.allclose(critic(changed, VALID, action)[2], critic(window, VALID, action)[2])


def test_lstm_window_equals_lstm_over_the_valid_observations_from_zero_state():
    actor, _ = lstm_nets()
    cell = actor.lstm.cell
    window = torch.randn(4, 3, 2)
    out = actor.lstm(window, VALID)
    for b in range(4):
        h = c = torch.zeros(1, cell.hidden_size)
        for k in torch.nonzero(VALID[b]).flatten().tolist():
            h, c = cell(window[b, k][None], (h, c))
        torch.testing.assert_close(out[b], h[0])


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_previous_episode_does_not_change_the_first_steps(name):
    """End to end through the replay buffer: two buffers that differ only in the previous episode's observations
    give the same windows, actor outputs and (LSTM) critic values for the next episode's first steps."""
    m = load(name)
    a, b = fill_buffer(m, 50, [5, 5]), fill_buffer(m, 50, [5, 5])
    b.obs[:5] += 1000.0  # episode 0 only
    idx = np.array([5, 6, 7, 9])  # episode 1, steps 0, 1, 2, 4
    wa, wb = a.windows(idx, 3), b.windows(idx, 3)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)
    if name == "lstm":
        actor, critic = lstm_nets()
    else:
        torch.manual_seed(0)
        actor = m.TransformerActor(2, -np.ones(1, np.float32), np.ones(1, np.float32), 3, 1, 2, 8, 16, 0.0)
        critic = None
    actor.eval()
    for s, t in [(0, 1), (2, 3)]:  # (window, valid) of s and of s'
        wa_t, va = torch.as_tensor(wa[s]), torch.as_tensor(wa[t])
        garbage = wa_t + torch.randn_like(wa_t).mul(100) * ~va[..., None]
        torch.testing.assert_close(actor(garbage, va), actor(wa_t, va), rtol=0, atol=1e-5)
        if critic is not None:
            act = torch.zeros(len(idx), 1)
            torch.testing.assert_close(critic(garbage, va, act), critic(wa_t, va, act), rtol=0, atol=1e-6)


def test_episode_window_resets_at_episode_start():
    m = load("lstm")
    w = m.EpisodeWindow(3, 2)
    w.reset(np.array([1.0, 1.0]))
    w.push(np.array([2.0, 2.0]))
    w.reset(np.array([5.0, 5.0]))
    assert w.valid.tolist() == [False, False, True]
    np.testing.assert_array_equal(w.obs, [[0, 0], [0, 0], [5, 5]])


# ---------------------------------------------------------------------------------------------------------------
# End-to-end tiny runs
def run_script(name, argv, tmp_path, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(SCRIPTS[name]), "--run-dir", str(tmp_path / "runs"), "--num-threads", "1", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


def run_in_process(name, argv, tmp_path):
    """What run_script runs, through the script's cli() in this process (no interpreter start-up)."""
    return run_cli(load(name), ["--run-dir", tmp_path / "runs", "--num-threads", "1", *argv], cwd=tmp_path)


# every script once; velocity-only observations once, with the LSTM (the wrapper itself is unit-tested per env)
@pytest.mark.parametrize("name, pomdp", [(n, "none") for n in NAMES] + [("lstm", "velocity")])
def test_end_to_end_tiny_run(name, pomdp, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["--env-id", "Hopper-v4", "--pomdp", pomdp, "--total-timesteps", "300", "--learning-starts", "100",
            "--batch-size", "16", "--buffer-size", "500", "--eval-frequency", "150", "--eval-episodes", "1",
            "--log-frequency", "50", *TINY[name]]  # fmt: skip
    proc = run_in_process(name, argv, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^step=150 SPS=\d+ episodes=\d+ eval_return=-?\d+\.\d$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^step=300 SPS=\d+ episodes=\d+ eval_return=", proc.stdout, re.M), proc.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(rf"Hopper-v4__td3_{name}_mujoco__1__\d+", run.name)
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("events.")) == ["final.pt"]

    ea = EventAccumulator(str(run))
    ea.Reload()
    assert set(TAGS) <= set(ea.Tags()["scalars"]), ea.Tags()["scalars"]
    assert [e.step for e in ea.Scalars("eval/return")] == [150, 300]
    assert [e.step for e in ea.Scalars("losses/qf1_loss")] == [150, 200, 250, 300]
    assert [e.step for e in ea.Scalars("losses/actor_loss")] == [150, 200, 250, 300]
    assert all(e.value > 0 for e in ea.Scalars("charts/SPS"))
    assert len(ea.Scalars("charts/episodic_return")) == len(ea.Scalars("charts/episodic_length")) > 0
    text = ea.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"|pomdp|{pomdp}|" in text and "|version/torch|" in text and "|buffer_size|500|" in text

    ckpt = torch.load(run / "final.pt", map_location="cpu", weights_only=False)
    obs_dim = 6 if pomdp == "velocity" else 11
    assert (ckpt["global_step"], ckpt["obs_dim"], ckpt["act_dim"]) == (300, obs_dim, 3)
    assert ckpt["args"]["pomdp"] == pomdp
    assert {"actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target", "q_optimizer"} <= set(ckpt)
    # the saved actor acts in the env it was trained on
    m = load(name)
    args = m.Args(**ckpt["args"])
    env = m.make_env("Hopper-v4", 0, pomdp)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    obs = torch.as_tensor(env.reset(seed=0)[0], dtype=torch.float32)
    window, valid = torch.zeros(1, 3, obs_dim), torch.tensor([[False, False, True]])
    window[0, -1] = obs
    if name == "mlp":
        actor, actor_in = m.Actor(obs_dim, low, high), (obs[None],)
    elif name == "lstm":
        actor, actor_in = m.LSTMActor(obs_dim, low, high, args.lstm_hidden_size), (window, valid)
    else:
        actor, actor_in = m.make_transformer(obs_dim, low, high, args), (window, valid)
    actor.load_state_dict(ckpt["actor"])
    actor.eval()
    action = actor(*actor_in)[0].detach().numpy()
    assert action.shape == (3,) and env.action_space.contains(action)


# ---------------------------------------------------------------------------------------------------------------
# Bad input and divergence
BAD_INPUT = [
    (["--env-id", "NoSuchEnv-v0"], "--env-id NoSuchEnv-v0"),
    (["--env-id", "CartPole-v1"], "is not continuous"),
    (["--buffer-size", "100", "--batch-size", "256"], "--buffer-size (100) is smaller than --batch-size (256)"),
    (["--total-timesteps", "0"], "--total-timesteps must be positive"),
    (["--batch-size", "-1"], "--batch-size must be positive"),
    (["--learning-starts", "-5"], "--learning-starts must be >= 0"),
    (["--env-id", "InvertedPendulum-v4", "--pomdp", "velocity"], "no velocity index set for InvertedPendulum-v4"),
    (["--learning-rate", "1e38"], "--learning-rate must be finite and at most 3.4e37, got 1e+38"),
    (["--learning-rate", "inf"], "--learning-rate must be finite"),
    (["--learning-rate", "nan"], "--learning-rate must be >= 0, got nan"),
    (["--exploration-noise", "nan"], "--exploration-noise must be >= 0, got nan"),
]
SPECIFIC_BAD_INPUT = {
    "mlp": [],
    "lstm": [(["--history-len", "0"], "--history-len must be positive"),
             (["--lstm-hidden-size", "0"], "--lstm-hidden-size must be positive")],
    "transformer": [(["--context-len", "0"], "--context-len must be positive"),
                    (["--num-heads", "3"], "--dim-model (256) must be divisible by --num-heads (3)")],
}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, monkeypatch, capsys):
    m = load(name)
    for argv, message in BAD_INPUT + SPECIFIC_BAD_INPUT[name]:
        monkeypatch.setattr(sys, "argv", [f"td3_{name}_mujoco.py", "--run-dir", str(tmp_path / "runs"), *argv])
        assert m.cli() == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"td3_{name}_mujoco.py: error: ") and message in err, err
    assert not (tmp_path / "runs").exists()  # nothing written for bad input


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_process_exit_code(name, tmp_path):
    proc = run_script(name, ["--env-id", "Hopper-v4", "--buffer-size", "10"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"td3_{name}_mujoco.py: error: --buffer-size (10) is smaller than --batch-size (256)"
    )
    assert proc.stdout == ""


@pytest.mark.parametrize("name", NAMES)
def test_nan_loss_exits_1_naming_loss_and_step(name, tmp_path, monkeypatch, capsys):
    m = load(name)
    make_env = m.make_env

    def nan_reward_env(*a, **kw):
        return gym.wrappers.TransformReward(make_env(*a, **kw), lambda r: float("nan"))

    monkeypatch.setattr(m, "make_env", nan_reward_env)
    argv = ["--env-id", "Hopper-v4", "--total-timesteps", "100", "--learning-starts", "20", "--batch-size", "8",
            "--buffer-size", "100", "--num-threads", "1", "--run-dir", str(tmp_path / "runs"), *TINY[name]]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [f"td3_{name}_mujoco.py", *argv])
    assert m.cli() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged: losses/qf1_loss is nan at global step 21" in err, err
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "final.pt").exists()


def check_stopped_before_mujoco(name, rc, stderr, cwd, run_dir):
    """Exit 1 with the script's one line, no NaN action ever reached MuJoCo (it warns on stderr and writes
    MUJOCO_LOG.TXT in the working directory), no checkpoint."""
    assert rc == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Nan, Inf or huge value" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"td3_{name}_mujoco.py: diverged: "), stderr[-3000:]
    assert lines[0].endswith("; stopping, no checkpoint written"), lines[0]
    assert not (cwd / "MUJOCO_LOG.TXT").exists()
    (run,) = run_dir.iterdir()
    assert [p.name for p in run.iterdir() if not p.name.startswith("events.")] == []  # no final.pt, no temporary
    return lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_divergence_never_sends_a_nan_action_to_mujoco(name, tmp_path):
    """A learning rate that blows up the weights. With --policy-frequency 1 the first update (step 101) moves the
    actor too; its losses are still finite, but the actor's next action is NaN, which used to reach env.step (and
    MuJoCo's warning) before the next update's loss check stopped the run."""
    argv = ["--env-id", "Hopper-v5", "--total-timesteps", "300", "--learning-starts", "100", "--batch-size", "16",
            "--buffer-size", "500", "--eval-frequency", "1000", "--eval-episodes", "1", "--policy-frequency", "1",
            "--learning-rate", "1e10", *TINY[name]]  # fmt: skip
    proc = run_in_process(name, argv, tmp_path)
    line = check_stopped_before_mujoco(name, proc.returncode, proc.stderr, tmp_path, tmp_path / "runs")
    assert "diverged: the actor's action is non-finite at global step 101;" in line, line


@pytest.mark.parametrize("where", ["env", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_blown_up_actor_is_stopped_before_env_step(name, where, tmp_path, monkeypatch, capfd):
    """The update at step 22 (the first actor update) returns finite losses but leaves the actor's weights 1e30
    times larger: its next action (for training step 23, or the first of the evaluation right after step 22) is
    NaN. capfd: MuJoCo warns from C, on file descriptor 2."""
    m = load(name)
    td3_update = m.td3_update
    blown = []

    def update(*a, **kw):
        losses = td3_update(*a, **kw)
        if "losses/actor_loss" in losses and not blown:
            with torch.no_grad():
                for p in inspect.signature(td3_update).bind(*a, **kw).arguments["actor"].parameters():
                    p.mul_(1e30)
            blown.append(a[0])
        return losses

    monkeypatch.setattr(m, "td3_update", update)
    monkeypatch.chdir(tmp_path)
    argv = ["--env-id", "Hopper-v5", "--total-timesteps", "60", "--learning-starts", "20", "--batch-size", "8",
            "--buffer-size", "100", "--eval-episodes", "1", "--eval-frequency", "22" if where == "eval" else "1000",
            "--num-threads", "1", "--run-dir", str(tmp_path / "runs"), *TINY[name]]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [f"td3_{name}_mujoco.py", *argv])
    rc = m.cli()
    captured = capfd.readouterr()
    assert blown == [22]
    line = check_stopped_before_mujoco(name, rc, captured.err, tmp_path, tmp_path / "runs")
    who = "evaluated policy" if where == "eval" else "actor"
    assert f"diverged: the {who}'s action is non-finite at global step 22;" in line, line


@pytest.mark.parametrize("name", NAMES)
def test_run_directory_is_unique_within_a_second(name, tmp_path, monkeypatch, capsys):
    """Two runs of the same env, experiment and seed started in the same second get two run directories."""
    m = load(name)
    clock = iter(np.arange(1000.0, 1001.0, 1e-4))  # int(time.time()) == 1000 throughout, yet time advances
    monkeypatch.setattr(m, "time", type("FrozenSecond", (), {"time": staticmethod(lambda: float(next(clock)))}))
    taken = tmp_path / "runs" / f"Hopper-v5__td3_{name}_mujoco__1__1000"
    taken.mkdir(parents=True)
    (taken / "final.pt").write_bytes(b"an earlier run's checkpoint")
    argv = ["--env-id", "Hopper-v5", "--total-timesteps", "30", "--learning-starts", "30", "--batch-size", "8",
            "--buffer-size", "100", "--eval-episodes", "1", "--num-threads", "1", "--run-dir", str(tmp_path / "runs"),
            *TINY[name]]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [f"td3_{name}_mujoco.py", *argv])
    assert m.cli() == 0, capsys.readouterr().err
    assert (taken / "final.pt").read_bytes() == b"an earlier run's checkpoint"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [taken.name, f"{taken.name}_"]
    assert (tmp_path / "runs" / f"{taken.name}_" / "final.pt").is_file()
