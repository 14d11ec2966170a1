"""Issue 10's speed changes in the four ManiSkill scripts against the plain versions they replaced (the reference,
kept in accel_helpers.py and shared with tests/test_speed_equivalence.py for the MuJoCo scripts): the batch-first
attention of EncoderLayer (against nn.MultiheadAttention with the same parameters), fused Adam (against the
per-parameter loop), the soft update as one foreach call (against a lerp_ per parameter), and qf1 frozen during the
actor and critic-ascent losses (against the update as it was). Same outputs, gradients and parameters after several
updates to float32 rounding, on random inputs (no env); old state_dicts and optimizer states load. On a CUDA machine
the whole updates are also compared there (the ManiSkill scripts' GPU simulator path).
benchmarks/bench_updates.py --paths maniskill times them."""

import inspect
import io
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the plain versions (the reference) and the comparisons, shared with the MuJoCo and LSTM equivalence tests
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
SCRIPTS = {"accel": "td3_accel_maniskill.py", "mlp": "baselines/td3_mlp_maniskill.py",
           "transformer": "baselines/td3_transformer_maniskill.py",
           "lstm": "baselines/td3_lstm_maniskill.py"}  # fmt: skip
WITH_ATTENTION = ["accel", "transformer"]
OBS_DIM, ACT_DIM = 35, 8  # PushCube-v1, state observations, pd_joint_delta_pos
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def load(name: str):
    return load_script(ROOT / SCRIPTS[name], f"speq_maniskill_{name}")


m = load("accel")


# ---------------------------------------------------------------------------------------------------------------
def bounds(act_dim=ACT_DIM):
    return -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)


@pytest.mark.parametrize("script", WITH_ATTENTION)
@pytest.mark.parametrize("last_only", [True, False])
@pytest.mark.parametrize("train", [False, True])
def test_attention_equals_multihead_attention(script, last_only, train):
    """Outputs, input and parameter gradients, in eval and train mode. With last_only (every layer of the Table-1
    actor, and the last of any) the same dropout masks are drawn; an earlier layer's attention dropout draws its
    masks in another element order (the attention weights' memory layout differs), so it is compared without."""
    assert_attention_equals_multihead_attention(load(script).EncoderLayer, last_only, train)


@pytest.mark.parametrize("script", WITH_ATTENTION)
def test_transformer_actor_equals_plain_at_table1_sizes(script):
    """PushCube-v1 sizes, the Table-1 transformer in train mode (dropout): same outputs and gradients; the
    state_dicts are the same (old checkpoints load, both ways, strictly)."""
    mod = load(script)
    args = mod.Args()
    torch.manual_seed(0)
    new = mod.make_transformer(OBS_DIM, *bounds(), args)
    ref = plain(mod.make_transformer(OBS_DIM, *bounds(), args))
    ref.load_state_dict(new.state_dict())
    new.load_state_dict(ref.state_dict())
    assert_same_outputs_and_gradients(new, ref, *random_windows(256, args.context_len, OBS_DIM))


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_equals_plain_adam(device):
    """Every script's adam(): fused, the same parameters as torch.optim.Adam after several steps, and an old
    (unfused) optimizer state, saved and loaded to the CPU as resume.pt and stage-1 checkpoints are, loads into it
    and steps as the plain one does."""
    torch.manual_seed(0)
    init = [torch.randn(16, 8, device=device), torch.randn(16, device=device), torch.randn(1, 16, device=device)]
    grads = [[torch.randn_like(p) * 10**k for p in init] for k in (-3, 0, 2, 0, -1)]

    ref, ref_opt = adam_steps(plain_adam, init, grads)
    for name in SCRIPTS:
        params, opt = adam_steps(load(name).adam, init, grads)
        assert opt.defaults["fused"], name
        for p, q in zip(params, ref, strict=True):
            torch.testing.assert_close(p, q, **PARAM_TOL)
        assert not torch.equal(params[0], init[0])
    # resume from an old optimizer state: 3 plain steps, saved, loaded into adam(), 2 more steps
    old, old_opt = adam_steps(plain_adam, init, grads[:3])
    buf = io.BytesIO()
    torch.save(old_opt.state_dict(), buf)
    buf.seek(0)
    for name in SCRIPTS:
        params = [p.detach().clone().requires_grad_(True) for p in old]
        opt = load(name).adam(params, 1e-3)
        buf.seek(0)
        opt.load_state_dict(torch.load(buf, map_location="cpu"))
        for g in grads[3:]:
            for p, gi in zip(params, g, strict=True):
                p.grad = gi.clone()
            opt.step()
        for p, q in zip(params, ref, strict=True):
            torch.testing.assert_close(p, q, **PARAM_TOL)


