"""td3_accel_lstm_pomdp.py: the LSTM accelerator's history windows and the transformer's context windows cut from the
same stored episode steps, critic ascent on the LSTM critic, T's labels under --bc-target/--bc-state-noise/--bc-dagger
and --bc-source eval without DAgger (issue 22), the real loop driven in-process through main(args, on_step) (who a
non-finite action is blamed on, --history-len's default), an end-to-end run on velocity-only Hopper (tags,
checkpoints, fine-tuning from accelerated.pt), bad input and divergence. Every run is tiny (a few hundred steps, LSTM
hidden size 8, small transformer)."""

import copy
import dataclasses
import glob
import hashlib
import inspect
import os
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import tyro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import checked, load_events, load_pt, run_cli, run_dirs, scalars, single_run_dir  # noqa: E402

import td3_accel_lstm_pomdp as m  # noqa: E402
import td3_accel_mujoco as accel_mujoco  # noqa: E402
from baselines import td3_lstm_mujoco as baseline  # noqa: E402

ENV_ID = "Hopper-v4"  # falls within a few random steps: many episode boundaries
TINY = ["--batch-size", "32", "--buffer-size", "64", "--accel-buffer-size", "1000", "--dim-model", "32",
        "--dim-feedforward", "64", "--lstm-hidden-size", "8", "--eval-episodes", "1", "--num-threads", "1",
        "--critic-warmup", "20"]  # fmt: skip
ACCEL_STEPS, FINETUNE_STEPS = 400, 60
FULL_RUN = ["--env-id", ENV_ID, "--accel-steps", ACCEL_STEPS, "--learning-starts", 200, "--finetune-steps",
            FINETUNE_STEPS, "--bc-frequency", 8, "--eval-frequency", 200, "--log-frequency", 50, "--critic-ascent",
            "--history-len", 2, "--context-len", 4, *TINY]  # fmt: skip
LINE = re.compile(r"^td3_accel_lstm_pomdp\.py: error: .+$")


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_defaults_and_shared_code():
    args, mujoco_args = m.Args(), accel_mujoco.Args()
    assert (args.pomdp, args.lstm_hidden_size) == ("velocity", baseline.Args().lstm_hidden_size)
    # every flag of td3_accel_mujoco.py is here, with the same default (stage-1 schedule and handover included),
    # except --compile: the hand-written LSTM's autograd Function is not compiled (BENCHMARKS.md, issue 10)
    fields = {f.name for f in dataclasses.fields(mujoco_args)} - {"compile"}
    assert fields <= {f.name for f in dataclasses.fields(args)}
    for name in fields - {"exp_name"}:
        assert getattr(args, name) == getattr(mujoco_args, name), name
    # what is copied from the LSTM baseline stays textually identical (CleanRL style: copies, no imports)
    for name in ("VelocityOnly", "make_env", "lstm_act", "WindowLSTM", "LSTMQNetwork", "LSTMActor"):
        assert inspect.getsource(getattr(m, name)) == inspect.getsource(getattr(baseline, name)), (
            f"{name} differs from baselines/td3_lstm_mujoco.py: re-sync the copy"
        )
    assert m.VELOCITY_ONLY == baseline.VELOCITY_ONLY


# ---------------------------------------------------------------------------------------------------------------
# History and context windows from the same stored steps
def code(e: int, t: int) -> np.ndarray:
    """The observation at step t of episode e: never zero, so padding cannot pass for an observation."""
    return np.array([e + 1, t + 1], dtype=np.float32)


def expected(log: list, j: int, length: int, first: int):
    """The left-padded windows of s and s' for stored transition j (log[j] = (episode, step)), counted by hand: a
    position is valid while it stays in j's episode and at or after `first`, the oldest transition still held."""
    e, t = log[j]
    w, v = np.zeros((length, 2), dtype=np.float32), np.zeros(length, dtype=bool)
    for back in range(length):
        if t - back >= 0 and j - back >= first:
            w[length - 1 - back], v[length - 1 - back] = code(e, t - back), True
    nw = np.concatenate([w[1:], code(e, t + 1)[None]])
    nv = np.concatenate([v[1:], [True]])
    return w, v, nw, nv


def store(rb, log: list, e: int, n: int, terminated: bool) -> None:
    for t in range(n):
        rb.add(code(e, t), code(e, t + 1), np.zeros(1), 0.0, terminated and t == n - 1, t)
        log.append((e, t))


def check_sampled(rb, log, first, history_len, context_len):
    torch.manual_seed(0)
    np.random.seed(0)
    data = {k: v.numpy() for k, v in rb.sample(200, history_len, context_len).items()}
    where = {tuple(code(*et)): j for j, et in enumerate(log)}
    seen = set()
    for i in range(200):
        j = where[tuple(data["context"][i, -1])]  # s, the last context position, identifies the transition
        seen.add(j)
        assert j >= first, "sampled a transition the ring has overwritten"
        for name, length in (("history", history_len), ("context", context_len)):
            w, v, nw, nv = expected(log, j, length, first)
            np.testing.assert_array_equal(data[name][i], w, err_msg=f"{name} of {log[j]}")
            np.testing.assert_array_equal(data[f"{name}_valid"][i], v, err_msg=f"{name} mask of {log[j]}")
            np.testing.assert_array_equal(data[f"next_{name}"][i], nw, err_msg=f"next {name} of {log[j]}")
            np.testing.assert_array_equal(data[f"next_{name}_valid"][i], nv, err_msg=f"next {name} mask")
    assert len(seen) == len(log) - first  # every held transition was checked


