"""Issue 10's speed changes in the four ManiSkill scripts against the plain versions they replaced, kept here as the
reference (as tests/test_speed_equivalence.py does for the MuJoCo scripts): the batch-first attention of EncoderLayer
(against nn.MultiheadAttention with the same parameters), fused Adam (against the per-parameter loop), the soft update
as one foreach call (against a lerp_ per parameter), and qf1 frozen during the actor and critic-ascent losses (against
the update as it was). Same outputs, gradients and parameters after several updates to float32 rounding, on random
inputs (no env); old state_dicts and optimizer states load. On a CUDA machine the whole updates are also compared
there (the ManiSkill scripts' GPU simulator path). benchmarks/bench_updates.py --paths maniskill times them."""

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"accel": "td3_accel_maniskill.py", "mlp": "baselines/td3_mlp_maniskill.py",
           "transformer": "baselines/td3_transformer_maniskill.py",
           "lstm": "baselines/td3_lstm_maniskill.py"}  # fmt: skip
WITH_ATTENTION = ["accel", "transformer"]
TOL = dict(rtol=1e-4, atol=1e-5)
# Adam's steps are lr-sized whatever the gradient's size: a parameter whose gradient is near 0 can move by more than
# float32 resolution from rounding alone, a wrong gradient moves it by ~lr
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)
OBS_DIM, ACT_DIM = 35, 8  # PushCube-v1, state observations, pd_joint_delta_pos
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def load(name: str):
    mod_name = f"speq_maniskill_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, ROOT / SCRIPTS[name])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[mod_name]


m = load("accel")


# ---------------------------------------------------------------------------------------------------------------
# The plain versions (the reference)
def plain_layer_forward(self, h, padding_mask, last_only: bool = False):
    x = self.norm1(h)
    q = x[:, -1:] if last_only else x
    h = h[:, -1:] if last_only else h
    h = h + self.dropout1(self.attn(q, x, x, key_padding_mask=padding_mask, need_weights=False)[0])
    return h + self.dropout2(self.ff(self.norm2(h)))


def plain(net):
    """The same network, same parameters, with nn.MultiheadAttention called as before."""
    for layer in net.modules():
        if type(layer).__name__ == "EncoderLayer":
            layer.forward = plain_layer_forward.__get__(layer)
    return net


def plain_adam(params, lr):
    return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def plain_soft_update(net, target, tau):
    for p, tp in zip(net.parameters(), target.parameters(), strict=True):
        tp.lerp_(p, tau)


def plain_td3_update(update, data, actor_in, next_actor_in, critic_in, next_critic_in, actor, actor_target, qf1, qf2,
                     qf1_target, qf2_target, q_optimizer, actor_optimizer, args) -> dict:  # fmt: skip
    """The four ManiSkill scripts' td3_update before issue 10: the actor reads actor_in (observations, windows), the
    critics critic_in (the observation; the LSTM's windows)."""
    with torch.no_grad():
        noise = (torch.randn_like(data["actions"]) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
        next_actions = actor_target(*next_actor_in) + noise * actor_target.action_scale
        next_actions = torch.max(torch.min(next_actions, actor.action_scale + actor.action_bias),
                                 actor.action_bias - actor.action_scale)  # fmt: skip
        next_q = torch.min(qf1_target(*next_critic_in, next_actions), qf2_target(*next_critic_in, next_actions))
        target_q = data["rewards"] + (1 - data["terminations"]) * args.gamma * next_q
    qf1_loss = F.mse_loss(qf1(*critic_in, data["actions"]), target_q)
    qf2_loss = F.mse_loss(qf2(*critic_in, data["actions"]), target_q)
    q_optimizer.zero_grad()
    (qf1_loss + qf2_loss).backward()
    q_optimizer.step()
    losses = {"losses/qf1_loss": qf1_loss.detach(), "losses/qf2_loss": qf2_loss.detach()}
    if update % args.policy_frequency == 0:
        actor_loss = -qf1(*critic_in, actor(*actor_in)).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target)]:
            plain_soft_update(net, target, args.tau)
        losses["losses/actor_loss"] = actor_loss.detach()
    return losses


