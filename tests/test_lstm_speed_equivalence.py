"""The hand-written LSTM of baselines/td3_lstm_mujoco.py (WindowLSTM._Function, and td3_update's frozen critic
in the actor loss) against the plain version it replaced, kept here as the reference: an nn.LSTMCell stepped by
autograd, and the update as it was. Same outputs and gradients to float32 rounding, padding cannot leak, old
state_dicts load. benchmarks/bench_lstm_update.py imports the reference from here to time it."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the plain update and the comparisons, shared with the other speed-equivalence tests
from accel_helpers import TOL, assert_same_td3_losses, random_windows  # noqa: E402
from accel_helpers import plain_td3_update as plain_windows_td3_update  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("td3_lstm_mujoco_eq", ROOT / "baselines" / "td3_lstm_mujoco.py")
m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(m)


# ---------------------------------------------------------------------------------------------------------------
# The plain version (the reference)
class PlainWindowLSTM(nn.Module):
    def __init__(self, obs_dim: int, hidden_size: int):
        super().__init__()
        self.cell = nn.LSTMCell(obs_dim, hidden_size)

    def forward(self, window, valid):
        h = window.new_zeros(window.shape[0], self.cell.hidden_size)
        c = torch.zeros_like(h)
        for k in range(window.shape[1]):
            h_next, c_next = self.cell(window[:, k], (h, c))
            keep = valid[:, k, None]
            h, c = torch.where(keep, h_next, h), torch.where(keep, c_next, c)
        return h


def plain(net: nn.Module) -> nn.Module:
    """The same network, same parameters, with the plain LSTM."""
    lstm = PlainWindowLSTM(net.lstm.cell.input_size, net.lstm.cell.hidden_size)
    lstm.load_state_dict(net.lstm.state_dict())
    net.lstm = lstm
    return net


def plain_td3_update(step, data, *nets_and_args) -> dict:
    """td3_update as it was (td3_update's arguments): the plain update with the actor and critics on the windows."""
    window, next_window = (data["window"], data["valid"]), (data["next_window"], data["next_valid"])
    return plain_windows_td3_update(step, data, window, next_window, window, next_window, *nets_and_args)


def make_nets(version: str, obs_dim: int, act_dim: int, hidden: int, lr: float = 3e-4, seed: int = 0):
    """Actor, target, twin critics and targets, and their optimizers, as td3_update takes them."""
    torch.manual_seed(seed)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    nets = [m.LSTMActor(obs_dim, low, high, hidden) for _ in range(2)]
    nets += [m.LSTMQNetwork(obs_dim, act_dim, hidden) for _ in range(4)]
    if version == "plain":
        nets = [plain(n) for n in nets]
    actor, actor_t, q1, q2, q1_t, q2_t = nets
    q_opt = torch.optim.Adam(list(q1.parameters()) + list(q2.parameters()), lr=lr)
    a_opt = torch.optim.Adam(actor.parameters(), lr=lr)
    return actor, actor_t, q1, q2, q1_t, q2_t, q_opt, a_opt


# ---------------------------------------------------------------------------------------------------------------
def pair(obs_dim, hidden, seed=0):
    torch.manual_seed(seed)
    new = m.WindowLSTM(obs_dim, hidden)
    ref = PlainWindowLSTM(obs_dim, hidden)
    ref.load_state_dict(new.state_dict())  # the same parameter names and shapes
    return new, ref


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_window_lstm_equals_plain_outputs_and_gradients(steps):
    new, ref = pair(obs_dim=7, hidden=16, seed=steps)
    window, valid = random_windows(64, steps, 7, seed=steps)
    grad_out = torch.randn(64, 16)
    results = []
    for net in (new, ref):
        x = window.clone().requires_grad_(True)
        out = net(x, valid)
        grads = torch.autograd.grad(out, [x, *net.parameters()], grad_out)
        results.append((out, *grads))
    assert results[0][0].abs().max() > 0.01  # not a trivial output
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    with torch.no_grad():  # the path without autograd (target networks, acting)
        torch.testing.assert_close(new(window, valid), results[1][0], **TOL)
    # every padding length gives a nonzero input gradient at valid positions only
    assert results[0][1][valid].abs().amin(-1).gt(0).all() and results[0][1][~valid].abs().sum() == 0


def test_window_lstm_equals_plain_at_the_baseline_sizes():
    new, ref = pair(obs_dim=11, hidden=128)
    window, valid = random_windows(256, 3, 11)
    out, want = new(window, valid), ref(window, valid)
    torch.testing.assert_close(out, want, **TOL)
    g_new = torch.autograd.grad(out.square().sum(), list(new.parameters()))
    g_ref = torch.autograd.grad(want.square().sum(), list(ref.parameters()))
    for got, expected in zip(g_new, g_ref, strict=True):
        torch.testing.assert_close(got, expected, **TOL)


def test_padding_cannot_leak():
    new, _ = pair(obs_dim=5, hidden=8)
    window, valid = random_windows(30, 4, 5)
    garbage = window + 1000 * torch.randn_like(window) * ~valid[..., None]
    assert not torch.equal(garbage, window)
    torch.testing.assert_close(new(garbage, valid), new(window, valid), rtol=0, atol=0)
    grads = [torch.autograd.grad(new(w, valid).sum(), list(new.parameters())) for w in (window, garbage)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # changing a valid entry does change the output (the checks above can fail)
    changed = window.clone()
    changed[valid] += 0.5
    assert (new(changed, valid) - new(window, valid)).abs().amin(-1).gt(0).all()


@pytest.mark.parametrize("grad", [False, True])
def test_padding_equals_the_unpadded_suffix_exactly(grad):
    """WindowLSTM does not mask the state at padded steps: it zeroes the input gate there, which keeps the zero
    state exactly zero (c = f 0 + 0 tanh(g), h = o tanh(0)). So a window left-padded by p steps gives bit for bit the
    output (and parameter gradients) of its K - p valid steps alone, whatever the padding holds."""
    new, _ = pair(obs_dim=5, hidden=16)
    g = torch.Generator().manual_seed(3)
    for pad in (1, 2, 3):
        suffix = torch.randn(32, 4 - pad, 5, generator=g)
        padded = torch.cat([1000 * torch.randn(32, pad, 5, generator=g), suffix], 1)
        valid = torch.arange(4)[None].expand(32, 4) >= pad
        results = []
        for window, v in ((padded, valid), (suffix, torch.ones(32, 4 - pad, dtype=torch.bool))):
            with torch.set_grad_enabled(grad):
                out = new(window, v)
            grads = torch.autograd.grad(out.square().sum(), list(new.parameters())) if grad else ()
            results.append((out, *grads))
        assert results[0][0].abs().max() > 0.01
        for got, want in zip(*results, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_state_dict_is_the_plain_ones():
    low, high = -np.ones(2, np.float32), np.ones(2, np.float32)
    for new, ref in [(m.LSTMActor(4, low, high, 8), plain(m.LSTMActor(4, low, high, 8))),
                     (m.LSTMQNetwork(4, 2, 8), plain(m.LSTMQNetwork(4, 2, 8)))]:  # fmt: skip
        want = ref.state_dict()
        assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in want.items()}
        new.load_state_dict(want)  # an old checkpoint loads, strict


def test_td3_update_equals_plain():
    """Four updates (critics only, then critics and actor with the target updates, twice) from the same networks,
    data and noise: same losses, parameters and optimizer states."""
    obs_dim, act_dim, hidden = 6, 2, 16
    args = m.Args(lstm_hidden_size=hidden, batch_size=64)
    np.random.seed(0)
    rb = m.ReplayBuffer(500, obs_dim, act_dim, "cpu")
    for i in range(500):
        rb.add(np.random.randn(obs_dim), np.random.randn(obs_dim), np.random.uniform(-1, 1, act_dim),
               np.random.randn(), i % 5 == 4, i % 5)  # fmt: skip
    batches = [rb.sample(64, 3) for _ in range(4)]
    assert not batches[0]["valid"].all()  # some windows are padded
    runs = {}
    for version, update in [("new", m.td3_update), ("plain", plain_td3_update)]:
        nets = make_nets(version, obs_dim, act_dim, hidden, lr=1e-3)
        torch.manual_seed(1)
        losses = [update(step, batches[step - 1], *nets, args) for step in (1, 2, 3, 4)]
        runs[version] = nets, losses
    (new_nets, new_losses), (ref_nets, ref_losses) = runs["new"], runs["plain"]
    assert_same_td3_losses(new_losses, ref_losses)
    for new_net, ref_net in zip(new_nets[:6], ref_nets[:6], strict=True):
        for (name, p), (ref_name, q) in zip(new_net.state_dict().items(), ref_net.state_dict().items(), strict=True):
            assert name == ref_name
            # Adam's steps are lr-sized whatever the gradient's size, so a wrong gradient moves parameters by ~1e-3;
            # rounding can move a parameter whose gradient is near 0 by more than float32 resolution
            torch.testing.assert_close(p, q, rtol=1e-4, atol=5e-5, msg=lambda s, name=name: f"{name}: {s}")
    for opt, ref_opt in zip(new_nets[6:], ref_nets[6:], strict=True):
        for s, r in zip(opt.state.values(), ref_opt.state.values(), strict=True):
            torch.testing.assert_close(s["exp_avg_sq"], r["exp_avg_sq"], rtol=1e-3, atol=1e-9)
    # the networks did move, and the actor's updates reached the target actor
    init = make_nets("new", obs_dim, act_dim, hidden)
    assert not torch.allclose(new_nets[0].fc1.weight, init[0].fc1.weight)
    assert not torch.allclose(new_nets[1].fc1.weight, init[1].fc1.weight)
    assert all(p.requires_grad for p in new_nets[2].parameters())  # qf1 unfrozen after the actor loss


def test_accel_script_lstm_equals_plain():
    """td3_accel_lstm_pomdp.py's copy of WindowLSTM: same outputs and gradients as the plain LSTM."""
    spec = importlib.util.spec_from_file_location("td3_accel_lstm_pomdp_eq", ROOT / "td3_accel_lstm_pomdp.py")
    accel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accel)
    torch.manual_seed(0)
    new, ref = accel.WindowLSTM(7, 16), PlainWindowLSTM(7, 16)
    ref.load_state_dict(new.state_dict())
    window, valid = random_windows(64, 3, 7)
    x, y = window.clone().requires_grad_(True), window.clone().requires_grad_(True)
    out, want = new(x, valid), ref(y, valid)
    torch.testing.assert_close(out, want, **TOL)
    with torch.no_grad():
        torch.testing.assert_close(new(window, valid), want, **TOL)
    grad_out = torch.randn(64, 16)
    got = torch.autograd.grad(out, [x, *new.parameters()], grad_out)
    expected = torch.autograd.grad(want, [y, *ref.parameters()], grad_out)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, **TOL)


def test_backward_twice_is_refused():
    """The backward pass builds the gate gradients in the saved gates: a second one (retain_graph) must fail, not
    return wrong gradients."""
    new, _ = pair(obs_dim=5, hidden=8)
    window, valid = random_windows(16, 3, 5)
    out = new(window, valid).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        out.backward()
