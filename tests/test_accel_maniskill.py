"""td3_accel_maniskill.py. Per-env windowing and replay under auto-reset, checked on the real training loop with a
small fake vector env (gymnasium's SyncVectorEnv with same-step auto-reset, as the CPU path uses); evaluation's
success metrics; T's ring, its labels under --bc-target/--bc-state-noise/--bc-dagger, --bc-source eval without
DAgger, a NaN in any update of a step and who a non-finite action is blamed on (issue 22); and, with ManiSkill
installed (CI installs it), a tiny end-to-end run on the real CPU simulator (PushCube-v1, 2 train envs + 1 eval env)
and its bad-input messages."""

import copy
import dataclasses
import importlib.util
import os
import re
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import load_events, run_cli, run_dirs, run_script, scalars, single_run_dir  # noqa: E402

import td3_accel_maniskill as m  # noqa: E402

BASELINES = {}
for _name in ("mlp", "lstm", "transformer"):
    _path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines",
                         f"td3_{_name}_maniskill.py")  # fmt: skip
    _spec = importlib.util.spec_from_file_location(f"td3_{_name}_maniskill", _path)
    BASELINES[_name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(BASELINES[_name])

HAVE_MANISKILL = importlib.util.find_spec("mani_skill") is not None
needs_maniskill = pytest.mark.skipif(not HAVE_MANISKILL, reason="mani_skill is not installed (pip install -r "
                                     "requirements.txt; .ci/run also installs the Vulkan driver it needs)")  # fmt: skip
SCRIPT = "td3_accel_maniskill.py"
LINE = re.compile(r"^td3_accel_maniskill\.py: error: .+$")
K = 3


# ---------------------------------------------------------------------------------------------------------------
# A fake vector env: observations say which env, which episode and which step they come from
class FakeEnv(gym.Env):
    """obs = [env index, episode number, t, 0.5]; reward t; success exactly at t == 2; truncated at `length`,
    terminated at `terminate_at` (if given)."""

    def __init__(self, idx: int, length: int, terminate_at: int | None):
        self.idx, self.length, self.terminate_at = idx, length, terminate_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.episode, self.t = -1, 0

    def _obs(self):
        return np.array([self.idx, self.episode, self.t, 0.5], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {"success": False}

    def step(self, action):
        assert np.all(np.abs(action) <= 1.0)
        self.t += 1
        terminated = self.terminate_at is not None and self.t == self.terminate_at
        return self._obs(), float(self.t), terminated, self.t >= self.length, {"success": self.t == 2}


# env 0 terminates at t=3, env 1 runs to its limit of 5, env 2 to its limit of 2: the envs reset at different steps
SHAPES = [(4, 3), (5, None), (2, None)]


def fake_envs(num_envs: int, ignore_terminations: bool, device="cpu") -> m.VecEnv:
    fns = [lambda i=i: FakeEnv(i, SHAPES[i % 3][0], None if ignore_terminations else SHAPES[i % 3][1])
           for i in range(num_envs)]  # fmt: skip
    vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return m.VecEnv(vec, torch.device(device), on_gpu=False)


def test_vec_env_returns_true_final_obs_and_next_episode_start():
    envs = fake_envs(3, ignore_terminations=False)
    obs = envs.reset(seed=0)
    assert obs[:, 2].tolist() == [0, 0, 0]
    seen = []
    for _ in range(6):
        next_obs, final_obs, reward, terminated, done, success = envs.step(torch.zeros(3, 2))
        # s' is the step's own observation (t + 1 of the same episode), next_obs the next episode's first where done
        assert torch.equal(final_obs[:, 1], obs[:, 1]) and torch.equal(final_obs[:, 2], obs[:, 2] + 1)
        assert torch.equal(reward, final_obs[:, 2])
        assert torch.equal(success, final_obs[:, 2] == 2)  # the ending step's success, not the reset's
        assert torch.equal(done, (final_obs[:, 2] == torch.tensor([3.0, 5.0, 2.0])))
        assert torch.equal(terminated, done & (torch.arange(3) == 0))
        assert torch.equal(next_obs[done, 2], torch.zeros(int(done.sum())))
        assert torch.equal(next_obs[done, 1], obs[done, 1] + 1)
        assert torch.equal(next_obs[~done], final_obs[~done])
        seen.append(done.clone())
        obs = next_obs
    assert torch.stack(seen).any(0).all()


def test_vec_env_refuses_next_step_autoreset():
    vec = gym.vector.SyncVectorEnv([lambda: FakeEnv(0, 3, None)])  # gymnasium 1.x default: NEXT_STEP
    with pytest.raises(ValueError, match="SAME_STEP"):
        m.VecEnv(vec, torch.device("cpu"), on_gpu=False)


def test_evaluate_success_once_at_end_and_return():
    envs = fake_envs(2, ignore_terminations=True)
    envs.env.envs[1].length = 5  # both eval episodes: t = 1..5, success only at t == 2
    envs.env.envs[0].length = 5
    result = m.evaluate(envs, lambda w: torch.zeros(2, 2), episodes=3, seed=0, context_len=K, step=0)
    assert result == {"success_once": 1.0, "success_at_end": 0.0, "return": 15.0}
    envs.env.envs[0].length = envs.env.envs[1].length = 2  # the episode ends on its success step
    result = m.evaluate(envs, lambda w: torch.zeros(2, 2), episodes=2, seed=0, context_len=K, step=0)
    assert result == {"success_once": 1.0, "success_at_end": 1.0, "return": 3.0}


def test_replay_windows_stop_at_overwritten_rows():
    rb = m.ReplayBuffer(size=6, num_envs=2, obs_dim=1, act_dim=1, device="cpu")  # 3 rows
    for t in range(5):  # one long episode per env; rows 0..1 overwritten by steps 3..4
        obs = torch.tensor([[10.0 * e + t] for e in range(2)])
        rb.add(obs, obs + 1, torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, dtype=torch.bool), torch.tensor([t, t]))
    oldest, newest = torch.tensor([(rb.ptr) % rb.rows]), torch.tensor([(rb.ptr - 1) % rb.rows])
    for e in range(2):
        window, valid, next_window, next_valid = rb.windows(newest, torch.tensor([e]), 3)
        assert valid.tolist() == [[True, True, True]] and window[0, :, 0].tolist() == [
            10 * e + 2,
            10 * e + 3,
            10 * e + 4,
        ]
        assert next_window[0, :, 0].tolist() == [10 * e + 3, 10 * e + 4, 10 * e + 5] and next_valid.all()
        window, valid, _, _ = rb.windows(oldest, torch.tensor([e]), 3)  # step 2: steps 0, 1 are gone
        assert valid.tolist() == [[False, False, True]] and window[0, :, 0].tolist() == [0, 0, 10 * e + 2]


class LoopChecker:
    """Called after every step of all envs of the real loop: checks the newest transitions, every stored window,
    the acting windows and T against what the fake env's observations say about env, episode and step."""

    def __init__(self):
        self.steps, self.stages, self.rows_checked = [], [], 0

    @staticmethod
    def consistent(window, valid, env, last):
        K = len(valid)
        """The valid positions are the same env's same episode, consecutive steps ending at `last`, and as many as
        the episode has (up to K) unless `limit` cuts them; invalid ones are zero padding on the left."""
        n = int(valid.sum())
        assert valid[K - n :].all() and not valid[: K - n].any(), valid
        assert (window[: K - n] == 0).all()
        w = window[K - n :]
        assert (w[:, 0] == env).all() and (w[:, 1] == last[1]).all(), w
        assert w[:, 2].tolist() == [last[2] - (n - 1 - j) for j in range(n)], w
        return n

    def __call__(self, L):
        rb, windows, N, g = L["rb"], L["windows"], L["N"], L["global_step"]
        K = windows.obs.shape[1]
        self.steps.append(g)
        self.stages.append(L.get("stage", 1))
        i = (rb.ptr - 1) % rb.rows
        for e in range(N):
            o, no = rb.obs[i, e], rb.next_obs[i, e]
            # a real transition of env e: never the step into a reset observation
            assert o[0] == e and no[0] == e and o[1] == no[1] and no[2] == o[2] + 1, (o, no)
            assert rb.episode_step[i, e] == o[2]
            assert rb.terminations[i, e] == float(e % 3 == 0 and no[2] == 3)
            # the acting window: the current episode of env e, ending at the current observation
            cur = L["obs"][e]
            n = self.consistent(windows.obs[e], windows.valid[e], e, cur)
            assert n == min(K, int(cur[2]) + 1)
        # every stored transition's windows of s and s'
        t = torch.arange(rb.rows).repeat_interleave(N)[: rb.count * N]
        t = (rb.ptr - rb.count + t) % rb.rows
        e = torch.arange(N).repeat(rb.count)
        window, valid, next_window, next_valid = rb.windows(t, e, K)
        age = (rb.ptr - 1 - t) % rb.rows
        for j in range(len(t)):
            s, s_next = rb.obs[t[j], e[j]], rb.next_obs[t[j], e[j]]
            n = self.consistent(window[j], valid[j], int(e[j]), s)
            assert n == min(K, int(s[2]) + 1, rb.count - int(age[j]))
            self.consistent(next_window[j], next_valid[j], int(e[j]), s_next)
        self.rows_checked += len(t)
        trajectory = L.get("trajectory", [])
        for j in range(len(trajectory)):
            w, v = trajectory.windows[j], trajectory.valids[j]
            self.consistent(w, v, int(w[-1, 0]), w[-1])


def test_loop_keeps_windows_and_replay_per_env_under_autoreset(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "make_envs", lambda args, n, ignore, device: fake_envs(n, ignore, device))
    tiny = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, accel_steps=60, finetune_steps=30, learning_starts=15,
                batch_size=8, finetune_batch_size=8, buffer_size=12, accel_buffer_size=300, dim_model=16,
                dim_feedforward=16, num_threads=1, eval_frequency=30, log_frequency=15, bc_frequency=3,
                bc_state_noise=0.0, bc_buffer_size=50, critic_ascent=True, critic_warmup=6)  # fmt: skip
    args = dataclasses.replace(m.Args(), **tiny, run_dir=str(tmp_path))
    check = LoopChecker()
    m.main(args, on_step=check)
    # steps count env steps over all envs; the stage changes at 60 and global_step runs on
    assert check.steps == list(range(3, 91, 3))
    assert check.stages == [1] * 20 + [2] * 10
    assert check.rows_checked > 500
    ea = load_events(single_run_dir(tmp_path))
    # the fake env's eval episodes run to the limit (no termination at eval): lengths 4, 5 in the two eval envs
    for who in ("accelerator", "transformer"):
        assert [v for _, v in scalars(ea, f"eval/{who}_success_once")] == [1.0] * (2 if who == "accelerator" else 3)
        assert {v for _, v in scalars(ea, f"eval/{who}_success_at_end")} == {0.0}
        assert {v for _, v in scalars(ea, f"eval/{who}_return")} == {(10 + 15) / 2}
    lengths = [v for _, v in scalars(ea, "charts/episodic_length")]
    assert set(lengths) <= {2.0, 3.0, 5.0, 2.5, 3.5, 4.0, 10 / 3}  # means over envs ending in the same step