def plain_train_transformer(trajectory, transformer, transformer_target, optimizer, qf1, actor, args) -> dict:
    """td3_accel_maniskill.py's train_transformer before issue 10 (without --bc-clear)."""
    transformer.train()
    bc_losses, ascent_qs = [], []
    for _ in range(args.bc_updates):
        windows, valids, targets = trajectory.sample(args.bc_batch_size or args.finetune_batch_size)
        if args.bc_target == "actor":
            with torch.no_grad():
                targets = actor(windows[:, -1])
        bc_loss = F.mse_loss(transformer(windows, valids), targets)
        optimizer.zero_grad()
        bc_loss.backward()
        optimizer.step()
        plain_soft_update(transformer, transformer_target, args.tau)
        bc_losses.append(bc_loss.detach())
        if args.critic_ascent:
            q = qf1(windows[:, -1], transformer(windows, valids)).mean()
            optimizer.zero_grad()
            (-q).backward()
            optimizer.step()
            plain_soft_update(transformer, transformer_target, args.tau)
            ascent_qs.append(q.detach())
    transformer.eval()
    return {"losses/bc_loss": torch.stack(bc_losses).mean(), "losses/critic_ascent_q": torch.stack(ascent_qs).mean()}


# ---------------------------------------------------------------------------------------------------------------
def assert_same_parameters(net, ref):
    for (name, p), q in zip(net.state_dict().items(), ref.state_dict().values(), strict=True):
        if name.endswith("attn.in_proj_bias"):  # the key bias: its gradient is 0 but for rounding (softmax ignores a
            p, q = p[: len(p) // 3], q[: len(q) // 3]  # shift of all scores), which Adam turns into lr-sized steps
        torch.testing.assert_close(p, q, **PARAM_TOL, msg=lambda s, name=name: f"{name}: {s}")


def random_windows(batch, steps, obs_dim, seed=0):
    """Windows with every left-padding length 0..K-1, garbage in the padding."""
    g = torch.Generator().manual_seed(seed)
    first = torch.arange(batch) % steps
    valid = torch.arange(steps)[None] >= first[:, None]
    return torch.randn(batch, steps, obs_dim, generator=g), valid


def bounds(act_dim=ACT_DIM):
    return -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)


