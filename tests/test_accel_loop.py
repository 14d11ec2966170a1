"""The real training loop of td3_accel_mujoco.py, run in-process on a tiny budget: main() calls `on_step` with its
local variables after every environment step, and these tests check what the loop did to the env, the acting
window, T, the replay buffers and the networks. Each test here fails on a specific mistake in main()."""

import copy
import dataclasses
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import load_events, scalars, single_run_dir  # noqa: E402

import td3_accel_mujoco as m  # noqa: E402

K, ACCEL, STARTS, FINETUNE = 3, 500, 200, 100  # ACCEL even: the first stage-2 step does no soft update


def run_main(tmp_path, on_step, **kw):
    tiny = dict(env_id="Pendulum-v1", accel_steps=ACCEL, learning_starts=STARTS, finetune_steps=FINETUNE,
                eval_frequency=250, eval_episodes=1, batch_size=32, buffer_size=64, accel_buffer_size=1000,
                dim_model=32, dim_feedforward=64, num_threads=1, bc_frequency=4, critic_warmup=20)  # fmt: skip
    args = dataclasses.replace(m.Args(), **{**tiny, **kw}, run_dir=str(tmp_path))
    m.main(args, on_step=on_step)
    return args


def expected_window(episode_obs: list) -> tuple[np.ndarray, np.ndarray]:
    obs = np.zeros((K, len(episode_obs[0])), dtype=np.float32)
    valid = np.zeros(K, dtype=bool)
    last = episode_obs[-K:]
    obs[K - len(last) :], valid[K - len(last) :] = last, True
    return obs, valid


class Recorder:
    """Checks every step as it happens, against the test's own account of the episode (not main()'s)."""

    def __init__(self):
        self.prev = None  # what the previous step left: the obs and window to act on, the noise-free action
        self.episode_obs, self.events = [], {"terminated": 0, "truncated": 0, "stage2_steps": 0}
        self.t_len, self.snapshots, self.noise, self.who = {}, {}, [], {}

    def __call__(self, L):
        g, stage, rb, args = L["global_step"], L["stage"], L["rb"], L["args"]
        i = (rb.ptr - 1) % rb.size
        s, s_next = rb.obs[i], rb.next_obs[i]
        new_stage = self.prev is not None and stage != self.prev["stage"]
        if self.prev is None or new_stage or self.prev["done"]:
            self.episode_obs = [np.array(s)]  # a new episode: reset at the start, after an end, at the handover
        if self.prev is not None and not new_stage:
            np.testing.assert_array_equal(s, self.prev["obs"], err_msg=f"step {g}: stored s is not the obs acted on")
        # the transition: s's step index in its episode, s' the env's true next obs, termination flag only
        assert rb.episode_step[i] == len(self.episode_obs) - 1, f"step {g}: stored episode step off"
        np.testing.assert_array_equal(s_next, np.float32(L["next_obs"]))  # InvertedPendulum: float64
        np.testing.assert_array_equal(rb.actions[i], np.float32(L["action"]))
        assert rb.terminations[i] == float(L["terminated"]), f"step {g}: truncation stored as termination?"
        done = L["terminated"] or L["truncated"]
        self.events["terminated"] += bool(L["terminated"])
        self.events["truncated"] += bool(L["truncated"] and not L["terminated"])
        # the acting window for the next step: the episode's last K observations, never another episode's
        if done:
            self.episode_obs = [np.float32(L["obs"])]
        else:
            self.episode_obs.append(np.array(s_next))
            np.testing.assert_array_equal(np.float32(L["obs"]), s_next)
        w, v = expected_window(self.episode_obs)
        np.testing.assert_array_equal(L["window"].obs, w, err_msg=f"step {g}: acting window")
        np.testing.assert_array_equal(L["window"].valid, v, err_msg=f"step {g}: acting window mask")
        # exploration noise: the executed action differs from the acting policy's noise-free action
        if self.prev is not None and not new_stage and self.prev["clean"] is not None:
            self.noise.append((self.prev["who"], L["action"] - self.prev["clean"]))
        self.who[g] = "stage 2" if stage == 2 else self.prev["who"] if self.prev and not new_stage else "accelerator"
        self.t_len[g] = len(L["trajectory"])
        if stage == 2:
            self.events["stage2_steps"] += 1
            assert rb is not self.snapshots["stage1_rb"], "stage 2 kept the accelerator's replay buffer"
            prefilled = len(self.snapshots["recent"]["obs"]) if args.prefill else 0
            assert rb.size == args.buffer_size and rb.count == min(g - args.accel_steps + prefilled, args.buffer_size)
            if g == args.accel_steps + 1 and args.prefill:  # the accelerator's latest transitions, then its own
                held = rb.recent(args.buffer_size)
                for k, v in self.snapshots["recent"].items():
                    np.testing.assert_array_equal(held[k][:-1], v[len(v) - (len(held[k]) - 1) :], k)
        else:
            self.snapshots["stage1_rb"] = rb
        if g == args.learning_starts:
            self.snapshots["transformer_at_starts"] = copy.deepcopy(L["transformer"].state_dict())
        if g == args.accel_steps:
            self.snapshots["recent"] = L["rb"].recent(args.buffer_size)
            names = ("transformer", "transformer_target", "qf1_target", "qf2_target")
            self.snapshots["end_of_stage1"] = {n: copy.deepcopy(L[n].state_dict()) for n in names}
        if g == args.accel_steps + 1:
            names = ("transformer_target", "qf1_target", "qf2_target")
            self.snapshots["start_of_stage2"] = {n: copy.deepcopy(L[n].state_dict()) for n in names}
        # who acts next, and its noise-free action: the transformer in stage 2 and in --bc-dagger episodes
        who = "stage 2" if stage == 2 else "transformer (DAgger)" if L["dagger"] else "accelerator"
        clean = None
        if who != "accelerator":
            clean = m.transformer_act(L["transformer"], L["window"], "cpu")
        elif g >= args.learning_starts:
            clean = m.mlp_act(L["actor"], L["obs"], "cpu")
        self.prev = {"stage": stage, "obs": np.float32(L["obs"]), "done": done, "clean": clean, "who": who}


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    rec = Recorder()
    args = run_main(tmp_path_factory.mktemp("loop"), rec)
    return args, rec