@pytest.mark.parametrize("history_len, context_len", [(3, 3), (2, 4), (4, 2)])
def test_replay_buffer_rebuilds_history_and_context_windows_at_episode_boundaries(history_len, context_len):
    rb, log = m.ReplayBuffer(10, 2, 1, "cpu"), []
    store(rb, log, 0, 3, terminated=True)
    store(rb, log, 1, 5, terminated=False)  # a time-limit truncation: the next episode starts over
    store(rb, log, 2, 4, terminated=False)  # 12 stored in a ring of 10: the first two overwritten
    assert rb.count == 10
    check_sampled(rb, log, 2, history_len, context_len)
    # the stage-2 buffer prefilled with the 6 latest, then a new episode; a ring of 8 overwrites the oldest again
    rb2 = m.ReplayBuffer(8, 2, 1, "cpu")
    rb2.extend(rb.recent(6))
    log2 = log[-6:]
    store(rb2, log2, 3, 3, terminated=False)
    check_sampled(rb2, log2, 1, history_len, context_len)


def test_episode_window_tails_follow_pushes_and_resets():
    window = m.EpisodeWindow(4, 2)
    history, context = window.last(2), window.last(3)
    window.reset(code(0, 0))
    for t in range(1, 5):
        window.push(code(0, t))
    np.testing.assert_array_equal(history.obs, [code(0, 3), code(0, 4)])
    np.testing.assert_array_equal(context.obs, [code(0, 2), code(0, 3), code(0, 4)])
    window.reset(code(1, 0))  # a new episode: nothing of the old one is left in either tail
    np.testing.assert_array_equal(context.obs, [[0, 0], [0, 0], code(1, 0)])
    np.testing.assert_array_equal(context.valid, [False, False, True])
    np.testing.assert_array_equal(history.valid, [False, True])


class Spy(nn.Module):
    """Records the (window, valid) it is called with, then runs the wrapped network."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, window, valid, *rest):
        self.calls.append((window.detach().clone(), valid.clone()))
        return self.net(window, valid, *rest)


def setup(history_len, context_len, **kw):
    torch.manual_seed(0)
    args = m.Args(history_len=history_len, context_len=context_len, dim_model=32, dim_feedforward=64,
                  lstm_hidden_size=8, batch_size=16, bc_buffer_size=64, dropout=0.0, **kw)  # fmt: skip
    low, high = -np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float32)
    transformer = m.make_transformer(3, low, high, args)
    actor, qf1 = m.LSTMActor(3, low, high, 8), m.LSTMQNetwork(3, 2, 8)
    opt = torch.optim.Adam(transformer.parameters(), lr=1e-3)
    return args, transformer, copy.deepcopy(transformer), opt, qf1, actor


def fill_T(args, n=64, seed=0):
    """T with windows of max(history, context) from episodes at different steps (so with padding)."""
    rng = np.random.default_rng(seed)
    length = max(args.history_len, args.context_len)
    T = m.TrajectoryBuffer(args.bc_buffer_size, length, 3, 2)
    for i in range(n):
        window = m.EpisodeWindow(length, 3)
        window.reset(rng.normal(size=3) + i)
        for _ in range(i % (length + 1)):
            window.push(rng.normal(size=3))
        T.add(window.obs, window.valid, rng.uniform(-1, 1, size=2))
    return T


@pytest.mark.parametrize("history_len, context_len", [(2, 4), (4, 2)])
def test_each_network_reads_its_own_tail_of_the_same_stored_window(history_len, context_len):
    args, transformer, target, opt, qf1, actor = setup(history_len, context_len, critic_ascent=True)
    T = fill_T(args)
    transformer, actor, qf1 = Spy(transformer), Spy(actor), Spy(qf1)
    m.train_transformer(T, transformer, copy.deepcopy(transformer), opt, qf1, actor, args, "cpu")
    (tw, tv), (aw, av), (qw, qv) = transformer.calls[0], actor.calls[0], qf1.calls[0]
    assert tw.shape[1] == context_len and aw.shape[1] == history_len  # BC: transformer on context, LSTM on history
    torch.testing.assert_close(qw, aw, rtol=0, atol=0)  # ascent: the critic reads the same histories
    torch.testing.assert_close(qv, av, rtol=0, atol=0)
    longer, lv = (tw, tv) if context_len > history_len else (aw, av)
    k = min(history_len, context_len)
    torch.testing.assert_close(tw[:, -k:], aw[:, -k:], rtol=0, atol=0)  # row for row, the same stored sample
    torch.testing.assert_close(tv[:, -k:], av[:, -k:], rtol=0, atol=0)
    stored = {tuple(w[-1]): (w, v) for w, v in zip(T.windows, T.valids, strict=True)}
    for w, v in zip(longer.numpy(), lv.numpy(), strict=True):
        sw, sv = stored[tuple(w[-1])]
        np.testing.assert_array_equal(w, sw[-len(w) :])
        np.testing.assert_array_equal(v, sv[-len(v) :])
    # acting: stage 1 the LSTM on the acting window's last history_len, stage 2 the transformer on its last context_len
    window = m.EpisodeWindow(max(history_len, context_len), 3)
    window.reset(np.ones(3))
    window.push(2 * np.ones(3))
    space = __import__("gymnasium").spaces.Box(-1, 1, (2,))
    m.act(1, 10**9, window, actor, transformer, space, args, "cpu")
    m.act(2, 10**9, window, actor, transformer, space, args, "cpu")
    np.testing.assert_array_equal(actor.calls[-1][0][0].numpy(), window.obs[-history_len:])
    np.testing.assert_array_equal(transformer.calls[-1][0][0].numpy(), window.obs[-context_len:])


class CountingActor(nn.Module):
    """The LSTM accelerator's actor, counting its forward passes (and, with `fail`, refusing any)."""

    def __init__(self, actor, fail: bool = False):
        super().__init__()
        self.actor, self.fail, self.calls = actor, fail, 0

    def forward(self, window, valid):
        self.calls += 1
        if self.fail:
            raise AssertionError("store_in_T ran the actor for a label train_transformer throws away")
        return self.actor(window, valid)