@pytest.mark.parametrize("script", WITH_ATTENTION)
@pytest.mark.parametrize("last_only", [True, False])
@pytest.mark.parametrize("train", [False, True])
def test_attention_equals_multihead_attention(script, last_only, train):
    """Outputs, input and parameter gradients, in eval and train mode. With last_only (every layer of the Table-1
    actor, and the last of any) the same dropout masks are drawn; an earlier layer's attention dropout draws its
    masks in another element order (the attention weights' memory layout differs), so it is compared without."""
    torch.manual_seed(0)
    layer = load(script).EncoderLayer(32, 4, 64, dropout=0.1 if train and last_only else 0.0).train(train)
    h, valid = random_windows(64, 4, 32)
    results = []
    for forward in (layer.forward, plain_layer_forward.__get__(layer)):
        x = h.clone().requires_grad_(True)
        torch.manual_seed(1)
        out = forward(x, ~valid, last_only=last_only)
        grads = torch.autograd.grad(out, [x, *layer.parameters()], torch.ones_like(out) + out.detach())
        results.append((out, *grads))
    assert results[0][0].shape == (64, 1 if last_only else 4, 32)
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    # padding never reaches the output
    x = h + 100 * torch.randn_like(h) * ~valid[..., None]
    assert torch.equal(x[:, -1], h[:, -1]) and not torch.equal(x, h)
    torch.testing.assert_close(layer.eval()(x, ~valid, last_only=True), layer(h, ~valid, last_only=True), **TOL)


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
    window, valid = random_windows(256, args.context_len, OBS_DIM)
    for net in (new, ref):
        net.train()
    torch.manual_seed(3)
    out = new(window, valid)
    torch.manual_seed(3)
    want = ref(window, valid)
    torch.testing.assert_close(out, want, **TOL)
    for g, r in zip(torch.autograd.grad(out.sum(), list(new.parameters())),
                    torch.autograd.grad(want.sum(), list(ref.parameters())), strict=True):  # fmt: skip
        torch.testing.assert_close(g, r, **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_equals_plain_adam(device):
    """Every script's adam(): fused, the same parameters as torch.optim.Adam after several steps, and an old
    (unfused) optimizer state, saved and loaded to the CPU as resume.pt and stage-1 checkpoints are, loads into it
    and steps as the plain one does."""
    torch.manual_seed(0)
    init = [torch.randn(16, 8, device=device), torch.randn(16, device=device), torch.randn(1, 16, device=device)]
    grads = [[torch.randn_like(p) * 10**k for p in init] for k in (-3, 0, 2, 0, -1)]

    def run(make, steps):
        params = [p.clone().requires_grad_(True) for p in init]
        opt = make(params, 1e-3)
        for g in steps:
            for p, gi in zip(params, g, strict=True):
                p.grad = gi.clone()
            opt.step()
        return params, opt

    ref, ref_opt = run(plain_adam, grads)
    for name in SCRIPTS:
        params, opt = run(load(name).adam, grads)
        assert opt.defaults["fused"], name
        for p, q in zip(params, ref, strict=True):
            torch.testing.assert_close(p, q, **PARAM_TOL)
        assert not torch.equal(params[0], init[0])
    # resume from an old optimizer state: 3 plain steps, saved, loaded into adam(), 2 more steps
    old, old_opt = run(plain_adam, grads[:3])
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
        ref = [p.clone() for p in target.parameters()]
        with torch.no_grad():
            for p, tp in zip(net.parameters(), ref, strict=True):
                tp.lerp_(p, 0.01)
        load(name).soft_update(net, target, 0.01)
        for got, want in zip(target.parameters(), ref, strict=True):
            assert torch.equal(got, want), name
        assert not torch.equal(next(target.parameters()), next(net.parameters()))
        with pytest.raises(RuntimeError):
            load(name).soft_update(m.QNetwork(5, 2), net, 0.01)


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


def make_nets(mod, kind, obs_dim, act_dim, args, version, device="cpu"):
    torch.manual_seed(0)
    low, high = bounds(act_dim)
    if kind == "lstm":
        actors = [mod.LSTMActor(obs_dim, low, high, args.lstm_hidden_size) for _ in range(2)]
        qs = [mod.LSTMQNetwork(obs_dim, act_dim, args.lstm_hidden_size) for _ in range(4)]
    else:
        if kind == "mlp":
            actors = [mod.Actor(obs_dim, low, high) for _ in range(2)]
        else:
            actors = [mod.make_transformer(obs_dim, low, high, args) for _ in range(2)]
            if version == "plain":
                actors = [plain(a) for a in actors]
        qs = [mod.QNetwork(obs_dim, act_dim) for _ in range(4)]
    nets = [net.to(device) for net in (*actors, *qs)]
    make = mod.adam if version == "new" else plain_adam
    opts = make(list(nets[2].parameters()) + list(nets[3].parameters()), 1e-3), make(nets[0].parameters(), 1e-3)
    return (*nets, *opts)


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
        nets = make_nets(mod, kind, obs_dim, act_dim, args, version, device)
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
    assert "losses/actor_loss" in new_losses[1]
    for got, want in zip(new_losses, ref_losses, strict=True):
        assert got.keys() == want.keys()
        for k in got:
            torch.testing.assert_close(got[k], want[k], **TOL)
    for new_net, ref_net in zip(new_nets[:6], ref_nets[:6], strict=True):
        assert_same_parameters(new_net, ref_net)
    assert (new_accumulations, ref_accumulations) == (4, 6)  # 4 critic losses; plain: + 2 actor losses
    assert all(p.requires_grad for p in new_nets[2].parameters())
    init = make_nets(mod, kind, obs_dim, act_dim, args, "new", device)
    for i in (0, 1, 2, 4):  # the actor, its target, qf1 and its target moved
        assert not torch.allclose(next(new_nets[i].parameters()), next(init[i].parameters()))


def test_critic_warmup_leaves_the_actor_and_qf1_trainable():
    """Stage 2's critic warm-up (train_actor False): critics and their targets move as in the plain update, the
    actor and its target do not."""
    obs_dim, act_dim = 5, 2
    args = m.Args(batch_size=32, dim_model=32, dim_feedforward=64)
    rb = filled_buffer(m, obs_dim, act_dim)
    torch.manual_seed(1)
    d = rb.sample(32, args.context_len)
    nets = make_nets(m, "transformer", obs_dim, act_dim, args, "new")
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
    low, high = bounds(act_dim)
    rb = filled_buffer(m, obs_dim, act_dim)
    t = torch.arange(rb.rows).repeat_interleave(rb.num_envs)
    e = torch.arange(rb.num_envs).repeat(rb.rows)
    w, v, _, _ = rb.windows(t, e, args.context_len)
    runs = {}
    for version in ("new", "plain"):
        torch.manual_seed(0)
        transformer, target = (m.make_transformer(obs_dim, low, high, args) for _ in range(2))
        if version == "plain":
            transformer, target = plain(transformer), plain(target)
        qf1, actor = m.QNetwork(obs_dim, act_dim), m.Actor(obs_dim, low, high)
        traj = m.TrajectoryBuffer(len(t), args.context_len, obs_dim, act_dim, "cpu")
        traj.add(w, v, torch.zeros(len(t), act_dim))
        opt = (m.adam if version == "new" else plain_adam)(transformer.parameters(), 1e-3)
        q_before = [p.clone() for p in qf1.parameters()]
        torch.manual_seed(2)
        update = m.train_transformer if version == "new" else plain_train_transformer
        out = [update(traj, transformer, target, opt, qf1, actor, args) for _ in range(2)]
        assert all(torch.equal(p, q) for p, q in zip(qf1.parameters(), q_before, strict=True))
        assert all(p.requires_grad for p in qf1.parameters())
        assert (version == "plain") == (qf1.fc1.weight.grad is not None)  # frozen: no gradient computed for it
        runs[version] = transformer, target, out
    for a, b in zip(runs["new"][2], runs["plain"][2], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], **TOL)
    for i in (0, 1):
        assert_same_parameters(runs["new"][i], runs["plain"][i])


def test_lstm_copy_is_the_mujoco_baselines():
    """The ManiSkill LSTM baseline's WindowLSTM (hand-written forward and backward) is a copy of the MuJoCo
    baseline's, which tests/test_lstm_speed_equivalence.py holds equal to the plain LSTM: textually identical."""
    import inspect

    mujoco = importlib.util.spec_from_file_location("speq_lstm_mujoco", ROOT / "baselines/td3_lstm_mujoco.py")
    mujoco_mod = sys.modules.setdefault("speq_lstm_mujoco", importlib.util.module_from_spec(mujoco))
    mujoco.loader.exec_module(mujoco_mod)  # registered first: inspect finds classes through sys.modules
    lstm = load("lstm")
    for name in ("WindowLSTM", "LSTMQNetwork", "LSTMActor"):
        assert inspect.getsource(getattr(lstm, name)) == inspect.getsource(getattr(mujoco_mod, name)), (
            f"{name} differs from baselines/td3_lstm_mujoco.py: re-sync the copy"
        )
