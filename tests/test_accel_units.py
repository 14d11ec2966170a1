"""Unit tests of td3_accel_mujoco.py's building blocks: context windows and buffers, the transformer's padding
mask, soft updates, the TD3 step and the transformer's BC / critic-ascent training. In-process, no environment."""

import copy
import dataclasses
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import td3_accel_mujoco as m  # noqa: E402

OBS_DIM = 3


def fake_obs(ep: int, t: int) -> np.ndarray:
    """An observation that encodes (episode, step); never all-zero, so it cannot be mistaken for padding."""
    return np.array([ep + 1, t, 100 * (ep + 1) + t], dtype=np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small tensors: one thread is as fast and does not fight over the 2 shared cores; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_args(**kw) -> m.Args:
    return dataclasses.replace(m.Args(), **kw)


# ---------------------------------------------------------------------------------------------------------------
# EpisodeWindow
def test_episode_window_reset_pads_with_zeros_and_masks():
    w = m.EpisodeWindow(4, OBS_DIM)
    w.reset(fake_obs(0, 0))
    np.testing.assert_array_equal(w.valid, [False, False, False, True])
    np.testing.assert_array_equal(w.obs[:3], np.zeros((3, OBS_DIM)))
    np.testing.assert_array_equal(w.obs[3], fake_obs(0, 0))


def test_episode_window_push_shifts_and_keeps_last_k():
    w = m.EpisodeWindow(3, OBS_DIM)
    w.reset(fake_obs(0, 0))
    w.push(fake_obs(0, 1))
    np.testing.assert_array_equal(w.valid, [False, True, True])
    np.testing.assert_array_equal(w.obs, [np.zeros(OBS_DIM), fake_obs(0, 0), fake_obs(0, 1)])
    for t in range(2, 6):
        w.push(fake_obs(0, t))
    np.testing.assert_array_equal(w.valid, [True, True, True])
    np.testing.assert_array_equal(w.obs, [fake_obs(0, 3), fake_obs(0, 4), fake_obs(0, 5)])


def test_episode_window_reset_never_mixes_episodes():
    w = m.EpisodeWindow(3, OBS_DIM)
    w.reset(fake_obs(0, 0))
    for t in range(1, 5):
        w.push(fake_obs(0, t))
    w.reset(fake_obs(1, 0))  # new episode: nothing of episode 0 may survive
    np.testing.assert_array_equal(w.valid, [False, False, True])
    np.testing.assert_array_equal(w.obs, [np.zeros(OBS_DIM), np.zeros(OBS_DIM), fake_obs(1, 0)])
    w.push(fake_obs(1, 1))
    np.testing.assert_array_equal(w.valid, [False, True, True])
    np.testing.assert_array_equal(w.obs, [np.zeros(OBS_DIM), fake_obs(1, 0), fake_obs(1, 1)])


def test_episode_window_context_len_one():
    w = m.EpisodeWindow(1, OBS_DIM)
    w.reset(fake_obs(0, 0))
    w.push(fake_obs(0, 1))
    np.testing.assert_array_equal(w.valid, [True])
    np.testing.assert_array_equal(w.obs, [fake_obs(0, 1)])


# ---------------------------------------------------------------------------------------------------------------
# Oracle for windows: the last K observations of the same episode, left-padded with zeros (invalid)
def expected_window(ep: int, t: int, k: int, alive=lambda ep, t: True):
    obs = np.zeros((k, OBS_DIM), dtype=np.float32)
    valid = np.zeros(k, dtype=bool)
    for j in range(k):
        s = t - (k - 1 - j)
        if s >= 0 and alive(ep, s):
            obs[j], valid[j] = fake_obs(ep, s), True
    return obs, valid


# Episodes of the hand-made sequence: (length, how it ends); the last one is still running
EPISODES = [(4, "terminated"), (5, "truncated"), (2, "terminated"), (6, None)]


def fill_like_main_loop(rb: m.ReplayBuffer, k: int, trajectory: m.TrajectoryBuffer | None = None):
    """A hand-made fill of an EpisodeWindow, T and a replay buffer: known data for the buffers' unit tests (what
    main() itself stores is checked in test_accel_loop.py). Returns the list of transitions (ep, t, terminated,
    truncated) in insertion order and the windows seen while acting."""
    window = m.EpisodeWindow(k, OBS_DIM)
    transitions, acting_windows = [], []
    for ep, (length, end) in enumerate(EPISODES):
        window.reset(fake_obs(ep, 0))
        for t in range(length):
            terminated = end == "terminated" and t == length - 1
            truncated = end == "truncated" and t == length - 1
            action = np.array([ep, t], dtype=np.float32)
            acting_windows.append((window.obs.copy(), window.valid.copy()))
            if trajectory is not None:
                trajectory.add(window.obs, window.valid, action)
            # the true next observation, also at a termination or time-limit truncation
            rb.add(fake_obs(ep, t), fake_obs(ep, t + 1), action, float(10 * ep + t), terminated, t)
            transitions.append((ep, t, terminated, truncated))
            if not (terminated or truncated):
                window.push(fake_obs(ep, t + 1))
    return transitions, acting_windows


def test_trajectory_buffer_contents_follow_episode_windows():
    k = 3
    trajectory = m.TrajectoryBuffer(100, k, OBS_DIM, 2)
    transitions, _ = fill_like_main_loop(m.ReplayBuffer(100, OBS_DIM, 2, "cpu"), k, trajectory)
    assert len(trajectory) == len(transitions)
    for i, (ep, t, _, _) in enumerate(transitions):
        obs, valid = expected_window(ep, t, k)
        np.testing.assert_array_equal(trajectory.windows[i], obs, err_msg=f"T window of episode {ep} step {t}")
        np.testing.assert_array_equal(trajectory.valids[i], valid)
        np.testing.assert_array_equal(trajectory.actions[i], [ep, t])
    trajectory.clear()
    assert len(trajectory) == 0


def test_trajectory_buffer_keeps_only_the_most_recent_samples():
    k, capacity = 2, 5
    trajectory = m.TrajectoryBuffer(capacity, k, OBS_DIM, 2)
    transitions, _ = fill_like_main_loop(m.ReplayBuffer(100, OBS_DIM, 2, "cpu"), k, trajectory)
    assert len(transitions) > capacity and len(trajectory) == capacity
    held = {tuple(a) for a in trajectory.actions}
    assert held == {(ep, t) for ep, t, _, _ in transitions[-capacity:]}
    np.random.seed(0)
    windows, valids, actions = trajectory.sample(500, "cpu")
    assert {tuple(a) for a in actions.tolist()} == held  # every held sample can be drawn, nothing else
    for w, v, (ep, t) in zip(windows.numpy(), valids.numpy(), actions.int().tolist(), strict=True):
        obs, valid = expected_window(ep, t, k)
        np.testing.assert_array_equal(w, obs)
        np.testing.assert_array_equal(v, valid)
    trajectory.clear()
    trajectory.add(*expected_window(0, 0, k), np.array([7.0, 7.0]))
    assert trajectory.sample(50, "cpu")[2].unique().tolist() == [7.0]  # nothing from before the clear


def test_trajectory_buffer_stores_copies():
    trajectory = m.TrajectoryBuffer(10, 2, OBS_DIM, 2)
    w = m.EpisodeWindow(2, OBS_DIM)
    w.reset(fake_obs(0, 0))
    action = np.array([0.5, -0.5], dtype=np.float32)
    trajectory.add(w.obs, w.valid, action)
    w.push(fake_obs(0, 1))  # in-place shift of the live window must not alter what T holds
    action[:] = 9.0
    np.testing.assert_array_equal(trajectory.windows[0], [np.zeros(OBS_DIM), fake_obs(0, 0)])
    np.testing.assert_array_equal(trajectory.valids[0], [False, True])
    np.testing.assert_array_equal(trajectory.actions[0], [0.5, -0.5])


# ---------------------------------------------------------------------------------------------------------------
# ReplayBuffer windows
@pytest.mark.parametrize("k", [1, 3])
def test_replay_windows_no_wrap_match_oracle(k):
    rb = m.ReplayBuffer(100, OBS_DIM, 2, "cpu")
    transitions, _ = fill_like_main_loop(rb, k)
    idx = np.arange(len(transitions))
    window, valid, next_window, next_valid = rb.windows(idx, k)
    assert window.shape == next_window.shape == (len(idx), k, OBS_DIM)
    assert valid.dtype == next_valid.dtype == torch.bool
    for i, (ep, t, terminated, _) in enumerate(transitions):
        obs, v = expected_window(ep, t, k)
        nobs, nv = expected_window(ep, t + 1, k)  # s' window: shifted by one, ending in the true next obs
        np.testing.assert_array_equal(window[i], obs, err_msg=f"window of s, episode {ep} step {t}")
        np.testing.assert_array_equal(valid[i], v, err_msg=f"valid of s, episode {ep} step {t}")
        np.testing.assert_array_equal(next_window[i], nobs, err_msg=f"window of s', episode {ep} step {t}")
        np.testing.assert_array_equal(next_valid[i], nv, err_msg=f"valid of s', episode {ep} step {t}")
        assert rb.terminations[i] == float(terminated)


def test_replay_windows_hand_checked_boundaries():
    """The cases spelled out: episode start, middle, termination, time-limit truncation, first step after."""
    k = 3
    rb = m.ReplayBuffer(100, OBS_DIM, 2, "cpu")
    fill_like_main_loop(rb, k)
    z = np.zeros(OBS_DIM)
    # index layout: episode 0 -> 0..3 (terminated at 3), episode 1 -> 4..8 (truncated at 8), episode 2 -> 9..10
    w, v, nw, nv = rb.windows(np.array([0, 2, 3, 4, 8, 9]), k)
    # episode 0 start: only s valid; s' window holds s and s'
    np.testing.assert_array_equal(w[0], [z, z, fake_obs(0, 0)])
    np.testing.assert_array_equal(v[0], [False, False, True])
    np.testing.assert_array_equal(nw[0], [z, fake_obs(0, 0), fake_obs(0, 1)])
    np.testing.assert_array_equal(nv[0], [False, True, True])
    # middle of episode 0
    np.testing.assert_array_equal(w[1], [fake_obs(0, 0), fake_obs(0, 1), fake_obs(0, 2)])
    np.testing.assert_array_equal(v[1], [True, True, True])
    # termination: s' window ends with the true final observation
    np.testing.assert_array_equal(nw[2], [fake_obs(0, 2), fake_obs(0, 3), fake_obs(0, 4)])
    np.testing.assert_array_equal(nv[2], [True, True, True])
    # first step of episode 1: nothing of episode 0 leaks in although it is the previous buffer entry
    np.testing.assert_array_equal(w[3], [z, z, fake_obs(1, 0)])
    np.testing.assert_array_equal(v[3], [False, False, True])
    # time-limit truncation: s' window ends with the true final observation, not the next episode's first
    np.testing.assert_array_equal(nw[4], [fake_obs(1, 3), fake_obs(1, 4), fake_obs(1, 5)])
    # first step of episode 2 after a truncation
    np.testing.assert_array_equal(w[5], [z, z, fake_obs(2, 0)])
    np.testing.assert_array_equal(v[5], [False, False, True])
    # terminations flag only the terminating transitions (indices 3 and 10), not the truncation (8)
    np.testing.assert_array_equal(np.nonzero(np.asarray(rb.terminations[: rb.count]))[0], [3, 10])


@pytest.mark.parametrize("size", [5, 6, 7, 9])
def test_replay_windows_after_wrap_mask_overwritten_entries(size):
    k = 4
    rb = m.ReplayBuffer(size, OBS_DIM, 2, "cpu")
    transitions, _ = fill_like_main_loop(rb, k)
    n = len(transitions)
    assert n > size and rb.count == size and rb.ptr == n % size
    alive_set = {(ep, t) for ep, t, _, _ in transitions[n - size :]}
    alive = lambda ep, t: (ep, t) in alive_set
    idx = np.arange(size)
    window, valid, next_window, next_valid = rb.windows(idx, k)
    for i in idx:
        g = n - size + (i - rb.ptr) % size  # global position of the transition stored at index i
        ep, t, _, _ = transitions[g]
        obs, v = expected_window(ep, t, k, alive)
        np.testing.assert_array_equal(valid[i], v, err_msg=f"size {size}, index {i}: episode {ep} step {t}")
        np.testing.assert_array_equal(window[i], obs, err_msg=f"size {size}, index {i}: episode {ep} step {t}")
        # s' window: the window of s shifted by one, ending in the true next observation
        np.testing.assert_array_equal(next_window[i, :-1], obs[1:])
        np.testing.assert_array_equal(next_window[i, -1], fake_obs(ep, t + 1))
        np.testing.assert_array_equal(next_valid[i], np.append(v[1:], True))


def test_replay_windows_wrap_masks_newer_entry_in_old_slot():
    """Size 5, one long episode of 8 steps: slot 2 now holds step 7, so the window of step 4 (slot 4) must not
    read it as its 'two steps back' observation (step 2 was overwritten), although episode_step 4 >= 2."""
    rb = m.ReplayBuffer(5, OBS_DIM, 1, "cpu")
    for t in range(8):
        rb.add(fake_obs(0, t), fake_obs(0, t + 1), [0.0], 0.0, False, t)
    z = np.zeros(OBS_DIM)
    w, v, _, _ = rb.windows(np.array([3, 4, 0]), 3)  # slots holding steps 3, 4, 5
    np.testing.assert_array_equal(v, [[False, False, True], [False, True, True], [True, True, True]])
    np.testing.assert_array_equal(w[0], [z, z, fake_obs(0, 3)])
    np.testing.assert_array_equal(w[1], [z, fake_obs(0, 3), fake_obs(0, 4)])
    np.testing.assert_array_equal(w[2], [fake_obs(0, 3), fake_obs(0, 4), fake_obs(0, 5)])


def test_replay_windows_match_windows_seen_while_acting():
    """The windows the learner rebuilds from the replay buffer are exactly those the actor acted on."""
    k = 3
    rb = m.ReplayBuffer(100, OBS_DIM, 2, "cpu")
    transitions, acting = fill_like_main_loop(rb, k)
    window, valid, _, _ = rb.windows(np.arange(len(transitions)), k)
    for i, (obs, v) in enumerate(acting):
        np.testing.assert_array_equal(window[i], obs)
        np.testing.assert_array_equal(valid[i], v)


def test_replay_sample_shapes_and_consistency():
    np.random.seed(0)
    k = 3
    rb = m.ReplayBuffer(8, OBS_DIM, 2, "cpu")
    fill_like_main_loop(rb, k)
    data = rb.sample(64, k)
    assert data["obs"].shape == (64, OBS_DIM) and data["actions"].shape == (64, 2)
    assert data["rewards"].shape == data["terminations"].shape == (64, 1)
    assert data["window"].shape == data["next_window"].shape == (64, k, OBS_DIM)
    assert data["valid"].dtype == torch.bool and bool(data["valid"][:, -1].all())
    assert torch.equal(data["window"][:, -1], data["obs"])
    assert torch.equal(data["next_window"][:, -1], data["next_obs"])
    assert bool(data["next_valid"].all(dim=1).ge(data["valid"].all(dim=1)).all())
    # padding is zero everywhere it is invalid
    assert float(data["window"].abs().sum(-1)[~data["valid"]].sum()) == 0.0
    assert float(data["next_window"].abs().sum(-1)[~data["next_valid"]].sum()) == 0.0
    assert "window" not in rb.sample(4)


@pytest.mark.parametrize("n", [5, 12, 30])
def test_recent_transitions_prefill_keeps_windows(n):
    """recent() then extend() (the stage-2 prefill): the same transitions in the same order, and every window of
    s and s' that the source could rebuild for them rebuilds the same, except positions older than what was copied."""
    k, src = 3, m.ReplayBuffer(12, OBS_DIM, 2, "cpu")  # 17 transitions into 12 slots: the source has wrapped
    fill_like_main_loop(src, k)
    recent = src.recent(n)
    assert len(recent["obs"]) == min(n, src.count)
    dst = m.ReplayBuffer(8, OBS_DIM, 2, "cpu")
    dst.extend(recent)
    assert dst.count == min(n, src.count, 8)
    kept = {key: v[len(v) - dst.count :] for key, v in recent.items()}
    held = dst.recent(dst.count)
    for key in kept:
        np.testing.assert_array_equal(held[key], kept[key], key)
    src_idx = (src.ptr - dst.count + np.arange(dst.count)) % src.size
    dst_idx = (dst.ptr - dst.count + np.arange(dst.count)) % dst.size
    w_src, v_src, nw_src, _ = src.windows(src_idx, k)
    w_dst, v_dst, nw_dst, _ = dst.windows(dst_idx, k)
    # a position is valid in the copy if it was in the source and is among the copied transitions
    copied = v_src & (np.arange(dst.count)[:, None] - np.arange(k - 1, -1, -1)[None, :] >= 0)
    np.testing.assert_array_equal(v_dst, copied)
    np.testing.assert_array_equal(w_dst, w_src * copied[..., None])
    np.testing.assert_array_equal(nw_dst[:, -1], nw_src[:, -1])


def test_replay_sample_with_one_transition():
    rb = m.ReplayBuffer(10, OBS_DIM, 1, "cpu")
    rb.add(fake_obs(0, 0), fake_obs(0, 1), [0.3], 1.0, False, 0)
    data = rb.sample(16, 2)  # stage 2 learns from its first transition: sampling with replacement
    assert data["obs"].shape == (16, OBS_DIM)
    assert torch.equal(data["obs"], torch.as_tensor(np.tile(fake_obs(0, 0), (16, 1))))


# ---------------------------------------------------------------------------------------------------------------
# Transformer actor
LOW = np.array([-3.0, 0.0], dtype=np.float32)
HIGH = np.array([1.0, 2.0], dtype=np.float32)


def make_transformer(k=4, num_layers=1, obs_dim=5, dim_model=32, seed=0):
    torch.manual_seed(seed)
    args = make_args(context_len=k, num_layers=num_layers, num_heads=2, dim_model=dim_model, dim_feedforward=64)
    net = m.make_transformer(obs_dim, LOW, HIGH, args)
    net.eval()
    return net


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("grad", [False, True])
def test_transformer_ignores_padded_positions(num_layers, grad):
    k, obs_dim = 4, 5
    net = make_transformer(k, num_layers, obs_dim)
    g = torch.Generator().manual_seed(1)
    window = torch.randn(8, k, obs_dim, generator=g)
    valid = torch.ones(8, k, dtype=torch.bool)
    for b in range(8):
        valid[b, : b % k] = False  # 0..3 padded positions at the left
    window = window * valid[..., None]
    altered = window.clone()
    altered[~valid] = torch.randn(int((~valid).sum()), obs_dim, generator=g) * 10.0
    with torch.set_grad_enabled(grad):
        a = net(window, valid)
        b = net(altered, valid)
    assert int((~valid).sum()) > 0
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_transformer_reads_valid_earlier_positions(num_layers):
    k, obs_dim = 4, 5
    net = make_transformer(k, num_layers, obs_dim)
    g = torch.Generator().manual_seed(2)
    window = torch.randn(6, k, obs_dim, generator=g)
    valid = torch.ones(6, k, dtype=torch.bool)
    valid[:3, 0] = False
    window = window * valid[..., None]
    altered = window.clone()
    altered[:, 1] += torch.randn(6, obs_dim, generator=g) * 3.0  # position 1 is valid in every row
    with torch.no_grad():
        diff = (net(window, valid) - net(altered, valid)).abs().amax(dim=1)
    assert bool((diff > 1e-4).all()), f"valid earlier positions must influence the action, got diffs {diff}"


def test_transformer_output_within_action_bounds():
    net = make_transformer()
    g = torch.Generator().manual_seed(3)
    window = torch.randn(256, 4, 5, generator=g) * 100.0
    valid = torch.rand(256, 4, generator=g) > 0.5
    valid[:, -1] = True
    with torch.no_grad():
        a = net(window, valid)
    assert a.shape == (256, 2)
    assert bool((a >= torch.as_tensor(LOW)).all()) and bool((a <= torch.as_tensor(HIGH)).all())
    assert float(a[:, 0].min()) < -2.5 and float(a[:, 0].max()) > 0.5  # spans the range, not stuck at the bias


# ---------------------------------------------------------------------------------------------------------------
# soft_update
@pytest.mark.parametrize("tau", [0.0, 0.005, 0.3, 1.0])
def test_soft_update_arithmetic(tau):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    before = [p.detach().clone() for p in target.parameters()]
    m.soft_update(net, target, tau)
    for p, tp, b in zip(net.parameters(), target.parameters(), before, strict=True):
        torch.testing.assert_close(tp, tau * p + (1 - tau) * b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# td3_update
def td3_setup(policy_frequency=2, seed=0, n=64, obs_dim=4):
    torch.manual_seed(seed)
    low, high = np.array([-2.0, -1.0], dtype=np.float32), np.array([2.0, 1.0], dtype=np.float32)
    actor, actor_target = m.Actor(obs_dim, low, high), m.Actor(obs_dim, low, high)
    qf1, qf2, qf1_target, qf2_target = (m.QNetwork(obs_dim, 2) for _ in range(4))
    # targets deliberately differ from the online nets (as after some training), to check which one is used
    q_opt = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=1e-3)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed + 1)
    data = {
        "obs": torch.randn(n, obs_dim, generator=g),
        "next_obs": torch.randn(n, obs_dim, generator=g),
        "actions": torch.rand(n, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(n, 1, generator=g),
        "terminations": (torch.rand(n, 1, generator=g) < 0.3).float(),
    }
    args = make_args(policy_frequency=policy_frequency, policy_noise=0.0, gamma=0.9, tau=0.1)
    nets = (actor, actor_target, qf1, qf2, qf1_target, qf2_target, q_opt, actor_opt)
    return data, nets, args


def td_target(data, actor_target, qf1_target, qf2_target, gamma):
    with torch.no_grad():
        na = actor_target(data["next_obs"])
        nq = torch.min(qf1_target(data["next_obs"], na), qf2_target(data["next_obs"], na))
        return data["rewards"] + (1 - data["terminations"]) * gamma * nq


def test_td3_update_critic_loss_is_td_error_and_decreases():
    data, nets, args = td3_setup(policy_frequency=2)
    actor, actor_target, qf1, qf2, qf1_target, qf2_target, q_opt, actor_opt = nets
    target = td_target(data, actor_target, qf1_target, qf2_target, args.gamma)
    with torch.no_grad():
        before1 = F.mse_loss(qf1(data["obs"], data["actions"]), target)
        before2 = F.mse_loss(qf2(data["obs"], data["actions"]), target)
    actor_before = copy.deepcopy(actor.state_dict())
    targets_before = copy.deepcopy([n.state_dict() for n in (actor_target, qf1_target, qf2_target)])
    losses = m.td3_update(1, data, (data["obs"],), (data["next_obs"],), *nets, args)
    assert set(losses) == {"losses/qf1_loss", "losses/qf2_loss"}  # step 1 % 2 != 0: no actor update
    # the reported losses are the TD errors against r + (1 - terminated) * gamma * min(Q1', Q2')(s', pi'(s'))
    torch.testing.assert_close(losses["losses/qf1_loss"], before1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["losses/qf2_loss"], before2, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        after1 = F.mse_loss(qf1(data["obs"], data["actions"]), target)
        after2 = F.mse_loss(qf2(data["obs"], data["actions"]), target)
    assert float(after1) < float(before1) and float(after2) < float(before2)
    # no actor step and no target update on a non-policy step
    for k, v in actor.state_dict().items():
        assert torch.equal(v, actor_before[k])
    for net, sd in zip((actor_target, qf1_target, qf2_target), targets_before, strict=True):
        for k, v in net.state_dict().items():
            assert torch.equal(v, sd[k])


def test_td3_update_terminations_cut_bootstrap():
    """With terminations all 1 the critic's target is the reward alone; with 0 it bootstraps."""
    data, nets, args = td3_setup(policy_frequency=2)
    qf1 = nets[2]
    with torch.no_grad():
        q = qf1(data["obs"], data["actions"])
    done = dict(data, terminations=torch.ones_like(data["terminations"]))
    losses = m.td3_update(1, done, (done["obs"],), (done["next_obs"],), *copy.deepcopy(nets), args)
    torch.testing.assert_close(losses["losses/qf1_loss"], F.mse_loss(q, data["rewards"]), rtol=1e-5, atol=1e-6)
    alive = dict(data, terminations=torch.zeros_like(data["terminations"]))
    losses = m.td3_update(1, alive, (alive["obs"],), (alive["next_obs"],), *copy.deepcopy(nets), args)
    assert not torch.allclose(losses["losses/qf1_loss"], F.mse_loss(q, data["rewards"]))


def test_td3_update_actor_step_raises_q_and_soft_updates_targets():
    data, nets, args = td3_setup(policy_frequency=1)
    actor, actor_target, qf1, qf2, qf1_target, qf2_target, q_opt, actor_opt = nets
    old_actor = copy.deepcopy(actor)
    old_targets = [copy.deepcopy(n) for n in (actor_target, qf1_target, qf2_target)]
    losses = m.td3_update(1, data, (data["obs"],), (data["next_obs"],), *nets, args)
    assert set(losses) == {"losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss"}
    with torch.no_grad():
        q_new = qf1(data["obs"], actor(data["obs"])).mean()
        q_old = qf1(data["obs"], old_actor(data["obs"])).mean()
        # the actor loss is -Q1 of the actor's actions under the freshly updated critic, before the actor step
        torch.testing.assert_close(losses["losses/actor_loss"], -q_old, rtol=1e-5, atol=1e-6)
    assert float(q_new) > float(q_old)
    # targets move towards the updated online nets: theta' = tau * theta + (1 - tau) * theta'_old
    for net, target, old in zip((actor, qf1, qf2), (actor_target, qf1_target, qf2_target), old_targets, strict=True):
        for p, tp, op in zip(net.parameters(), target.parameters(), old.parameters(), strict=True):
            torch.testing.assert_close(tp, args.tau * p + (1 - args.tau) * op, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# train_transformer (Algorithms 2 and 3)
def bc_data(n=64, k=3, obs_dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    windows = torch.randn(n, k, obs_dim, generator=g)
    valid = torch.ones(n, k, dtype=torch.bool)
    for i in range(n):
        valid[i, : i % k] = False
    windows = windows * valid[..., None]
    w_true = torch.randn(obs_dim, 2, generator=g)
    actions = torch.tanh(windows[:, -1] @ w_true) * 0.8  # a smooth target in the bounds [-1, 1]
    return windows.numpy(), valid.numpy(), actions.numpy()


def fill(trajectory, windows, valids, actions):
    for w, v, a in zip(windows, valids, actions, strict=True):
        trajectory.add(w, v, a)


def bc_setup(seed=0, **kw):
    torch.manual_seed(seed)
    low, high = -np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float32)
    args = make_args(context_len=3, dim_model=32, dim_feedforward=64, num_heads=2, dropout=0.0, batch_size=32,
                     bc_updates=2, learning_rate=1e-3, **kw)  # fmt: skip
    transformer = m.make_transformer(5, low, high, args)
    target = m.make_transformer(5, low, high, args)
    target.load_state_dict(transformer.state_dict())
    transformer.eval()
    opt = torch.optim.Adam(transformer.parameters(), lr=args.learning_rate)
    qf1 = m.QNetwork(5, 2)
    actor = m.Actor(5, low, high)
    return args, transformer, target, opt, qf1, actor


def new_trajectory(n=64):
    return m.TrajectoryBuffer(n, 3, 5, 2)


@pytest.mark.parametrize("bc_clear", [False, True])
def test_train_transformer_reports_bc_loss_and_empties_T_only_with_bc_clear(bc_clear):
    args, transformer, target, opt, qf1, actor = bc_setup(bc_clear=bc_clear)
    trajectory = new_trajectory()
    fill(trajectory, *bc_data())
    before = copy.deepcopy(target.state_dict())
    out = m.train_transformer(trajectory, transformer, target, opt, qf1, actor, args, "cpu")
    assert len(trajectory) == (0 if bc_clear else 64)
    assert set(out) == {"losses/bc_loss"}
    assert out["losses/bc_loss"].ndim == 0 and torch.isfinite(out["losses/bc_loss"])
    assert not transformer.training  # back in eval mode for acting
    # the target transformer is soft-updated (it moved, but stays close to its old weights)
    moved = [not torch.equal(v, before[k]) for k, v in target.state_dict().items() if v.is_floating_point()]
    assert any(moved)


def test_bc_loss_decreases_on_fixed_data():
    args, transformer, target, opt, qf1, actor = bc_setup(bc_target="behavior")
    data = bc_data()
    trajectory = new_trajectory()
    fill(trajectory, *data)
    losses = [float(m.train_transformer(trajectory, transformer, target, opt, qf1, actor, args, "cpu")[
        "losses/bc_loss"]) for _ in range(20)]  # fmt: skip
    assert losses[-1] < 0.2 * losses[0], f"BC loss did not drop: {losses[0]:.4f} -> {losses[-1]:.4f}"
    with torch.no_grad():
        final = F.mse_loss(transformer(torch.as_tensor(data[0]), torch.as_tensor(data[1])), torch.as_tensor(data[2]))
    assert float(final) < 0.2 * losses[0]


def q_of_transformer(qf1, transformer, windows, valids):
    with torch.no_grad():
        w = torch.as_tensor(windows)
        return float(qf1(w[:, -1], transformer(w, torch.as_tensor(valids))).mean())


def test_critic_ascent_raises_q1():
    windows, valids, _ = bc_data()
    results = {}
    for ascent in (False, True):
        args, transformer, target, opt, qf1, actor = bc_setup(critic_ascent=ascent, bc_target="behavior")
        with torch.no_grad():
            qf1.fc3.weight.mul_(100.0)  # a critic with a clear slope in the action
            # BC targets = the transformer's own initial actions: BC alone has zero loss and stays put
            actions = transformer(torch.as_tensor(windows), torch.as_tensor(valids)).numpy()
        q0 = q_of_transformer(qf1, transformer, windows, valids)
        qf1_before = copy.deepcopy(qf1.state_dict())
        trajectory = new_trajectory()
        fill(trajectory, windows, valids, actions)
        reported = []
        for _ in range(10):
            out = m.train_transformer(trajectory, transformer, target, opt, qf1, actor, args, "cpu")
            assert ("losses/critic_ascent_q" in out) == ascent
            if ascent:
                reported.append(float(out["losses/critic_ascent_q"]))
        for k, v in qf1.state_dict().items():  # the critic is only read, never stepped
            assert torch.equal(v, qf1_before[k])
        results[ascent] = (q0, q_of_transformer(qf1, transformer, windows, valids), reported)
    q0, q_ascent, reported = results[True]
    _, q_bc, _ = results[False]
    assert q_bc == pytest.approx(q0, abs=1e-4)
    assert q_ascent > q0 + 1.0, f"critic ascent did not raise Q1: {q0:.4f} -> {q_ascent:.4f}"
    assert all(np.isfinite(reported)) and reported[-1] > reported[0] + 1.0


def test_bc_target_actor_relabels_with_accelerator_actor():
    windows, valids, _ = bc_data()
    stored = np.full((len(windows), 2), -0.9, dtype=np.float32)  # what the accelerator "executed"
    errors = {}
    for bc_target in ("behavior", "actor"):
        args, transformer, target, opt, qf1, actor = bc_setup(bc_target=bc_target)
        trajectory = new_trajectory()
        fill(trajectory, windows, valids, stored)
        for _ in range(10):
            m.train_transformer(trajectory, transformer, target, opt, qf1, actor, args, "cpu")
        with torch.no_grad():
            w = torch.as_tensor(windows)
            out = transformer(w, torch.as_tensor(valids))
            to_actor = float(F.mse_loss(out, actor(w[:, -1])))
            to_stored = float(F.mse_loss(out, torch.as_tensor(stored)))
            gap = float(F.mse_loss(actor(w[:, -1]), torch.as_tensor(stored)))
        errors[bc_target] = (to_actor, to_stored, gap)
    to_actor, to_stored, gap = errors["actor"]
    assert gap > 0.3  # the two targets are far apart, so the test can tell which one was learned
    assert to_actor < 0.1 * gap and to_stored > 0.5 * gap
    to_actor, to_stored, gap = errors["behavior"]
    assert to_stored < 0.1 * gap and to_actor > 0.5 * gap


class CountingActor(torch.nn.Module):
    """The accelerator's actor, counting its forward passes."""

    def __init__(self, actor):
        super().__init__()
        self.actor, self.calls = actor, 0

    def forward(self, x):
        self.calls += 1
        return self.actor(x)


def store_setup(**kw):
    """An episode window two steps in (one padding position), T, and the accelerator's actor."""
    args, *_, actor = bc_setup(**kw)
    window = m.EpisodeWindow(3, 5)
    window.reset(np.arange(5, dtype=np.float32))
    window.push(np.arange(5, 10, dtype=np.float32))
    return args, window, new_trajectory(4), CountingActor(actor)


@pytest.mark.parametrize("state_noise", [0.0, 0.1])
def test_store_in_T_behavior_keeps_the_executed_action_with_or_without_state_noise(state_noise):
    """--bc-target behavior is Algorithm 1 line 7: the executed action, whatever noise the stored state carries."""
    args, window, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    executed = np.array([0.9, -0.9], dtype=np.float32)
    m.store_in_T(T, window, executed, actor, args, "cpu")
    np.testing.assert_array_equal(T.actions[0], executed)
    assert actor.calls == 0
    np.testing.assert_array_equal(T.valids[0], window.valid)
    assert np.all(T.windows[0][~window.valid] == 0)  # padding stays zero
    diff = (T.windows[0] - window.obs)[window.valid]
    assert (np.abs(diff).max() > 0) == (state_noise > 0)


@pytest.mark.parametrize("state_noise", [0.0, 0.1])
def test_store_in_T_behavior_in_a_dagger_episode_labels_with_the_accelerator_on_the_true_state(state_noise):
    args, window, T, actor = store_setup(bc_target="behavior", bc_state_noise=state_noise)
    m.store_in_T(T, window, np.array([0.9, -0.9], dtype=np.float32), actor, args, "cpu", dagger=True)
    np.testing.assert_allclose(T.actions[0], m.mlp_act(actor.actor, window.obs[-1], "cpu"), rtol=1e-6)
    assert actor.calls == 1


@pytest.mark.parametrize("dagger", [False, True])
def test_store_in_T_actor_target_runs_no_forward_pass(dagger):
    """With --bc-target actor every label is recomputed when the transformer trains: storing one is free."""
    args, window, T, actor = store_setup(bc_target="actor", bc_state_noise=0.1)
    m.store_in_T(T, window, np.array([0.9, -0.9], dtype=np.float32), actor, args, "cpu", dagger=dagger)
    assert actor.calls == 0 and len(T) == 1
    assert np.abs((T.windows[0] - window.obs)[window.valid]).max() > 0  # the state noise of section 3.1


@pytest.mark.parametrize(("bc_source", "expected"), [("train", True), ("eval", False)])
def test_dagger_only_with_bc_source_train(bc_source, expected):
    args = make_args(bc_dagger=1.0, bc_source=bc_source, learning_starts=10)
    assert m.draw_dagger(1, 10, args) == expected
    assert not m.draw_dagger(1, 9, args) and not m.draw_dagger(2, 10, args)


# ---------------------------------------------------------------------------------------------------------------
# Checks of arguments and checkpoints (in-process; the CLI's exit codes are tested in test_accel_e2e.py)
@pytest.mark.parametrize(
    "kw",
    [
        dict(context_len=0),
        dict(accel_steps=-1),
        dict(finetune_steps=-5),
        dict(learning_starts=-1),
        dict(buffer_size=16, batch_size=32),
        dict(accel_buffer_size=16, batch_size=32),
        dict(dim_model=30, num_heads=4),
        dict(dropout=1.0),
        dict(gamma=1.5),
        dict(tau=-0.1),
        dict(learning_rate=-1e-3),
        dict(learning_rate=1e38),
        dict(learning_rate=float("nan")),
        dict(exploration_noise=float("nan")),
        dict(bc_state_noise=-0.1),
        dict(batch_size=0),
        dict(bc_batch_size=0),
        dict(bc_buffer_size=0),
        dict(critic_warmup=-1),
        dict(num_threads=0),
        dict(accelerated_checkpoint="/nonexistent/accelerated.pt"),
    ],
)
def test_validate_args_rejects(kw):
    with pytest.raises(m.UsageError) as e:
        m.validate_args(make_args(**kw))
    assert "\n" not in str(e.value)


def test_defaults_follow_table_1():
    """The paper's Table 1, MuJoCo columns (accelerator; transformer), transcribed once here."""
    args = m.Args()
    accelerator = dict(gamma=0.99, tau=0.005, policy_noise=0.2, noise_clip=0.5, exploration_noise=0.1, batch_size=256,
                       learning_rate=3e-4, accel_buffer_size=500_000, learning_starts=25_000)  # fmt: skip
    transformer = dict(buffer_size=100_000, num_layers=1, num_heads=2, dim_model=256, dim_feedforward=512, dropout=0.05,
                       context_len=3)  # fmt: skip
    assert {k: getattr(args, k) for k in accelerator} == accelerator
    assert {k: getattr(args, k) for k in transformer} == transformer
    actor, qf = m.Actor(4, -np.ones(2), np.ones(2)), m.QNetwork(4, 2)  # 2 layers of 256 (MLP "dim feedforward")
    assert [actor.fc1.out_features, actor.fc2.out_features, qf.fc1.out_features, qf.fc2.out_features] == [256] * 4


def test_validate_args_accepts_defaults_and_zero_budgets():
    m.validate_args(make_args())
    m.validate_args(make_args(accel_steps=0, finetune_steps=0, learning_starts=0, buffer_size=256))


def fake_checkpoint(args: m.Args, obs_dim=4, act_dim=1) -> dict:
    low, high = -np.ones(act_dim, dtype=np.float32), np.ones(act_dim, dtype=np.float32)
    return {"stage": 1, "args": dataclasses.asdict(args), "obs_dim": obs_dim, "act_dim": act_dim, "global_step": 10,
            "transformer": m.make_transformer(obs_dim, low, high, args).state_dict(),
            "qf1": m.QNetwork(obs_dim, act_dim).state_dict()}  # fmt: skip


def test_save_checkpoint_is_atomic_and_round_trips(tmp_path):
    args = make_args(env_id="InvertedPendulum-v5", dim_model=16, dim_feedforward=32)
    payload = fake_checkpoint(args)
    path = str(tmp_path / "accelerated.pt")
    m.save_checkpoint(path, payload)
    assert os.listdir(tmp_path) == ["accelerated.pt"]  # no temporary file left behind
    loaded = m.load_checkpoint(path, args, 4, 1)
    assert loaded["global_step"] == 10
    for k, v in payload["transformer"].items():
        assert torch.equal(loaded["transformer"][k], v)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(env_id="Hopper-v5"), "was made for InvertedPendulum-v5"),
        (dict(dim_model=32), "--dim-model 16"),
        (dict(context_len=5), "--context-len 3"),
        (dict(num_layers=2), "--num-layers 1"),
        (dict(num_heads=4), "--num-heads 2"),
        (dict(dim_feedforward=64), "--dim-feedforward 32"),
    ],
)
def test_load_checkpoint_rejects_mismatch(tmp_path, change, message):
    args = make_args(env_id="InvertedPendulum-v5", dim_model=16, dim_feedforward=32)
    path = str(tmp_path / "accelerated.pt")
    m.save_checkpoint(path, fake_checkpoint(args))
    with pytest.raises(m.UsageError, match=message):
        m.load_checkpoint(path, dataclasses.replace(args, **change), 4, 1)