def store_setup(**kw):
    """A window of 4 three steps into an episode (one padding position), the LSTM reading the last 2 (history), T, and
    the accelerator's actor."""
    args, transformer, target, opt, qf1, actor = setup(2, 4, **kw)
    window = m.EpisodeWindow(4, 3)
    window.reset(np.ones(3))
    window.push(2 * np.ones(3))
    window.push(3 * np.ones(3))
    return args, window, m.TrajectoryBuffer(8, 4, 3, 2), actor


EXECUTED = np.array([0.9, -0.9], dtype=np.float32)  # the executed action, exploration noise included


@pytest.mark.parametrize("state_noise", [0.0, 0.1])
def test_store_in_T_behavior_keeps_the_executed_action_with_or_without_state_noise(state_noise):
    """--bc-target behavior is Algorithm 1 line 7: T's label is the executed action, whatever noise the stored window
    (and so the LSTM's history, its tail) carries: state noise is input augmentation only."""
    args, window, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    clean = window.obs.copy()
    m.store_in_T(T, window, EXECUTED, CountingActor(actor, fail=True), args, "cpu")
    np.testing.assert_array_equal(T.actions[0], EXECUTED)
    np.testing.assert_array_equal(window.obs, clean)  # the acting window itself stays clean
    np.testing.assert_array_equal(T.valids[0], window.valid)
    assert np.all(T.windows[0][~window.valid] == 0)  # padding stays zero
    diff = np.abs(T.windows[0] - clean)[window.valid]
    assert (diff.min() > 0) == (state_noise > 0) and (diff.max() > 0) == (state_noise > 0)


@pytest.mark.parametrize("state_noise", [0.0, 0.5])
def test_store_in_T_behavior_in_a_dagger_episode_labels_with_the_lstm_on_the_true_history(state_noise):
    """In a --bc-dagger episode the transformer acted: the label is the LSTM actor's noise-free action on the true
    history of s (not on the stored noisy one), while the stored window keeps its noise."""
    args, window, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    counting = CountingActor(actor)
    m.store_in_T(T, window, EXECUTED, counting, args, "cpu", dagger=True)
    assert counting.calls == 1
    true_label = m.lstm_act(actor, window.last(2), "cpu")
    np.testing.assert_allclose(T.actions[0], true_label, rtol=1e-6, atol=1e-7)
    if state_noise:
        stored = copy.copy(window)
        stored.obs, stored.valid = T.windows[0], T.valids[0]
        assert np.abs(T.windows[0] - window.obs)[window.valid].min() > 0
        noisy_label = m.lstm_act(actor, stored.last(2), "cpu")
        assert np.abs(noisy_label - true_label).max() > 1e-4  # the test tells the two histories apart


@pytest.mark.parametrize("dagger", [False, True])
def test_store_in_T_actor_target_runs_no_forward_pass(dagger):
    """With --bc-target actor every label is recomputed when the transformer trains: storing one runs no actor (the
    executed action is kept as a placeholder), in DAgger episodes too."""
    args, window, T, actor = store_setup(bc_target="actor", bc_state_noise=0.1)
    m.store_in_T(T, window, EXECUTED, CountingActor(actor, fail=True), args, "cpu", dagger=dagger)
    assert len(T) == 1
    np.testing.assert_array_equal(T.actions[0], EXECUTED)
    assert np.abs(T.windows[0] - window.obs)[window.valid].min() > 0  # the state noise of section 3.1


def test_bc_target_actor_labels_t_s_noisy_history_at_training_time():
    """What replaces the stored placeholder: train_transformer's targets are the current LSTM actor on the stored
    (noisy) history, so the transformer learns the accelerator's action a little off the visited states."""
    args, transformer, target, opt, qf1, actor = setup(2, 4, bc_target="actor", bc_state_noise=0.5, bc_updates=1)
    T, window = m.TrajectoryBuffer(8, 4, 3, 2), m.EpisodeWindow(4, 3)
    window.reset(np.ones(3))
    window.push(2 * np.ones(3))
    m.store_in_T(T, window, EXECUTED, actor, args, "cpu")
    spy = Spy(actor)
    targets = []
    spy.register_forward_hook(lambda mod, inp, out: targets.append(out.detach().clone()))
    m.train_transformer(T, transformer, target, opt, qf1, spy, args, "cpu")
    ((history, valid),) = spy.calls
    torch.testing.assert_close(history, torch.as_tensor(T.windows[:1, -2:]).expand_as(history), rtol=0, atol=0)
    assert not torch.equal(history[0], torch.as_tensor(window.obs[-2:]))  # the noisy history, not the visited one
    assert np.abs(targets[0].numpy() - EXECUTED).max() > 0.05  # not the placeholder