@pytest.fixture(scope="module")
def dagger_run(tmp_path_factory):
    """Every stage-1 episode after --learning-starts driven by the transformer (--bc-dagger 1)."""
    rec = Recorder()
    args = run_main(tmp_path_factory.mktemp("dagger"), rec, bc_dagger=1.0)
    return args, rec


def test_loop_stores_true_transitions_and_windows(pendulum_run):
    _, rec = pendulum_run  # the Recorder asserted every step; here: the run did cross what it should
    assert rec.events["truncated"] >= 2  # Pendulum's 200-step time limit, in both stages
    assert rec.events["stage2_steps"] == FINETUNE


@pytest.mark.parametrize("run", ["pendulum_run", "dagger_run"])
def test_T_gets_one_sample_per_stage_1_step_after_learning_starts(run, request):
    """Nothing from the random warm-up or stage 2; one sample per stage-1 step after it, whoever acted (the
    accelerator, or the transformer in a --bc-dagger episode: dagger_run has only those)."""
    args, rec = request.getfixturevalue(run)
    for g, n in rec.t_len.items():
        expected = 0 if g <= args.learning_starts or g > args.accel_steps else min(g - args.learning_starts,
                                                                                     args.bc_buffer_size)  # fmt: skip
        assert n == expected, f"step {g}: T holds {n}, expected {expected}"
    acted = {rec.who[g] for g in range(args.learning_starts + 1, args.accel_steps + 1)}
    assert acted == {"transformer (DAgger)"} if run == "dagger_run" else "accelerator" in acted


def test_transformer_is_trained_in_stage_1(pendulum_run):
    _, rec = pendulum_run
    start, end = rec.snapshots["transformer_at_starts"], rec.snapshots["end_of_stage1"]["transformer"]
    assert any(not torch.equal(v, end[k]) for k, v in start.items())


def test_handover_carries_the_targets_over(pendulum_run):
    _, rec = pendulum_run
    end, start = rec.snapshots["end_of_stage1"], rec.snapshots["start_of_stage2"]
    for name in start:
        for k, v in start[name].items():
            assert torch.equal(v, end[name][k]), f"{name}.{k} is not the stage-1 target"


@pytest.mark.parametrize(("run", "who"), [("pendulum_run", "accelerator"), ("pendulum_run", "stage 2"),
                                          ("dagger_run", "transformer (DAgger)")])  # fmt: skip
def test_actions_carry_exploration_noise(run, who, request):
    """Around the noise-free action of whoever acted (in a DAgger episode, the transformer's)."""
    args, rec = request.getfixturevalue(run)
    noise = np.array([n for w, n in rec.noise if w == who])
    assert len(noise) > 50
    # Pendulum's actions lie in [-2, 2]: noise std 0.1 * 2, clipped at the bounds
    assert 0.1 < noise.std() < 0.3, noise.std()
    assert np.mean(np.abs(noise) > 1e-6) > 0.9


def test_terminations_are_stored_as_terminations(tmp_path):
    rec = Recorder()
    run_main(tmp_path, rec, env_id="InvertedPendulum-v4", accel_steps=300, finetune_steps=60)
    assert rec.events["terminated"] >= 5  # the pole falls within a few random steps


def test_bc_source_eval_fills_T_only_from_the_trained_accelerator_s_evaluations(tmp_path):
    rec = Recorder()  # --bc-dagger 1: with --bc-source eval it has no effect, the accelerator drives every episode
    args = run_main(tmp_path, rec, bc_source="eval", eval_frequency=100, finetune_steps=4, bc_dagger=1.0)
    assert {rec.who[g] for g in range(1, args.accel_steps + 1)} == {"accelerator"}
    grew = [g for g in sorted(rec.t_len) if rec.t_len[g] != rec.t_len.get(g - 1, 0) and g <= args.accel_steps]
    # evaluations at 100 and 200 come before the accelerator learns (learning starts after step 200)
    assert grew == [300, 400, 500]
    assert rec.t_len[300] == 200 * args.eval_episodes  # one evaluation episode of Pendulum's 200 steps