def test_load_checkpoint_rejects_dims_and_foreign_files(tmp_path):
    args = make_args(env_id="InvertedPendulum-v5", dim_model=16, dim_feedforward=32)
    path = str(tmp_path / "accelerated.pt")
    m.save_checkpoint(path, fake_checkpoint(args))
    with pytest.raises(m.UsageError, match="obs/action dims 4/1"):
        m.load_checkpoint(path, args, 5, 1)
    torch.save({"something": 1}, path)
    with pytest.raises(m.UsageError, match="not a checkpoint written by"):
        m.load_checkpoint(path, args, 4, 1)
    with open(path, "wb") as f:
        f.write(b"definitely not a torch file\n" * 10)
    with pytest.raises(m.UsageError, match="not a readable checkpoint"):
        m.load_checkpoint(path, args, 4, 1)


# ---------------------------------------------------------------------------------------------------------------
# The ETA (issue 27): each phase's steps left at the speed measured for it, never a guess
def test_eta_adds_each_phase_at_its_own_speed():
    # 1000 warm-up steps left at 1000 steps/s, 5000 of stage 1 at 100/s, 10000 of stage 2 at 40/s: 1 + 50 + 250 s
    left = {"random": 1000, "stage 1": 5000, "stage 2": 10_000}
    measured = {"random": (2000, 2.0), "stage 1": (500, 5.0), "stage 2": (400, 10.0)}
    assert m.eta_text(left, measured) == "5m01s"
    assert m.eta_text({"stage 2": 3 * 3600 * 40}, measured) == "3h00m"
    assert m.eta_text({"random": 0, "stage 1": 0, "stage 2": 0}, measured) == "0s"