@pytest.mark.parametrize(("bc_source", "expected"), [("train", True), ("eval", False)])
def test_dagger_only_with_bc_source_train(bc_source, expected):
    """--bc-source eval fills T from evaluations only: no training episode is driven by the transformer."""
    args = m.Args(bc_dagger=1.0, bc_source=bc_source, learning_starts=10)
    assert m.draw_dagger(1, 10, args) == expected
    assert not m.draw_dagger(1, 9, args) and not m.draw_dagger(2, 10, args)


def test_critic_ascent_on_the_lstm_critic_raises_q1():
    results = {}
    for ascent in (False, True):
        args, transformer, target, opt, qf1, actor = setup(2, 3, critic_ascent=ascent, bc_target="behavior")
        T = fill_T(args)
        history = torch.as_tensor(T.windows[:, -2:]), torch.as_tensor(T.valids[:, -2:])
        context = torch.as_tensor(T.windows[:, -3:]), torch.as_tensor(T.valids[:, -3:])
        with torch.no_grad():
            qf1.fc3.weight.mul_(100.0)  # a critic with a clear slope in the action
            T.actions[:] = transformer(*context).numpy()  # BC targets = own actions: BC alone stays put
        with torch.no_grad():
            q0 = float(qf1(*history, transformer(*context)).mean())
        before = copy.deepcopy(qf1.state_dict())
        for _ in range(10):
            out = m.train_transformer(T, transformer, target, opt, qf1, actor, args, "cpu")
            assert ("losses/critic_ascent_q" in out) == ascent
        for k, v in qf1.state_dict().items():  # the critic is only read, never stepped
            assert torch.equal(v, before[k])
        with torch.no_grad():
            results[ascent] = (q0, float(qf1(*history, transformer(*context)).mean()))
    assert results[False][1] == pytest.approx(results[False][0], abs=1e-3)
    assert results[True][1] > results[True][0] + 1.0, f"critic ascent did not raise Q1: {results[True]}"


# ---------------------------------------------------------------------------------------------------------------
# The real loop, in-process
H, K, LOOP_ACCEL, LOOP_STARTS, LOOP_FINETUNE = 2, 3, 300, 150, 60  # LOOP_ACCEL even: no soft update at its +1


class Recorder:
    """Checks every step against the test's own account of the episode (not main()'s)."""

    def __init__(self):
        self.episode, self.prev, self.snap, self.t_len = [], None, {}, {}
        self.events = {"ends": 0, "stage2": 0, "dagger": 0}
        self.lengths = {}  # network name -> window lengths it was called with, over the whole run

    def watch(self, L):
        """Record the window length of every call of every network (forward pre-hooks, in both stages)."""
        for name in ("actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target", "transformer",
                     "transformer_target"):  # fmt: skip
            self.lengths[name] = set()
            L[name].register_forward_pre_hook(lambda mod, inp, n=name: self.lengths[n].add(inp[0].shape[1]))

    def __call__(self, L):
        g, stage, rb, args, T = L["global_step"], L["stage"], L["rb"], L["args"], L["trajectory"]
        if self.prev is None:
            self.watch(L)
        i = (rb.ptr - 1) % rb.size
        new_stage = self.prev is not None and stage != self.prev["stage"]
        if self.prev is None or new_stage or self.prev["done"]:
            self.episode = [np.array(rb.obs[i])]
        assert rb.episode_step[i] == len(self.episode) - 1, f"step {g}: stored episode step"
        # the windows of the newest transition never reach into another episode (nor the prefilled data)
        w, v, _, _ = rb.windows(np.array([i]), K)
        assert v[0].sum() == min(len(self.episode), K), f"step {g}: window crosses an episode"
        np.testing.assert_array_equal(w[0][v[0]], np.array(self.episode[-K:]))
        # T: nothing from the random warm-up; each sample is the window acted on with the executed action (in a
        # --bc-dagger episode the LSTM actor's label instead: its own test below)
        self.t_len[g] = len(T)
        if stage == 1 and g > args.learning_starts:
            j = (T.ptr - 1) % T.capacity
            np.testing.assert_array_equal(T.windows[j], self.prev["window"], err_msg=f"step {g}: T's window")
            if not self.prev["dagger"]:
                np.testing.assert_array_equal(T.actions[j], np.float32(L["action"]))
            self.events["dagger"] += self.prev["dagger"]
        done = L["terminated"] or L["truncated"]
        self.events["ends"] += bool(done)
        if done:
            self.episode = [np.float32(L["obs"])]
        else:
            self.episode.append(np.array(rb.next_obs[i]))
        last = self.episode[-K:]
        np.testing.assert_array_equal(L["window"].obs[K - len(last) :], last, err_msg=f"step {g}: acting window")
        assert L["window"].valid.sum() == len(last)
        if stage == 2:
            self.events["stage2"] += 1
            assert rb is not self.snap["stage1_rb"] and rb.size == args.buffer_size
            assert rb.count == min(len(self.snap["recent"]["obs"]) + g - args.accel_steps, args.buffer_size)
            if g == args.accel_steps + 1:  # prefilled with the accelerator's latest transitions, then its own
                held = rb.recent(args.buffer_size)
                for k, val in self.snap["recent"].items():
                    np.testing.assert_array_equal(held[k][:-1], val[len(val) - (len(held[k]) - 1) :], k)
                for name, state in self.snap["end"].items():
                    assert L[name] is self.snap["objects"][name], f"{name} replaced at the handover"
                    assert isinstance(L[name], m.LSTMQNetwork) or name.startswith("transformer")
                    if name not in ("qf1", "qf2"):  # the critics took one TD step already; targets not yet
                        for k, val in L[name].state_dict().items():
                            assert torch.equal(val, state[k]), f"{name}.{k} is not the stage-1 weight"
        else:
            self.snap["stage1_rb"] = rb
        if g == args.accel_steps:
            self.snap["recent"] = rb.recent(args.buffer_size)
            names = ("qf1", "qf2", "qf1_target", "qf2_target", "transformer", "transformer_target")
            self.snap["end"] = {n: copy.deepcopy(L[n].state_dict()) for n in names}
            self.snap["objects"] = {n: L[n] for n in names}
        self.prev = {"stage": stage, "done": done, "window": L["window"].obs.copy(), "dagger": L["dagger"]}


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    rec = Recorder()
    # T's samples as acted (--bc-state-noise 0); the noisy path has its own test
    args = dataclasses.replace(
        m.Args(), env_id=ENV_ID, accel_steps=LOOP_ACCEL, learning_starts=LOOP_STARTS, finetune_steps=LOOP_FINETUNE,
        eval_frequency=10**6, eval_episodes=1, batch_size=32, buffer_size=64, accel_buffer_size=1000, dim_model=32,
        dim_feedforward=64, lstm_hidden_size=8, num_threads=1, bc_frequency=4, bc_target="behavior", history_len=H,
        context_len=K, bc_state_noise=0.0, critic_warmup=20, run_dir=str(tmp_path_factory.mktemp("loop")),
    )  # fmt: skip
    m.main(args, on_step=rec)
    return args, rec