def test_soft_update_equals_lerp_loop():
    """Every script's soft_update (one torch._foreach_lerp_) against a lerp_ per parameter: the same values to the
    bit; networks that do not match fail."""
    for name in SCRIPTS:
        torch.manual_seed(0)
        net, target = (m.make_transformer(5, *bounds(2), m.Args(dim_model=16, dim_feedforward=32)) for _ in range(2))
        assert_soft_update_equals_lerp_loop(load(name).soft_update, net, target, 0.01, m.QNetwork(5, 2), name)


# ---------------------------------------------------------------------------------------------------------------
# Whole updates against the plain ones
def filled_buffer(mod, obs_dim, act_dim, device="cpu", rows=100, num_envs=4):
    """A per-env replay buffer, full: episodes of 5 steps, each env's shifted by its index (windows get padded)."""
    g = torch.Generator().manual_seed(0)
    rb = mod.ReplayBuffer(rows * num_envs, num_envs, obs_dim, act_dim, device)
    for t in range(rows):
        step = (t + torch.arange(num_envs)) % 5

        def rand(*shape):
            return torch.randn(*shape, generator=g).to(device)

        rb.add(rand(num_envs, obs_dim), rand(num_envs, obs_dim),
               (torch.rand(num_envs, act_dim, generator=g) * 2 - 1).to(device), rand(num_envs), (step == 4).to(device),
               step.to(device))  # fmt: skip
    return rb