@pytest.mark.parametrize("bc_target", ["behavior", "actor"])
def test_bc_state_noise_stores_noisy_windows_and_the_executed_action(tmp_path, bc_target):
    """Section 3.1's noisy states enter T; the stored label is the executed action (Algorithm 1 line 7) under
    behavior, and the same placeholder under actor, whose labels train_transformer recomputes on the noisy state."""
    checked = []

    def on_step(L):
        T, g = L["trajectory"], L["global_step"]
        if L["stage"] == 1 and len(T) and g > L["args"].learning_starts:
            j = (T.ptr - 1) % T.capacity
            clean_obs, clean_valid = on_step.before
            np.testing.assert_array_equal(T.valids[j], clean_valid)
            assert np.all(T.windows[j][~clean_valid] == 0)  # padding stays zero
            diff = (T.windows[j] - clean_obs)[clean_valid]
            assert 0.2 < diff.std() < 0.8  # sigma 0.5
            np.testing.assert_array_equal(T.actions[j], np.float32(L["action"]))
            checked.append(g)
        on_step.before = (L["window"].obs.copy(), L["window"].valid.copy())

    run_main(tmp_path, on_step, bc_state_noise=0.5, bc_target=bc_target, bc_dagger=0.0, finetune_steps=4)
    assert len(checked) == ACCEL - STARTS


def test_short_run_logs_losses_and_sps_at_each_stage_end_and_no_prefill_starts_stage_2_empty(tmp_path):
    rec = Recorder()  # with --no-prefill it checks that the stage-2 buffer holds only stage 2's transitions
    run_main(tmp_path, rec, log_frequency=10**6, finetune_steps=30, critic_warmup=0, prefill=False)
    assert rec.events["stage2_steps"] == 30
    ea = load_events(single_run_dir(tmp_path))
    ends = [ACCEL, ACCEL + 30]
    for tag in ("charts/SPS", "charts/stage", "losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss"):
        assert [s for s, _ in scalars(ea, tag)] == ends, tag
    assert [s for s, _ in scalars(ea, "losses/bc_loss")] == [ACCEL]  # BC is stage 1's only


@pytest.mark.parametrize("deterministic", [True, False])
def test_torch_deterministic_turns_on_deterministic_algorithms(tmp_path, deterministic):
    torch.use_deterministic_algorithms(not deterministic)
    run_main(tmp_path, None, accel_steps=0, finetune_steps=5, torch_deterministic=deterministic)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.backends.cudnn.deterministic == deterministic


def test_bc_dagger_episodes_are_driven_by_the_transformer_and_labelled_by_the_accelerator(tmp_path):
    checked = []

    def on_step(L):
        T, g = L["trajectory"], L["global_step"]
        if L["stage"] == 1 and g > L["args"].learning_starts:
            window, actor, transformer, dagger = on_step.before
            assert dagger, f"step {g}: --bc-dagger 1 and the transformer did not drive"
            j = (T.ptr - 1) % T.capacity
            diff = (T.windows[j] - window.obs)[window.valid]  # the window acted on, with section 3.1's noise
            assert 0.2 < diff.std() < 0.8
            # exploration noise 0: the executed action is the transformer's, the label in T the accelerator's, on
            # the true (noise-free) state
            np.testing.assert_allclose(L["action"], m.transformer_act(transformer, window, "cpu"), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(T.actions[j], m.mlp_act(actor, window.obs[-1], "cpu"), rtol=1e-5, atol=1e-6)
            checked.append(np.abs(T.actions[j] - L["action"]).max())
        elif L["stage"] == 1 and g > 1:
            assert not on_step.before[-1], f"step {g}: the transformer drove before --learning-starts"
        on_step.before = (copy.deepcopy(L["window"]), copy.deepcopy(L["actor"]), copy.deepcopy(L["transformer"]),
                          L["dagger"])  # fmt: skip

    # Pendulum's episodes are 200 steps: the transformer drives the two that start at and after --learning-starts
    run_main(tmp_path, on_step, bc_dagger=1.0, exploration_noise=0.0, bc_state_noise=0.5, bc_target="behavior",
             finetune_steps=4)  # fmt: skip
    assert len(checked) == ACCEL - STARTS
    assert max(checked) > 0.05  # the labels are not the executed actions


def test_non_finite_action_in_a_dagger_episode_is_reported_as_the_transformer_s(tmp_path):
    def on_step(L):
        if L["global_step"] == STARTS - 1:  # the transformer drives the episode that starts at --learning-starts
            with torch.no_grad():
                L["transformer"].fc_mu.bias.fill_(float("nan"))

    with pytest.raises(m.DivergenceError, match=f"^the transformer's action is non-finite at global step {STARTS}$"):
        run_main(tmp_path, on_step, bc_dagger=1.0)