def test_loop_windows_T_handover_and_prefill(loop_run):
    args, rec = loop_run  # the Recorder asserted every step; here: the run crossed what it should
    assert rec.events["ends"] >= 10 and rec.events["stage2"] == LOOP_FINETUNE
    assert 0 < rec.events["dagger"] < LOOP_ACCEL - LOOP_STARTS  # --bc-dagger 0.25: the transformer drove some steps
    # the LSTMs (the critics in both stages too) only ever read histories, the transformer only its contexts
    assert rec.lengths == {"actor": {H}, "actor_target": {H}, "qf1": {H}, "qf2": {H}, "qf1_target": {H},
                           "qf2_target": {H}, "transformer": {K}, "transformer_target": {K}}  # fmt: skip
    for g, n in rec.t_len.items():  # T is empty through the warm-up, then one sample per acting step
        want = 0 if g <= args.learning_starts or g > args.accel_steps else g - args.learning_starts
        assert n == want, f"step {g}: T holds {n}, expected {want}"


def test_bc_dagger_episodes_are_driven_by_the_transformer_and_labelled_by_the_lstm(tmp_path):
    """--bc-dagger 1: every episode that starts after --learning-starts is driven by the transformer on its context
    window, and T holds the windows it visits labelled by the LSTM actor on their history; before, never."""
    checked, starts = [], {"episode": 0}

    def on_step(L):
        T, g, args = L["trajectory"], L["global_step"], L["args"]
        if L["stage"] == 1 and g > 1:
            window, actor, transformer, dagger = on_step.before
            # the episode of step g (executed at g - 1) began at starts["episode"]: --bc-dagger 1 drives it if that
            # was at or after --learning-starts (Hopper's episodes end anywhere, the warm-up's last one runs on)
            assert dagger == (starts["episode"] >= args.learning_starts), f"step {g}: who drove the episode"
            if dagger:
                j = (T.ptr - 1) % T.capacity
                np.testing.assert_array_equal(T.windows[j], window.obs)  # the window acted on, as visited
                # exploration noise 0: the executed action is the transformer's on its context, T's label the LSTM
                # actor's on its history of the same window
                want = m.transformer_act(transformer, window.last(args.context_len), "cpu")
                np.testing.assert_allclose(L["action"], want, rtol=1e-5, atol=1e-6)
                label = m.lstm_act(actor, window.last(args.history_len), "cpu")
                np.testing.assert_allclose(T.actions[j], label, rtol=1e-5, atol=1e-6)
                checked.append(np.abs(T.actions[j] - L["action"]).max())
        if L["terminated"] or L["truncated"]:
            starts["episode"] = g
        on_step.before = (copy.deepcopy(L["window"]), copy.deepcopy(L["actor"]), copy.deepcopy(L["transformer"]),
                          L["dagger"])  # fmt: skip

    args = dataclasses.replace(
        m.Args(), env_id=ENV_ID, accel_steps=LOOP_ACCEL, learning_starts=LOOP_STARTS, finetune_steps=4,
        eval_frequency=10**6, eval_episodes=1, batch_size=32, buffer_size=64, accel_buffer_size=1000, dim_model=32,
        dim_feedforward=64, lstm_hidden_size=8, num_threads=1, bc_frequency=4, history_len=H, context_len=K,
        bc_dagger=1.0, exploration_noise=0.0, bc_state_noise=0.0, bc_target="behavior", run_dir=str(tmp_path),
    )  # fmt: skip
    m.main(args, on_step=on_step)
    assert len(checked) > (LOOP_ACCEL - LOOP_STARTS) // 2  # most of the steps after the warm-up's last episode
    assert max(checked) > 0.05  # the labels are not the executed actions