CASES = [("accel", "mlp"), ("accel", "transformer"), ("mlp", "mlp"), ("transformer", "transformer"), ("lstm", "lstm")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("script,kind", CASES)
def test_td3_update_equals_plain(script, kind, device):
    """Four updates (critics only, then critics, actor and targets, twice), same networks, data and noise (dropout
    included on the CPU): same losses, parameters of all six networks; qf1 receives no gradient from the actor loss
    (one accumulation per update, the critic loss's) and is trainable again afterwards."""
    mod = load(script)
    obs_dim, act_dim = 5, 2
    sizes = dict(batch_size=32, dim_model=32, dim_feedforward=64, dropout=0.1 if device == "cpu" else 0.0,
                 lstm_hidden_size=16)  # fmt: skip
    args = mod.Args(**{k: v for k, v in sizes.items() if hasattr(mod.Args, k)})
    context = getattr(args, "history_len", getattr(args, "context_len", 0)) if kind != "mlp" else 0
    rb = filled_buffer(mod, obs_dim, act_dim, device)
    torch.manual_seed(1)
    batches = [rb.sample(32, context) for _ in range(4)]
    runs = {}
    for version in ("new", "plain"):
        nets = make_td3_nets(mod, kind, obs_dim, act_dim, args, version, device)
        nets[0].train()
        qf1_grads = []
        for p in nets[2].parameters():
            p.register_post_accumulate_grad_hook(qf1_grads.append)
        torch.manual_seed(1)
        losses = []
        for update, d in enumerate(batches, start=1):
            actor_in = (d["obs"],) if kind == "mlp" else (d["window"], d["valid"])
            next_in = (d["next_obs"],) if kind == "mlp" else (d["next_window"], d["next_valid"])
            if version == "plain":
                critic_in, next_critic_in = (actor_in, next_in) if kind == "lstm" else ((d["obs"],), (d["next_obs"],))
                losses.append(plain_td3_update(update, d, actor_in, next_in, critic_in, next_critic_in, *nets, args))
            elif script == "accel":
                losses.append(mod.td3_update(update, d, actor_in, next_in, *nets, args))
            else:
                losses.append(mod.td3_update(update, d, *nets, args))
        runs[version] = nets, losses, len(qf1_grads) // len(list(nets[2].parameters()))
    (new_nets, new_losses, new_accumulations), (ref_nets, ref_losses, ref_accumulations) = runs["new"], runs["plain"]
    assert_same_td3_losses(new_losses, ref_losses)
    for new_net, ref_net in zip(new_nets[:6], ref_nets[:6], strict=True):
        assert_same_parameters(new_net, ref_net)
    assert (new_accumulations, ref_accumulations) == (4, 6)  # 4 critic losses; plain: + 2 actor losses
    assert all(p.requires_grad for p in new_nets[2].parameters())
    assert_td3_networks_moved(new_nets, make_td3_nets(mod, kind, obs_dim, act_dim, args, "new", device))


def test_critic_warmup_leaves_the_actor_and_qf1_trainable():
    """Stage 2's critic warm-up (train_actor False): critics and their targets move as in the plain update, the
    actor and its target do not."""
    obs_dim, act_dim = 5, 2
    args = m.Args(batch_size=32, dim_model=32, dim_feedforward=64)
    rb = filled_buffer(m, obs_dim, act_dim)
    torch.manual_seed(1)
    d = rb.sample(32, args.context_len)
    nets = make_td3_nets(m, "transformer", obs_dim, act_dim, args, "new")
    before = [p.clone() for p in nets[0].parameters()] + [p.clone() for p in nets[1].parameters()]
    for update in (1, 2):
        m.td3_update(update, d, (d["window"], d["valid"]), (d["next_window"], d["next_valid"]), *nets, args, False)
    after = list(nets[0].parameters()) + list(nets[1].parameters())
    assert all(torch.equal(p, q) for p, q in zip(after, before, strict=True))
    assert all(p.requires_grad for net in nets[:6] for p in net.parameters())


def test_train_transformer_with_critic_ascent_equals_plain():
    """Two rounds of BC + critic ascent: the same transformer, target and losses; qf1 neither moved nor left frozen,
    and no gradient computed for it."""
    obs_dim, act_dim = 5, 2
    args = m.Args(bc_updates=2, critic_ascent=True, bc_batch_size=32, dim_model=32, dim_feedforward=64, dropout=0.1)
    rb = filled_buffer(m, obs_dim, act_dim)
    t = torch.arange(rb.rows).repeat_interleave(rb.num_envs)
    e = torch.arange(rb.num_envs).repeat(rb.rows)
    w, v, _, _ = rb.windows(t, e, args.context_len)
    runs = {}
    for version in ("new", "plain"):
        transformer, target, qf1, actor, opt = make_bc_nets(m, obs_dim, act_dim, args, version)
        traj = m.TrajectoryBuffer(len(t), args.context_len, obs_dim, act_dim, "cpu")
        traj.add(w, v, torch.zeros(len(t), act_dim))
        q_before = [p.clone() for p in qf1.parameters()]
        torch.manual_seed(2)
        plain_update = partial(plain_train_transformer, batch_size=args.bc_batch_size or args.finetune_batch_size)
        update = m.train_transformer if version == "new" else plain_update
        out = [update(traj, transformer, target, opt, qf1, actor, args) for _ in range(2)]
        assert all(torch.equal(p, q) for p, q in zip(qf1.parameters(), q_before, strict=True))
        assert all(p.requires_grad for p in qf1.parameters())
        assert (version == "plain") == (qf1.fc1.weight.grad is not None)  # frozen: no gradient computed for it
        runs[version] = transformer, target, out
    assert all(a.keys() == b.keys() for a, b in zip(runs["new"][2], runs["plain"][2], strict=True))
    assert_same_bc_runs(runs["new"], runs["plain"])


def test_lstm_copy_is_the_mujoco_baselines():
    """The ManiSkill LSTM baseline's WindowLSTM (hand-written forward and backward) is a copy of the MuJoCo
    baseline's, which tests/test_lstm_speed_equivalence.py holds equal to the plain LSTM: textually identical."""
    mujoco = load_script(ROOT / "baselines/td3_lstm_mujoco.py", "speq_lstm_mujoco")
    lstm = load("lstm")
    for name in ("WindowLSTM", "LSTMQNetwork", "LSTMActor"):
        assert inspect.getsource(getattr(lstm, name)) == inspect.getsource(getattr(mujoco, name)), (
            f"{name} differs from baselines/td3_lstm_mujoco.py: re-sync the copy"
        )
