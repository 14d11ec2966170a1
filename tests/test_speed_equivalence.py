"""Issue 10's speed changes against the plain versions they replaced, kept here as the reference: the batch-first
attention of EncoderLayer (against nn.MultiheadAttention with the same parameters), fused Adam (against the
per-parameter loop), the soft update as one foreach call (against a lerp_ per parameter), and qf1 frozen during the
actor and critic-ascent losses (against the update as it was).
Same outputs, gradients and parameters after several updates to float32 rounding, in td3_accel_mujoco.py and the
baselines. benchmarks/bench_updates.py times them. The LSTM's own changes: tests/test_lstm_speed_equivalence.py."""

import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"accel": "td3_accel_mujoco.py", "mlp": "baselines/td3_mlp_mujoco.py",
           "transformer": "baselines/td3_transformer_mujoco.py", "lstm": "baselines/td3_lstm_mujoco.py",
           "accel_lstm": "td3_accel_lstm_pomdp.py"}  # fmt: skip
TOL = dict(rtol=1e-4, atol=1e-5)
# Adam's steps are lr-sized whatever the gradient's size: a parameter whose gradient is near 0 can move by more than
# float32 resolution from rounding alone, a wrong gradient moves it by ~lr
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)


def load(name: str):
    mod_name = f"speq_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, ROOT / SCRIPTS[name])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod  # inspect.getsource needs it
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


def plain_td3_update(step, data, actor_in, next_actor_in, actor, actor_target, qf1, qf2, qf1_target, qf2_target,
                     q_optimizer, actor_optimizer, args) -> dict:  # fmt: skip
    """td3_accel_mujoco.py's td3_update before issue 10 (the baselines' do the same on their inputs)."""
    with torch.no_grad():
        noise = (torch.randn_like(data["actions"]) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
        next_actions = actor_target(*next_actor_in) + noise * actor_target.action_scale
        next_actions = torch.max(torch.min(next_actions, actor.action_scale + actor.action_bias),
                                 actor.action_bias - actor.action_scale)  # fmt: skip
        next_q = torch.min(qf1_target(data["next_obs"], next_actions), qf2_target(data["next_obs"], next_actions))
        target_q = data["rewards"] + (1 - data["terminations"]) * args.gamma * next_q
    qf1_loss = F.mse_loss(qf1(data["obs"], data["actions"]), target_q)
    qf2_loss = F.mse_loss(qf2(data["obs"], data["actions"]), target_q)
    q_optimizer.zero_grad()
    (qf1_loss + qf2_loss).backward()
    q_optimizer.step()
    losses = {"losses/qf1_loss": qf1_loss.detach(), "losses/qf2_loss": qf2_loss.detach()}
    if step % args.policy_frequency == 0:
        actor_loss = -qf1(data["obs"], actor(*actor_in)).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target)]:
            m.soft_update(net, target, args.tau)
        losses["losses/actor_loss"] = actor_loss.detach()
    return losses


def plain_train_transformer(trajectory, transformer, transformer_target, optimizer, qf1, actor, args, device) -> dict:
    """td3_accel_mujoco.py's train_transformer before issue 10 (without --bc-clear)."""
    transformer.train()
    bc_losses, ascent_qs = [], []
    for _ in range(args.bc_updates):
        windows, valids, targets = trajectory.sample(args.bc_batch_size or args.batch_size, device)
        if args.bc_target == "actor":
            with torch.no_grad():
                targets = actor(windows[:, -1])
        bc_loss = F.mse_loss(transformer(windows, valids), targets)
        optimizer.zero_grad()
        bc_loss.backward()
        optimizer.step()
        m.soft_update(transformer, transformer_target, args.tau)
        bc_losses.append(bc_loss.detach())
        if args.critic_ascent:
            q = qf1(windows[:, -1], transformer(windows, valids)).mean()
            optimizer.zero_grad()
            (-q).backward()
            optimizer.step()
            m.soft_update(transformer, transformer_target, args.tau)
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
    torch.manual_seed(0)
    layer = m.EncoderLayer(32, 4, 64, dropout=0.1 if train and last_only else 0.0).train(train)
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


def test_transformer_actor_equals_plain_at_table1_sizes():
    args = m.Args()
    low, high = -np.ones(3, np.float32), np.ones(3, np.float32)
    torch.manual_seed(0)
    new = m.make_transformer(11, low, high, args)
    ref = plain(m.make_transformer(11, low, high, args))
    ref.load_state_dict(new.state_dict())  # same state_dict: old checkpoints load
    window, valid = random_windows(256, args.context_len, 11)
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


def test_fused_adam_equals_plain_adam():
    """Every script's adam(): the same parameters as torch.optim.Adam after several steps, and an old (unfused)
    optimizer state loads into it."""
    torch.manual_seed(0)
    init = [torch.randn(16, 8), torch.randn(16), torch.randn(1, 16)]
    grads = [[torch.randn_like(p) * 10**k for p in init] for k in (-3, 0, 2, 0, -1)]
    runs = []
    for make in [load(name).adam for name in SCRIPTS] + [plain_adam]:
        params = [p.clone().requires_grad_(True) for p in init]
        opt = make(params, 1e-3)
        for g in grads:
            for p, gi in zip(params, g, strict=True):
                p.grad = gi.clone()
            opt.step()
        runs.append((params, opt))
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