def short_run(tmp_path, **kw) -> m.Args:
    """A short real run on Hopper (tiny networks), with `kw` over these flags."""
    tiny = dict(env_id=ENV_ID, accel_steps=LOOP_ACCEL, learning_starts=LOOP_STARTS, finetune_steps=4,
                eval_frequency=10**6, eval_episodes=1, batch_size=32, buffer_size=64, accel_buffer_size=1000,
                dim_model=32, dim_feedforward=64, lstm_hidden_size=8, num_threads=1, bc_frequency=4)  # fmt: skip
    return dataclasses.replace(m.Args(), **{**tiny, **kw}, run_dir=str(tmp_path))


def test_history_len_defaults_to_3_whatever_context_len_is(tmp_path):
    """--history-len's help says what the code does: 3, not --context-len. With only --context-len 5 given, the
    LSTMs (actor, critics and their targets) read 3 observations and the transformer 5, in the real loop."""
    parsed = tyro.cli(m.Args, args=["--context-len", "5"])
    assert (parsed.history_len, parsed.context_len) == (3, 5)
    lengths = {}

    def on_step(L):
        if not lengths:
            for name in ("actor", "actor_target", "qf1", "qf1_target", "transformer", "transformer_target"):
                lengths[name] = set()
                L[name].register_forward_pre_hook(lambda mod, inp, n=name: lengths[n].add(inp[0].shape[1]))

    args = short_run(tmp_path, history_len=parsed.history_len, context_len=parsed.context_len, accel_steps=170)
    m.main(args, on_step=on_step)
    assert lengths == {"actor": {3}, "actor_target": {3}, "qf1": {3}, "qf1_target": {3}, "transformer": {5},
                       "transformer_target": {5}}  # fmt: skip


@pytest.mark.parametrize("who", ["transformer", "accelerator"])
def test_a_non_finite_action_names_the_network_that_acted(tmp_path, who):
    """Stage 1 with --bc-dagger: NaN weights in the network that acts next show as a non-finite action, reported as
    that network's: the transformer's in a DAgger episode (it acted, not the accelerator), else the accelerator's."""
    poisoned = []

    def on_step(L):
        g, dagger = L["global_step"], L["dagger"]  # dagger: who acts in the next step
        if not poisoned and L["stage"] == 1 and g >= L["args"].learning_starts and dagger == (who == "transformer"):
            with torch.no_grad():
                L["transformer" if dagger else "actor"].fc_mu.bias.fill_(float("nan"))
            poisoned.append(g)

    with pytest.raises(m.DivergenceError) as info:
        m.main(short_run(tmp_path, bc_dagger=0.5), on_step=on_step)
    assert poisoned and str(info.value) == f"the {who}'s action is non-finite at global step {poisoned[0]}"


# ---------------------------------------------------------------------------------------------------------------
# End to end, through cli()
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full_run")
    proc = checked(run_cli(m, [*FULL_RUN, "--run-dir", run_dir], cwd=run_dir))
    path = single_run_dir(run_dir)
    return {"proc": proc, "path": path, "events": load_events(path)}


def test_full_run_logs_the_tags_and_progress_lines(full_run):
    ea, total = full_run["events"], ACCEL_STEPS + FINETUNE_STEPS
    tags = set(ea.Tags()["scalars"])
    assert {"charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/stage",
            "eval/accelerator_return", "eval/transformer_return", "losses/qf1_loss", "losses/qf2_loss",
            "losses/actor_loss", "losses/bc_loss", "losses/critic_ascent_q"} <= tags  # fmt: skip
    assert [s for s, _ in scalars(ea, "eval/transformer_return")] == [200, 400, total]
    assert [s for s, _ in scalars(ea, "eval/accelerator_return")] == [200, 400]
    assert max(s for s, _ in scalars(ea, "losses/bc_loss")) == ACCEL_STEPS
    lines = [ln for ln in full_run["proc"].stdout.splitlines() if ln.startswith("step=")]
    eta = re.compile(r" eta=(measuring|>?(?:\d+s|\d+m\d\ds|\d+h\d\dm)) ")  # '>' while a part is unmeasured
    assert len(lines) == 3 and all(eta.search(ln) for ln in lines), full_run["proc"].stdout
    assert "obs dim 6 (--pomdp velocity)" in full_run["proc"].stdout


