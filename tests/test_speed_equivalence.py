"""Issue 10's speed changes against the plain versions they replaced (the reference, kept in accel_helpers.py and
shared with tests/test_speed_equivalence_maniskill.py): the batch-first attention of EncoderLayer (against
nn.MultiheadAttention with the same parameters), fused Adam (against the per-parameter loop), the soft update as one
foreach call (against a lerp_ per parameter), and qf1 frozen during the actor and critic-ascent losses (against the
update as it was).
Same outputs, gradients and parameters after several updates to float32 rounding, in td3_accel_mujoco.py and the
baselines. benchmarks/bench_updates.py times them. The LSTM's own changes: tests/test_lstm_speed_equivalence.py."""

import inspect
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the plain versions (the reference) and the comparisons, shared with the ManiSkill and LSTM equivalence tests
from accel_helpers import (  # noqa: E402
    PARAM_TOL,
    adam_steps,
    assert_attention_equals_multihead_attention,
    assert_same_bc_runs,
    assert_same_outputs_and_gradients,
    assert_same_parameters,
    assert_same_td3_losses,
    assert_soft_update_equals_lerp_loop,
    assert_td3_networks_moved,
    load_script,
    make_bc_nets,
    make_td3_nets,
    plain_adam,
    plain_td3_update,
    plain_train_transformer,
    random_windows,
)
from accel_helpers import plain_attention as plain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"accel": "td3_accel_mujoco.py", "mlp": "baselines/td3_mlp_mujoco.py",
           "transformer": "baselines/td3_transformer_mujoco.py", "lstm": "baselines/td3_lstm_mujoco.py",
           "accel_lstm": "td3_accel_lstm_pomdp.py"}  # fmt: skip


def load(name: str):
    return load_script(ROOT / SCRIPTS[name], f"speq_{name}")


m = load("accel")


# ---------------------------------------------------------------------------------------------------------------
def test_encoder_layer_is_one_copy():
    """The three scripts with a transformer hold the same EncoderLayer (what is tested here holds for each)."""
    for name in ("transformer", "accel_lstm"):
        assert inspect.getsource(load(name).EncoderLayer) == inspect.getsource(m.EncoderLayer), name


@pytest.mark.parametrize("last_only", [True, False])
@pytest.mark.parametrize("train", [False, True])
def test_attention_equals_multihead_attention(last_only, train):
    """Outputs, input and parameter gradients, in eval and train mode. With last_only (every layer of the Table-1
    actor, and the last of any) the same dropout masks are drawn; an earlier layer's attention dropout draws its
    masks in another element order (the attention weights' memory layout differs), so it is compared without."""
    assert_attention_equals_multihead_attention(m.EncoderLayer, last_only, train)


def test_transformer_actor_equals_plain_at_table1_sizes():
    args = m.Args()
    low, high = -np.ones(3, np.float32), np.ones(3, np.float32)
    torch.manual_seed(0)
    new = m.make_transformer(11, low, high, args)
    ref = plain(m.make_transformer(11, low, high, args))
    ref.load_state_dict(new.state_dict())  # same state_dict: old checkpoints load
    assert_same_outputs_and_gradients(new, ref, *random_windows(256, args.context_len, 11))


def test_fused_adam_equals_plain_adam():
    """Every script's adam(): the same parameters as torch.optim.Adam after several steps, and an old (unfused)
    optimizer state loads into it."""
    torch.manual_seed(0)
    init = [torch.randn(16, 8), torch.randn(16), torch.randn(1, 16)]
    grads = [[torch.randn_like(p) * 10**k for p in init] for k in (-3, 0, 2, 0, -1)]
    runs = [adam_steps(make, init, grads) for make in [load(name).adam for name in SCRIPTS] + [plain_adam]]
    for params, opt in runs[:-1]:
        assert opt.defaults["fused"]
        for p, q in zip(params, runs[-1][0], strict=True):
            torch.testing.assert_close(p, q, **PARAM_TOL)
        assert not torch.equal(params[0], init[0])
    params = [p.clone().requires_grad_(True) for p in init]
    opt = m.adam(params, 1e-3)
    opt.load_state_dict(runs[-1][1].state_dict())
    for p, gi in zip(params, grads[0], strict=True):
        p.grad = gi.clone()
    opt.step()


# ---------------------------------------------------------------------------------------------------------------
# Whole updates against the plain ones
def filled_buffer(mod, obs_dim, act_dim, n=400):
    np.random.seed(0)
    rb = mod.ReplayBuffer(n, obs_dim, act_dim, "cpu")
    for i in range(n):
        rb.add(np.random.randn(obs_dim), np.random.randn(obs_dim), np.random.uniform(-1, 1, act_dim),
               np.random.randn(), i % 5 == 4, *([i % 5] if hasattr(rb, "episode_step") else []))  # fmt: skip
    return rb