def test_eta_without_a_measured_speed_says_so():
    measured = {"random": (2000, 2.0), "stage 1": (500, 5.0)}
    # stage 2 not measured yet: what is known is a lower bound, marked as one
    assert m.eta_text({"stage 1": 5000, "stage 2": 10_000}, measured) == ">50s"
    # random actions' speed says nothing about learning: stage 1 unmeasured is not extrapolated from it, and under a
    # second known is no figure to show
    assert m.eta_text({"random": 0, "stage 1": 5000, "stage 2": 0}, {"random": (2000, 2.0)}) == "measuring"
    assert m.eta_text({"random": 500, "stage 1": 5000}, {"random": (2000, 1.0)}) == "measuring"
    # a phase counts as measured after min_steps steps only
    assert m.eta_text({"stage 1": 5000}, {"stage 1": (99, 1.0)}) == "measuring"
    assert m.eta_text({"stage 1": 5000}, {"stage 1": (100, 1.0)}) == "50s"
    # a phase with nothing left needs no speed
    assert m.eta_text({"stage 1": 0, "stage 2": 400}, {"stage 2": (400, 10.0)}) == "10s"


def test_the_bar_shows_an_evaluation_s_progress_and_its_clock(monkeypatch):
    """While evaluate() runs, the bar says which episode it is in and for how long (issue 27: it looked frozen)."""

    class Bar:
        def __init__(self):
            self.shown = []

        def set_postfix_str(self, text):  # tqdm's call redraws the bar, its elapsed time with it
            self.shown.append(text)

    now = [1000.0]
    monkeypatch.setattr(m.time, "time", lambda: now[0])
    run = m.Run(m.Args(env_id="Hopper-v4"))
    run.bar = Bar()
    tick = run.evaluation(global_step=5000, stage=1)
    tick(0, 10)
    now[0] += 0.2
    tick(0, 10)  # twice a second at most
    now[0] += 64.8
    tick(3, 10)
    assert run.bar.shown == ["stage 1, evaluating: episode 1/10, 0s", "stage 1, evaluating: episode 4/10, 1m05s"]