def rebuild(ckpt: dict):
    args = m.Args(**ckpt["args"])
    env = m.make_env(args.env_id, args.seed + 1, args.pomdp)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    torch.manual_seed(123)  # a fresh init, overwritten entirely by the strict load
    transformer = m.make_transformer(ckpt["obs_dim"], low, high, args)
    transformer.load_state_dict(ckpt["transformer"], strict=True)
    actor = m.LSTMActor(ckpt["obs_dim"], low, high, args.lstm_hidden_size)
    actor.load_state_dict(ckpt["actor"], strict=True)
    return args, env, transformer.eval(), actor.eval()


def test_checkpoints_round_trip_to_the_evaluated_actions(full_run):
    """Re-running the script's last evaluation of each stage with reloaded networks gives the logged returns: the
    reloaded transformer and LSTM actor act exactly as the trained ones did (on velocity-only observations)."""
    path, ea = full_run["path"], full_run["events"]
    accel, final = load_pt(os.path.join(path, "accelerated.pt")), load_pt(os.path.join(path, "final.pt"))
    assert (accel["stage"], accel["global_step"], final["stage"], final["global_step"]) == (
        1, ACCEL_STEPS, 2, ACCEL_STEPS + FINETUNE_STEPS)  # fmt: skip
    assert accel["obs_dim"] == 6 and len(accel["recent_transitions"]["obs"]) == 64
    logged_t, logged_a = dict(scalars(ea, "eval/transformer_return")), dict(scalars(ea, "eval/accelerator_return"))
    for ckpt, step in ((accel, ACCEL_STEPS), (final, ACCEL_STEPS + FINETUNE_STEPS)):
        args, env, transformer, actor = rebuild(ckpt)
        run = lambda policy: m.evaluate(env, policy, 1, args.seed + 10_000 + step, 4, step)  # noqa: E731, B023
        ret = run(lambda w: m.transformer_act(transformer, w.last(args.context_len), "cpu"))  # noqa: B023
        assert ret == pytest.approx(logged_t[step], rel=1e-5, abs=1e-4)
        if ckpt is accel:
            ret = run(lambda w: m.lstm_act(actor, w.last(args.history_len), "cpu"))  # noqa: B023
            assert ret == pytest.approx(logged_a[step], rel=1e-5, abs=1e-4)
        env.close()
    for name in ("qf1", "qf1_target"):  # stage 2 trained the LSTM critics further
        assert any(not torch.equal(v, accel[name][k]) for k, v in final[name].items()), name
        assert any(k.startswith("lstm.") for k in final[name])


def finetune_argv(full_run, run_dir, *extra):
    return ["--env-id", ENV_ID, "--accelerated-checkpoint", os.path.join(full_run["path"], "accelerated.pt"),
            "--finetune-steps", 30, "--eval-frequency", 1000, "--history-len", 2, "--context-len", 4, *TINY,
            "--run-dir", run_dir, *extra]  # fmt: skip


def test_finetune_from_accelerated_checkpoint(full_run, tmp_path):
    ckpt = os.path.join(full_run["path"], "accelerated.pt")
    before = sha256(ckpt)
    checked(run_cli(m, finetune_argv(full_run, tmp_path), cwd=tmp_path))
    path = single_run_dir(tmp_path)
    assert sorted(f for f in os.listdir(path) if f.endswith(".pt")) == ["final.pt"]
    assert sha256(ckpt) == before
    assert load_pt(os.path.join(path, "final.pt"))["global_step"] == ACCEL_STEPS + 30
    stages = scalars(load_events(path), "charts/stage")
    assert stages and all(v == 2 and s > ACCEL_STEPS for s, v in stages)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line, no run directory