def make_nets(mod, kind, obs_dim, act_dim, args, version):
    torch.manual_seed(0)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    if kind == "mlp":
        actors = [mod.Actor(obs_dim, low, high) for _ in range(2)]
    else:
        actors = [mod.make_transformer(obs_dim, low, high, args) for _ in range(2)]
        if version == "plain":
            actors = [plain(a) for a in actors]
    qs = [mod.QNetwork(obs_dim, act_dim) for _ in range(4)]
    make = mod.adam if version == "new" else plain_adam
    opts = make(list(qs[0].parameters()) + list(qs[1].parameters()), 1e-3), make(actors[0].parameters(), 1e-3)
    return (*actors, *qs, *opts)


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
        nets = make_nets(mod, kind, obs_dim, act_dim, args, version)
        nets[0].train()
        torch.manual_seed(1)
        losses = []
        for step, d in enumerate(batches, start=1):
            actor_in = (d["window"], d["valid"]) if kind == "transformer" else (d["obs"],)
            next_in = (d["next_window"], d["next_valid"]) if kind == "transformer" else (d["next_obs"],)
            if version == "plain":
                losses.append(plain_td3_update(step, d, actor_in, next_in, *nets, args))
            elif script == "accel":
                losses.append(mod.td3_update(step, d, actor_in, next_in, *nets, args))
            else:
                losses.append(mod.td3_update(step, d, *nets, args))
        runs[version] = nets, losses
    (new_nets, new_losses), (ref_nets, ref_losses) = runs["new"], runs["plain"]
    assert "losses/actor_loss" in new_losses[1]
    for got, want in zip(new_losses, ref_losses, strict=True):
        assert got.keys() == want.keys()
        for k in got:
            torch.testing.assert_close(got[k], want[k], **TOL)
    for new_net, ref_net in zip(new_nets[:6], ref_nets[:6], strict=True):
        assert_same_parameters(new_net, ref_net)
    assert all(p.requires_grad for p in new_nets[2].parameters())
    init = make_nets(mod, kind, obs_dim, act_dim, args, "new")
    for i in (0, 1, 2, 4):  # the actor, its target, qf1 and its target moved
        assert not torch.allclose(next(new_nets[i].parameters()), next(init[i].parameters()))


def test_train_transformer_with_critic_ascent_equals_plain():
    """Two rounds of BC + critic ascent: the same transformer, target and losses; qf1 neither moved nor left frozen."""
    obs_dim, act_dim = 5, 2
    args = m.Args(bc_updates=2, critic_ascent=True, batch_size=32, dim_model=32, dim_feedforward=64, dropout=0.1)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    rb = filled_buffer(m, obs_dim, act_dim)
    runs = {}
    for version in ("new", "plain"):
        torch.manual_seed(0)
        transformer, target = (m.make_transformer(obs_dim, low, high, args) for _ in range(2))
        if version == "plain":
            transformer, target = plain(transformer), plain(target)
        qf1, actor = m.QNetwork(obs_dim, act_dim), m.Actor(obs_dim, low, high)
        traj = m.TrajectoryBuffer(400, 3, obs_dim, act_dim)
        w, v, _, _ = rb.windows(np.arange(400), 3)
        traj.windows[:], traj.valids[:], traj.count = w, v, 400
        opt = (m.adam if version == "new" else plain_adam)(transformer.parameters(), 1e-3)
        q_before = [p.clone() for p in qf1.parameters()]
        np.random.seed(2)
        torch.manual_seed(2)
        update = m.train_transformer if version == "new" else plain_train_transformer
        out = [update(traj, transformer, target, opt, qf1, actor, args, "cpu") for _ in range(2)]
        assert all(torch.equal(p, q) for p, q in zip(qf1.parameters(), q_before, strict=True))
        assert all(p.requires_grad for p in qf1.parameters())
        assert version == "plain" or qf1.fc1.weight.grad is None  # frozen: no gradient computed for it
        runs[version] = transformer, target, out
    for a, b in zip(runs["new"][2], runs["plain"][2], strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], **TOL)
    for i in (0, 1):
        assert_same_parameters(runs["new"][i], runs["plain"][i])


def test_soft_update_equals_lerp_loop():
    """Every script's soft_update (one torch._foreach_lerp_) against a lerp_ per parameter: the same values to the
    bit; networks that do not match fail."""
    low, high = -np.ones(2, np.float32), np.ones(2, np.float32)
    for name in SCRIPTS:
        torch.manual_seed(0)
        net, target = (m.make_transformer(5, low, high, m.Args(dim_model=16, dim_feedforward=32)) for _ in range(2))
        ref = [p.clone() for p in target.parameters()]
        with torch.no_grad():
            for p, tp in zip(net.parameters(), ref, strict=True):
                tp.lerp_(p, 0.005)
        load(name).soft_update(net, target, 0.005)
        for got, want in zip(target.parameters(), ref, strict=True):
            assert torch.equal(got, want)
        assert not torch.equal(next(target.parameters()), next(net.parameters()))
        with pytest.raises(RuntimeError):
            load(name).soft_update(m.QNetwork(5, 2), net, 0.005)