@pytest.mark.parametrize("script,kind", [("accel", "mlp"), ("accel", "transformer"), ("mlp", "mlp"),
                                         ("transformer", "transformer")])  # fmt: skip
def test_td3_update_equals_plain(script, kind):
    """Four updates (critics only, then critics, actor and targets, twice), same networks, data and noise (dropout
    included): same losses, parameters of all six networks, and qf1 trainable again afterwards."""
    mod = load(script)
    obs_dim, act_dim = 5, 2
    sizes = dict(batch_size=32, dim_model=32, dim_feedforward=64, dropout=0.1)
    args = mod.Args(**{k: v for k, v in sizes.items() if hasattr(mod.Args, k)})
    rb = filled_buffer(mod, obs_dim, act_dim)
    np.random.seed(1)
    batches = [rb.sample(32, 3) if kind == "transformer" else rb.sample(32) for _ in range(4)]
    runs = {}
    for version in ("new", "plain"):
        nets = make_td3_nets(mod, kind, obs_dim, act_dim, args, version)
        nets[0].train()
        torch.manual_seed(1)
        losses = []
        for step, d in enumerate(batches, start=1):
            actor_in = (d["window"], d["valid"]) if kind == "transformer" else (d["obs"],)
            next_in = (d["next_window"], d["next_valid"]) if kind == "transformer" else (d["next_obs"],)
            if version == "plain":
                losses.append(plain_td3_update(step, d, actor_in, next_in, (d["obs"],), (d["next_obs"],), *nets, args))
            elif script == "accel":
                losses.append(mod.td3_update(step, d, actor_in, next_in, *nets, args))
            else:
                losses.append(mod.td3_update(step, d, *nets, args))
        runs[version] = nets, losses
    (new_nets, new_losses), (ref_nets, ref_losses) = runs["new"], runs["plain"]
    assert_same_td3_losses(new_losses, ref_losses)
    for new_net, ref_net in zip(new_nets[:6], ref_nets[:6], strict=True):
        assert_same_parameters(new_net, ref_net)
    assert all(p.requires_grad for p in new_nets[2].parameters())
    assert_td3_networks_moved(new_nets, make_td3_nets(mod, kind, obs_dim, act_dim, args, "new"))


def test_train_transformer_with_critic_ascent_equals_plain():
    """Two rounds of BC + critic ascent: the same transformer, target and losses; qf1 neither moved nor left frozen."""
    obs_dim, act_dim = 5, 2
    args = m.Args(bc_updates=2, critic_ascent=True, batch_size=32, dim_model=32, dim_feedforward=64, dropout=0.1)
    rb = filled_buffer(m, obs_dim, act_dim)
    runs = {}
    for version in ("new", "plain"):
        transformer, target, qf1, actor, opt = make_bc_nets(m, obs_dim, act_dim, args, version)
        traj = m.TrajectoryBuffer(400, 3, obs_dim, act_dim)
        w, v, _, _ = rb.windows(np.arange(400), 3)
        traj.windows[:], traj.valids[:], traj.count = w, v, 400
        q_before = [p.clone() for p in qf1.parameters()]
        np.random.seed(2)
        torch.manual_seed(2)
        plain_update = partial(plain_train_transformer, batch_size=args.bc_batch_size or args.batch_size)
        update = m.train_transformer if version == "new" else plain_update
        out = [update(traj, transformer, target, opt, qf1, actor, args, "cpu") for _ in range(2)]
        assert all(torch.equal(p, q) for p, q in zip(qf1.parameters(), q_before, strict=True))
        assert all(p.requires_grad for p in qf1.parameters())
        assert version == "plain" or qf1.fc1.weight.grad is None  # frozen: no gradient computed for it
        runs[version] = transformer, target, out
    assert_same_bc_runs(runs["new"], runs["plain"])


def test_soft_update_equals_lerp_loop():
    """Every script's soft_update (one torch._foreach_lerp_) against a lerp_ per parameter: the same values to the
    bit; networks that do not match fail."""
    low, high = -np.ones(2, np.float32), np.ones(2, np.float32)
    for name in SCRIPTS:
        torch.manual_seed(0)
        net, target = (m.make_transformer(5, low, high, m.Args(dim_model=16, dim_feedforward=32)) for _ in range(2))
        assert_soft_update_equals_lerp_loop(load(name).soft_update, net, target, 0.005, m.QNetwork(5, 2))