BAD_INPUT = {
    "unknown env": (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    "no velocity index set": (["--env-id", "Pendulum-v1"], "--pomdp velocity: no velocity index set for Pendulum-v1"),
    "history 0": (["--history-len", 0], "--history-len must be positive"),
    "lstm hidden 0": (["--lstm-hidden-size", 0], "--lstm-hidden-size must be positive"),
    "buffer < batch": (["--buffer-size", 16], "--buffer-size (16)"),
    "huge learning rate": (["--learning-rate", 1e38], "--learning-rate must be finite and at most"),
    "CleanRL's steps flag": (
        ["--total-timesteps", 1000],
        "--total-timesteps: this script runs two "
        "stages, give their lengths: --accel-steps (stage 1) and --finetune-steps (stage 2)",
    ),
    "missing checkpoint": (["--accelerated-checkpoint", "/nonexistent/accelerated.pt"], "no such file"),
    "checkpoint of another observation": (
        ["--pomdp", "none", "--accelerated-checkpoint", "CKPT"],
        "has --pomdp velocity, this run asks for none",
    ),  # fmt: skip
    "checkpoint of another history": (
        ["--history-len", 3, "--accelerated-checkpoint", "CKPT"],
        "has --history-len 2, this run asks for 3",
    ),  # fmt: skip
    "checkpoint of an MLP accelerator": (["--accelerated-checkpoint", "MLP"], "not a checkpoint written by"),
    "final.pt as a stage-1 checkpoint": (["--accelerated-checkpoint", "FINAL"], "was written after stage 2"),
    "garbage checkpoint": (["--accelerated-checkpoint", "GARBAGE"], "not a readable checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line(full_run, tmp_path, case):
    argv, fragment = BAD_INPUT[case]
    files = {"CKPT": os.path.join(full_run["path"], "accelerated.pt"),
             "FINAL": os.path.join(full_run["path"], "final.pt"), "MLP": str(tmp_path / "mlp.pt"),
             "GARBAGE": str(tmp_path / "garbage.pt")}  # fmt: skip
    (tmp_path / "garbage.pt").write_bytes(b"\x00 not a checkpoint \xff" * 50)
    mlp = load_pt(files["CKPT"])  # what td3_accel_mujoco.py writes: no LSTM fields in its args
    mlp["args"] = {k: v for k, v in mlp["args"].items() if k not in ("history_len", "lstm_hidden_size", "pomdp")}
    torch.save(mlp, files["MLP"])
    argv = [files.get(a, a) if isinstance(a, str) else a for a in argv]
    run_dir = tmp_path / "runs"
    base = ["--env-id", ENV_ID, "--history-len", 2, "--context-len", 4, "--accel-steps", 50, "--finetune-steps", 10]
    proc = run_cli(m, [*base, *TINY, "--run-dir", run_dir, *argv], cwd=tmp_path)
    assert proc.returncode == 2, f"{case}: exit code {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]), f"{case}: expected one error line, got:\n{proc.stderr}"
    assert fragment in lines[0], lines[0]
    assert run_dirs(run_dir) == []


# ---------------------------------------------------------------------------------------------------------------
# Divergence: exit code 1 naming the loss and the step, checkpoints intact
DIVERGED = re.compile(r"^td3_accel_lstm_pomdp\.py: diverged: (losses/\w+) is (nan|inf|-inf) at global step (\d+)")


def test_divergence_in_stage_1_names_loss_and_step(tmp_path):
    argv = ["--env-id", ENV_ID, "--accel-steps", 300, "--learning-starts", 200, "--finetune-steps", 10,
            "--eval-frequency", 1000, "--learning-rate", 1e30, *TINY, "--run-dir", tmp_path / "runs"]  # fmt: skip
    proc = run_cli(m, argv, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    match = DIVERGED.match(proc.stderr.strip().splitlines()[-1])
    assert match and match.group(1) in ("losses/qf1_loss", "losses/qf2_loss"), proc.stderr
    assert 200 < int(match.group(3)) <= 210
    assert glob.glob(str(tmp_path / "runs" / "*" / "*.pt*")) == []


def test_divergence_while_finetuning_keeps_the_checkpoint_intact(full_run, tmp_path):
    ckpt = os.path.join(full_run["path"], "accelerated.pt")
    before = (sha256(ckpt), os.stat(ckpt).st_mtime_ns)
    proc = run_cli(m, finetune_argv(full_run, tmp_path / "runs", "--learning-rate", 1e30, "--finetune-steps", 200),
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    own = [ln for ln in proc.stderr.splitlines() if ln.startswith("td3_accel_lstm_pomdp.py:")]
    assert len(own) == 1 and re.search(r"diverged: .* at global step (\d+)", own[0]), proc.stderr
    assert ACCEL_STEPS < int(re.search(r"global step (\d+)", own[0]).group(1)) <= ACCEL_STEPS + 200
    assert (sha256(ckpt), os.stat(ckpt).st_mtime_ns) == before
    assert glob.glob(str(tmp_path / "runs" / "**" / "*.pt*"), recursive=True) == []
    assert not os.path.exists(tmp_path / "MUJOCO_LOG.TXT")  # no NaN action reached the simulator


@pytest.mark.parametrize("script", ["accel", "baseline"])
def test_device_path_on_the_cpu_defers_the_check_to_the_next_checkpoint_write(script, tmp_path, monkeypatch):
    """The CUDA path (issue 25) forced on the CPU, in both LSTM scripts: the replay buffer draws its indices with
    torch's generator, and a NaN loss at step 130 is found at the next checkpoint write (step 140) and reported with
    its own step; resume.pt stays the one of step 120."""
    mod = m if script == "accel" else baseline
    monkeypatch.setattr(mod, "DEVICE_PATH", True)
    update = mod.td3_update

    def nan_at_130(global_step, *a, **kw):
        losses = update(global_step, *a, **kw)
        if global_step == 130:
            losses["losses/qf2_loss"] = losses["losses/qf2_loss"] * float("nan")
        return losses

    monkeypatch.setattr(mod, "td3_update", nan_at_130)
    steps = dict(accel_steps=200, finetune_steps=100) if script == "accel" else dict(total_timesteps=300)
    tiny = dict(dim_model=32, dim_feedforward=64, accel_buffer_size=1000) if script == "accel" else {}
    args = mod.Args(env_id="Pendulum-v1", pomdp="none", batch_size=32, buffer_size=1000, lstm_hidden_size=8,
                    num_threads=1, learning_starts=100, checkpoint_frequency=20, log_frequency=1000,
                    eval_frequency=1000, run_dir=str(tmp_path), **steps, **tiny)  # fmt: skip
    seen = []
    with pytest.raises(mod.DivergenceError, match=r"^losses/qf2_loss is nan at global step 130$"):
        mod.main(args, on_step=lambda loop: seen.append((loop["global_step"], loop["rb"].torch_rng)))
    assert seen[-1][0] == 140 and {on_device for _, on_device in seen} == {True}
    state = torch.load(os.path.join(single_run_dir(tmp_path), "resume.pt"), weights_only=False)
    assert state["global_step"] == 120