def test_bc_dagger_episodes_are_driven_by_the_transformer_per_env_and_labelled_by_the_accelerator(
    tmp_path, monkeypatch
):
    """--bc-dagger 1: each env's episodes that start after --learning-starts are driven by the transformer on that
    env's window while the other envs' accelerator acts on (the fake envs reset at different steps); T holds each
    env's window labelled by the accelerator's actor; before, never; resume.pt holds the flags."""

    def envs_without_generators(args, n, ignore, device):
        envs = fake_envs(n, ignore, device)
        envs.generators = lambda episode_start: None  # the fake envs have none to save (as on the GPU simulator)
        return envs

    monkeypatch.setattr(m, "make_envs", envs_without_generators)
    # learning starts at step 18, one step into env 1's 5-step episode begun at step 15: the transformer drives envs 0
    # and 2 from step 18 (their episodes start there), env 1 from step 30
    tiny = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, accel_steps=60, finetune_steps=9, learning_starts=18,
                batch_size=8, finetune_batch_size=8, buffer_size=12, accel_buffer_size=300, dim_model=16,
                dim_feedforward=16, num_threads=1, eval_frequency=1000, log_frequency=15, bc_frequency=3,
                bc_buffer_size=50, critic_warmup=6, checkpoint_frequency=30, bc_dagger=1.0, exploration_noise=0.0,
                bc_state_noise=0.0, bc_target="behavior")  # fmt: skip
    args = dataclasses.replace(m.Args(), **tiny, run_dir=str(tmp_path))
    N, seen = 3, {"start": torch.zeros(3, dtype=torch.long), "mixed": 0, "labels": [], "flags": {}}

    def on_step(L):
        g, T, dagger = L["global_step"], L["trajectory"], L["dagger"]
        if L["stage"] == 1 and g > N:
            obs, valid, actor, transformer, before = on_step.before
            # env e's episode began at seen["start"][e]: --bc-dagger 1 drives it if that was after the warm-up
            assert torch.equal(before, seen["start"] >= args.learning_starts), f"step {g}: {before}"
            if before.any():
                with torch.no_grad():
                    by_transformer, by_actor = transformer(obs, valid), actor(obs[:, -1])
                torch.testing.assert_close(L["action"][before], by_transformer[before], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(L["action"][~before], by_actor[~before], rtol=1e-5, atol=1e-6)
                idx = (T.ptr - N + torch.arange(N)) % T.capacity  # this step's samples, one per env in order
                assert torch.equal(T.windows[idx], obs) and torch.equal(T.valids[idx], valid)
                torch.testing.assert_close(T.actions[idx], by_actor, rtol=1e-5, atol=1e-6)  # all: the actor's
                seen["labels"].append((T.actions[idx] - L["action"])[before].abs().max())
                seen["mixed"] += bool((~before).any())
        elif L["stage"] == 2:
            assert not dagger.any(), f"step {g}: --bc-dagger in stage 2"
        seen["start"][L["done"]] = g
        seen["flags"][g] = dagger.clone()
        if g == 33:  # resume.pt written after step 30 holds that step's flags
            state = torch.load(os.path.join(single_run_dir(tmp_path), m.RESUME_FILE), weights_only=False)
            assert state["dagger"] == seen["flags"][30].tolist()
        on_step.before = (L["windows"].obs.clone(), L["windows"].valid.clone(), copy.deepcopy(L["actor"]),
                          copy.deepcopy(L["transformer"]), dagger.clone())  # fmt: skip

    m.main(args, on_step=on_step)
    assert len(seen["labels"]) == (60 - 18) // N and seen["mixed"] == 4  # 4 steps of both, at steps 18..27
    assert max(seen["labels"]) > 0.05  # the labels are not the executed actions


# ---------------------------------------------------------------------------------------------------------------
# T, its labels and who drives an episode (issue 22)
def test_T_keeps_the_newest_samples_in_ring_order_when_a_step_brings_more_than_its_capacity():
    """--num-envs above --bc-buffer-size: of one step's samples only the newest `capacity` are stored, and the pointer
    moves by those, so it stays on the oldest sample and the next add overwrites exactly that one."""
    T = m.TrajectoryBuffer(4, 1, 1, 1, "cpu")

    def add(*values):
        x = torch.tensor(values, dtype=torch.float32)
        T.add(x[:, None, None], torch.ones(len(x), 1, dtype=torch.bool), x[:, None])

    def ring():  # oldest first, from the pointer on
        idx = (T.ptr + torch.arange(len(T))) % T.capacity
        assert torch.equal(T.windows[idx, 0, 0], T.actions[idx, 0])  # each window kept its own label
        return T.actions[idx, 0].tolist()

    add(0.0)
    add(1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # six envs, a ring of four
    assert (len(T), ring()) == (4, [3.0, 4.0, 5.0, 6.0])
    add(7.0)  # overwrites the oldest, 3
    assert ring() == [4.0, 5.0, 6.0, 7.0]
    add(8.0, 9.0)
    assert ring() == [6.0, 7.0, 8.0, 9.0]


class CountingActor(torch.nn.Module):
    """The accelerator's actor, counting its forward passes (and, with `fail`, refusing any)."""

    def __init__(self, actor, fail: bool = False):
        super().__init__()
        self.actor, self.fail, self.calls = actor, fail, 0

    def forward(self, x):
        self.calls += 1
        if self.fail:
            raise AssertionError("store_in_T ran the actor for a label train_transformer throws away")
        return self.actor(x)


EXECUTED = torch.tensor([[0.9, -0.9]] * 3)  # the executed actions of 3 envs, exploration noise included


def store_setup(**kw):
    """Three envs' windows of 3, two steps into their episodes (one padding position), T, and the accelerator."""
    torch.manual_seed(0)
    args = dataclasses.replace(m.Args(), **kw)
    windows = m.EpisodeWindows(3, K, 4, "cpu")
    windows.reset(torch.arange(12, dtype=torch.float32).view(3, 4))
    windows.push(torch.arange(12, 24, dtype=torch.float32).view(3, 4))
    actor = m.Actor(4, -np.ones(2, np.float32), np.ones(2, np.float32))
    return args, windows, m.TrajectoryBuffer(8, K, 4, 2, "cpu"), actor


def assert_stored_windows(T, windows, noisy: bool):
    assert torch.equal(T.valids[:3], windows.valid)
    assert (T.windows[:3][~windows.valid] == 0).all()  # padding stays zero
    diff = (T.windows[:3] - windows.obs).abs()[windows.valid]
    assert bool((diff > 0).all()) == noisy and bool((diff > 0).any()) == noisy


@pytest.mark.parametrize("state_noise", [0.0, 0.1])
def test_store_in_T_behavior_keeps_the_executed_action_with_or_without_state_noise(state_noise):
    """--bc-target behavior is Algorithm 1 line 7: T's label is the executed action, whatever noise the stored window
    carries: state noise is input augmentation only."""
    args, windows, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    clean = windows.obs.clone()
    m.store_in_T(T, windows, EXECUTED, CountingActor(actor, fail=True), args, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(T.actions[:3], EXECUTED) and len(T) == 3
    assert torch.equal(windows.obs, clean)  # the acting windows stay clean
    assert_stored_windows(T, windows, noisy=state_noise > 0)


@pytest.mark.parametrize("state_noise", [0.0, 0.5])
def test_store_in_T_behavior_in_dagger_envs_labels_with_the_accelerator_on_the_true_state(state_noise):
    """In the envs in a --bc-dagger episode the transformer acted: their label is the accelerator's noise-free action
    on the true s (not on the stored noisy one); the other envs keep their executed action."""
    args, windows, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    dagger = torch.tensor([True, False, True])
    m.store_in_T(T, windows, EXECUTED, actor, args, dagger)
    with torch.no_grad():
        true_label, noisy_label = actor(windows.obs[:, -1]), actor(T.windows[:3, -1])
    torch.testing.assert_close(T.actions[:3][dagger], true_label[dagger], rtol=1e-6, atol=1e-7)
    assert torch.equal(T.actions[:3][~dagger], EXECUTED[~dagger])
    assert_stored_windows(T, windows, noisy=state_noise > 0)
    if state_noise:
        assert (noisy_label - true_label).abs().max() > 1e-3  # the test tells the two states apart


@pytest.mark.parametrize("dagger", [[False] * 3, [True, False, True]])
def test_store_in_T_actor_target_runs_no_forward_pass(dagger):
    """With --bc-target actor every label is recomputed when the transformer trains: storing runs no actor (the
    executed actions are kept as placeholders), in DAgger episodes too."""
    args, windows, T, actor = store_setup(bc_target="actor", bc_state_noise=0.1)
    m.store_in_T(T, windows, EXECUTED, CountingActor(actor, fail=True), args, torch.tensor(dagger))
    assert torch.equal(T.actions[:3], EXECUTED) and len(T) == 3
    assert_stored_windows(T, windows, noisy=True)  # the state noise of section 3.1


@pytest.mark.parametrize(("bc_source", "expected"), [("train", True), ("eval", False)])
def test_dagger_only_with_bc_source_train(bc_source, expected):
    """--bc-source eval fills T from evaluations only: no training episode is driven by the transformer."""
    args = dataclasses.replace(m.Args(), bc_dagger=1.0, bc_source=bc_source, learning_starts=10)
    done, none = torch.tensor([True, False, True]), torch.zeros(3, dtype=torch.bool)
    assert m.draw_dagger(1, 12, done, none, args).tolist() == [expected, False, expected]
    assert not m.draw_dagger(1, 9, done, none, args).any() and not m.draw_dagger(2, 12, done, none, args).any()


FAKE_RUN = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, accel_steps=60, finetune_steps=9, learning_starts=18,
                batch_size=8, finetune_batch_size=8, buffer_size=12, accel_buffer_size=300, dim_model=16,
                dim_feedforward=16, num_threads=1, eval_frequency=1000, log_frequency=15, bc_frequency=3,
                bc_buffer_size=50, critic_warmup=6)  # fmt: skip


def fake_run(tmp_path, monkeypatch, on_step=None, **kw) -> None:
    """The real loop on the fake envs (tiny networks), with `kw` over FAKE_RUN."""
    monkeypatch.setattr(m, "make_envs", lambda args, n, ignore, device: fake_envs(n, ignore, device))
    m.main(dataclasses.replace(m.Args(), **{**FAKE_RUN, **kw}, run_dir=str(tmp_path)), on_step=on_step)


def test_a_nan_loss_in_any_update_of_a_step_is_reported(tmp_path, monkeypatch):
    """3 envs x --utd 1: three TD3 updates a step. A NaN in the first of a step's updates (the last two finite) is
    reported, naming the loss and the step."""
    real = m.td3_update

    def td3_update(update, *rest, **kw):
        losses = real(update, *rest, **kw)
        if update == 4:  # the first update of step 21 (updates run from step 18, the first after --learning-starts 15)
            losses["losses/qf2_loss"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(m, "td3_update", td3_update)
    with pytest.raises(m.DivergenceError, match=r"^losses/qf2_loss is nan at global step 21$"):
        fake_run(tmp_path, monkeypatch, utd=1.0, learning_starts=15, accel_steps=30)


@pytest.mark.parametrize("who", ["transformer", "accelerator"])
def test_a_non_finite_action_names_the_network_that_acted(tmp_path, monkeypatch, who):
    """--bc-dagger 1 from step 18: envs 0 and 2 start episodes driven by the transformer there, env 1 runs on with
    the accelerator. NaN weights in one of them show as non-finite actions in its envs only, reported as that
    network's: the transformer's in DAgger episodes, not the accelerator's."""

    def on_step(L):
        if L["global_step"] == 18:
            assert L["dagger"].tolist() == [True, False, True]
            with torch.no_grad():
                L[who if who == "transformer" else "actor"].fc_mu.bias.fill_(float("nan"))

    with pytest.raises(m.DivergenceError, match=rf"^the {who}'s action is non-finite at global step 18$"):
        fake_run(tmp_path, monkeypatch, on_step, bc_dagger=1.0)


# ---------------------------------------------------------------------------------------------------------------
# The real CPU simulator
TINY_RUN = [
    "--num-envs", 2, "--num-eval-envs", 1, "--eval-episodes", 1, "--accel-steps", 100, "--finetune-steps", 50,
    "--learning-starts", 40, "--batch-size", 32, "--finetune-batch-size", 32, "--buffer-size", 64,
    "--accel-buffer-size", 1000, "--dim-model", 32, "--dim-feedforward", 64, "--eval-frequency", 100,
    "--log-frequency", 50, "--num-threads", 1, "--critic-ascent", "--critic-warmup", 10,
]  # fmt: skip


def checked(proc, rc=0):
    assert proc.returncode == rc, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def pushcube_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pushcube")
    proc = checked(run_cli(m, [*TINY_RUN, "--env-id", "PushCube-v1", "--run-dir", run_dir]))
    return proc, single_run_dir(run_dir)


@needs_maniskill
def test_pushcube_run_logs_success_rates_and_writes_checkpoints(pushcube_run):
    proc, path = pushcube_run
    ea = load_events(path)
    tags = set(ea.Tags()["scalars"])
    for who in ("accelerator", "transformer"):
        for key in ("success_once", "success_at_end", "return"):
            assert f"eval/{who}_{key}" in tags
    assert {"charts/episodic_return", "charts/success_once", "charts/SPS", "losses/qf1_loss", "losses/bc_loss",
            "losses/actor_loss", "losses/critic_ascent_q"} <= tags  # fmt: skip
    # accelerator evaluated in stage 1 only; global_step continues into stage 2
    assert [s for s, _ in scalars(ea, "eval/accelerator_success_once")] == [100]
    assert [s for s, _ in scalars(ea, "eval/transformer_success_once")] == [100, 150]
    for _, v in scalars(ea, "eval/transformer_success_at_end"):
        assert v in (0.0, 1.0)  # one episode per evaluation
    assert [s for s, v in scalars(ea, "charts/stage") if v == 2] == [150]
    # PushCube's episodes last 50 steps (or end early at success)
    assert all(0 < v <= 50 for _, v in scalars(ea, "charts/episodic_length"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step=")]
    assert len(lines) == 2 and "transformer_success_once=" in lines[-1] and "accelerator_success_at_end=" in lines[0]
    accel = torch.load(os.path.join(path, "accelerated.pt"), weights_only=False)
    final = torch.load(os.path.join(path, "final.pt"), weights_only=False)
    assert (accel["stage"], accel["global_step"], final["stage"], final["global_step"]) == (1, 100, 2, 150)
    assert (final["obs_dim"], final["act_dim"]) == (35, 8)
    assert accel["recent_transitions"]["obs"].shape == (32, 2, 35)  # rows of both envs: 64 transitions
    args = m.Args(**final["args"])
    net = m.make_transformer(35, -np.ones(8, np.float32), np.ones(8, np.float32), args)
    net.load_state_dict(final["transformer"], strict=True)
    assert not torch.equal(final["transformer"]["fc_mu.weight"], accel["transformer"]["fc_mu.weight"])


@needs_maniskill
def test_finetune_from_pushcube_checkpoint(pushcube_run, tmp_path):
    _, path = pushcube_run
    flags = [*TINY_RUN, "--finetune-steps", 20, "--run-dir", tmp_path]
    proc = checked(run_cli(m, [*flags, "--accelerated-checkpoint", os.path.join(path, "accelerated.pt")]))
    assert "steps 100..120" in proc.stdout
    final = torch.load(os.path.join(single_run_dir(tmp_path), "final.pt"), weights_only=False)
    assert final["global_step"] == 120
    bad = run_cli(m, [*flags, "--num-envs", 1, "--accelerated-checkpoint", os.path.join(path, "accelerated.pt")])
    assert bad.returncode == 2 and "--no-prefill" in bad.stderr


BAD_INPUT = [
    (["--env-id", "PushKube-v1"], "not a ManiSkill task"),
    (["--obs-mode", "rgb"], "only `state`"),
    (["--num-envs", 0], "--num-envs must be positive"),
    (["--buffer-size", 16], "smaller than --finetune-batch-size"),
    (["--control-mode", "no_such_mode"], "--control-mode no_such_mode"),
    (  # CleanRL's steps flag
        ["--total-timesteps", 1000],
        "--total-timesteps: this script runs two stages, give their lengths: --accel-steps (stage 1) and "
        "--finetune-steps (stage 2)",
    ),
]
if not torch.cuda.is_available():
    BAD_INPUT.append((["--sim-backend", "gpu"], "needs a CUDA GPU"))


@needs_maniskill
@pytest.mark.parametrize("flags,message", BAD_INPUT)
def test_bad_input_exits_2_with_one_line(tmp_path, flags, message):
    proc = run_cli(m, [*TINY_RUN, "--run-dir", tmp_path, *flags])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert LINE.match(proc.stderr.strip()) and message in proc.stderr, proc.stderr
    assert run_dirs(tmp_path) == []


@needs_maniskill
def test_missing_vulkan_device_says_what_to_install(tmp_path, monkeypatch):
    # no Vulkan driver visible to the loader: what a machine without Mesa's Vulkan driver sees
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "none.json"))
    monkeypatch.setenv("VK_DRIVER_FILES", str(tmp_path / "none.json"))
    proc = run_script(SCRIPT, [*TINY_RUN, "--run-dir", tmp_path / "runs"], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert LINE.match(proc.stderr.strip()) and "mesa-vulkan-drivers" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "runs") or run_dirs(tmp_path / "runs") == []


@needs_maniskill
def test_missing_gpu_physx_library_says_where_to_put_it(monkeypatch):
    # what SAPIEN raises on a first GPU-simulator run without network (seen on a GPU machine with no internet)
    error = (
        "HTTPSConnectionPool(host='github.com', port=443): Max retries exceeded with url: /sapien-sim/physx-"
        "precompiled/releases/download/105.1-physx-5.3.1.patch0/linux-so.zip (Caused by NameResolutionError)"
    )

    def fail(*args, **kwargs):
        raise OSError(error)

    monkeypatch.setattr(gym.vector, "AsyncVectorEnv", fail)
    with pytest.raises(m.UsageError, match=r"~/.sapien/physx/105.1-physx-5.3.1.patch0/") as info:
        m.make_envs(m.Args(sim_backend="cpu"), 1, False, torch.device("cpu"))
    assert "\n" not in str(info.value) and "--sim-backend cpu" in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Baselines (TD3 from scratch with the MLP, LSTM and transformer actors)
BASELINE_TINY = dict(num_envs=3, num_eval_envs=2, eval_episodes=2, total_timesteps=60, learning_starts=15,
                     batch_size=8, buffer_size=12, num_threads=1, eval_frequency=30, log_frequency=15)  # fmt: skip
ARCH_TINY = {"mlp": {}, "lstm": dict(lstm_hidden_size=8), "transformer": dict(dim_model=16, dim_feedforward=16)}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_loop_keeps_windows_and_replay_per_env(name, tmp_path, monkeypatch):
    b = BASELINES[name]
    monkeypatch.setattr(b, "make_envs", lambda args, n, ignore, device: fake_envs(n, ignore, device))
    monkeypatch.setattr(m, "VecEnv", b.VecEnv)  # fake_envs builds the baseline's own VecEnv
    args = dataclasses.replace(b.Args(), **BASELINE_TINY, **ARCH_TINY[name], run_dir=str(tmp_path))
    check = LoopChecker()
    b.main(args, on_step=check)
    assert check.steps == list(range(3, 61, 3)) and check.rows_checked > 100
    ea = load_events(single_run_dir(tmp_path))
    assert [v for _, v in scalars(ea, "eval/success_once")] == [1.0, 1.0]
    assert {v for _, v in scalars(ea, "eval/success_at_end")} == {0.0}
    assert {v for _, v in scalars(ea, "eval/return")} == {(10 + 15) / 2}
    assert "losses/actor_loss" in ea.Tags()["scalars"]


BASELINE_RUN = ["--num-envs", 2, "--num-eval-envs", 1, "--eval-episodes", 1, "--total-timesteps", 60,
                "--learning-starts", 20, "--batch-size", 16, "--buffer-size", 200, "--eval-frequency", 60,
                "--log-frequency", 20, "--num-threads", 1]  # fmt: skip
ARCH_RUN = {"mlp": [], "lstm": ["--lstm-hidden-size", 8], "transformer": ["--dim-model", 16, "--dim-feedforward", 16]}


@needs_maniskill
@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_pushcube_run(name, tmp_path):
    b = BASELINES[name]
    proc = checked(run_cli(b, [*BASELINE_RUN, *ARCH_RUN[name], "--run-dir", tmp_path]))
    path = single_run_dir(tmp_path)
    ea = load_events(path)
    for key in ("success_once", "success_at_end", "return"):
        assert [s for s, _ in scalars(ea, f"eval/{key}")] == [60]
    assert {"losses/qf1_loss", "losses/actor_loss", "charts/SPS"} <= set(ea.Tags()["scalars"])
    final = torch.load(os.path.join(path, "final.pt"), weights_only=False)
    assert (final["global_step"], final["obs_dim"], final["act_dim"]) == (60, 35, 8)
    assert "eval_success_at_end=" in proc.stdout
    bad = run_cli(b, [*BASELINE_RUN, "--env-id", "PushKube-v1", "--run-dir", tmp_path / "bad"])
    assert bad.returncode == 2 and "not a ManiSkill task" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith(f"td3_{name}_maniskill.py: error:")


SHARED = ["VULKAN_HINT", "UsageError", "DivergenceError", "VecEnv", "use_gpu_sim", "make_envs", "EpisodeWindows",
          "check_finite", "check_action", "evaluate", "save_checkpoint", "versions", "crossed"]  # fmt: skip


def test_shared_code_is_identical_across_the_maniskill_scripts():
    """The env layer, windows and evaluation are written once and copied (CleanRL style): the copies must not drift."""
    import ast

    def sources(path):
        text = open(path).read()
        out = {}
        for node in ast.parse(text).body:
            name = getattr(node, "name", None) or (node.targets[0].id if isinstance(node, ast.Assign) else None)
            out[name] = ast.get_source_segment(text, node)
        return out

    main = sources(m.__file__)
    for name, module in BASELINES.items():
        theirs = sources(module.__file__)
        for key in SHARED:
            mine = main[key]
            if key == "evaluate":  # the main script's also fills T (--bc-source eval)
                mine = mine.replace(",\n             trajectory: TrajectoryBuffer | None = None, tick=None) -> dict:  "
                                    "# fmt: skip", ", tick=None) -> dict:")  # fmt: skip
                mine = mine.replace(" With `trajectory`, each (window, action) is stored in T (--bc-source eval).", "")
                mine = mine.replace("            if trajectory is not None:\n                trajectory.add(windows.obs"
                                    "[running], windows.valid[running], action[running])\n", "")  # fmt: skip
            assert theirs[key] == mine, f"{key} differs between td3_accel_maniskill.py and td3_{name}_maniskill.py"
        replay = main["ReplayBuffer"]
        replay = replay[: replay.index("    def recent(")] + replay[replay.index("    def sample(") :]
        assert theirs["ReplayBuffer"] == replay, f"ReplayBuffer differs in td3_{name}_maniskill.py"
