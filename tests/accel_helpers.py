"""Helpers for tests/test_accel_*.py (subprocess runs of td3_accel_mujoco.py, TensorBoard event files), and the
plain versions issue 10's speed changes replaced, which tests/test_speed_equivalence*.py and
tests/test_lstm_speed_equivalence.py keep as the reference (they act on the modules passed in, whichever script's).
A plain module rather than conftest.py so that it cannot clash with other test files' fixtures."""

import contextlib
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Flags that keep an end-to-end run of td3_accel_mujoco.py small (a few seconds on one core).
TINY_ACCEL = [
    "--batch-size", "32", "--buffer-size", "64", "--accel-buffer-size", "1000", "--dim-model", "32",
    "--dim-feedforward", "64", "--num-heads", "2", "--eval-episodes", "1", "--num-threads", "1",
    "--critic-warmup", "20",
]  # fmt: skip


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    # gymnasium's "v4 is out of date" DeprecationWarning would add lines to stderr that are not the script's
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def run_script(script: str, args: list[str], timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run a repo script; `cwd` (default: the repo root) matters for files MuJoCo writes, e.g. MUJOCO_LOG.TXT."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)],
        cwd=REPO_ROOT if cwd is None else str(cwd),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(module, args: list, cwd=None) -> subprocess.CompletedProcess:
    """`python script.py args` without a new interpreter: sys.argv set, `module.cli()` called, its return code (or
    SystemExit's, for tyro's own errors) returned with stdout and stderr as a subprocess's would be. Saves the ~3 s
    start-up of a subprocess. Output is caught on file descriptors 1 and 2, so MuJoCo's C-level warnings count too;
    `cwd` matters for files MuJoCo writes (MUJOCO_LOG.TXT). Torch's thread count and determinism flag, which main()
    sets, are restored afterwards."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    argv, here = sys.argv, os.getcwd()
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
    try:
        sys.argv = [os.path.basename(module.__file__), *map(str, args)]
        os.chdir(REPO_ROOT if cwd is None else str(cwd))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = module.cli()
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        out.flush(), err.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])
        sys.argv = argv
        os.chdir(here)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read())
        f.close()
    return subprocess.CompletedProcess(sys.argv, rc, *texts)


def start_script(script: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, *map(str, args)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_dirs(run_dir) -> list[str]:
    """The run directories (one per run) created under `run_dir`."""
    return sorted(d for d in glob.glob(os.path.join(str(run_dir), "*")) if os.path.isdir(d))


def single_run_dir(run_dir) -> str:
    dirs = run_dirs(run_dir)
    assert len(dirs) == 1, f"expected exactly one run directory under {run_dir}, found {dirs}"
    return dirs[0]


def load_events(run_path: str):
    """EventAccumulator over the single TensorBoard event file of a run (all scalars and text kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(os.path.join(run_path, "events.out.tfevents.*"))
    assert len(files) == 1, f"expected one event file in {run_path}, found {files}"
    ea = EventAccumulator(files[0], size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def load_run_events(run_path: str):
    """EventAccumulator over a whole run directory, as TensorBoard reads it: a resumed run has one event file per
    process, and the purge marker each resumed writer left (purge_step) drops what the interrupted one logged after
    its saved step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(run_path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def checked(proc, rc=0):
    """A finished run_cli / subprocess run: the expected exit code (output shown if not) and no traceback."""
    assert proc.returncode == rc, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def load_pt(path) -> dict:
    """A checkpoint or resume.pt, whole (args, generator states and all)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(a, b, where=""):
    """Exact equality of nested state dicts (tensors bit for bit)."""
    import torch

    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a} != {b}"


def assert_each_step_once(ea) -> None:
    """Every scalar tag of a (possibly resumed) run logs each step once, in order."""
    for tag in ea.Tags()["scalars"]:
        steps = [s for s, _ in scalars(ea, tag)]
        assert steps == sorted(set(steps)), f"{tag} logged a step twice (or out of order): {steps}"


def scalars(ea, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def text_summary(ea, tag: str = "hyperparameters") -> str:
    events = ea.Tensors(f"{tag}/text_summary")
    assert events, f"no text summary {tag}"
    return b"".join(events[0].tensor_proto.string_val).decode()


# ---------------------------------------------------------------------------------------------------------------
# Speed-equivalence tests: the plain versions (the reference) and the comparisons the test files share
TOL = dict(rtol=1e-4, atol=1e-5)
# Adam's steps are lr-sized whatever the gradient's size: a parameter whose gradient is near 0 can move by more than
# float32 resolution from rounding alone, a wrong gradient moves it by ~lr
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)


def load_script(path, mod_name: str):
    """A script as a module, once per name (registered in sys.modules: inspect.getsource needs it)."""
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[mod_name]


def plain_layer_forward(self, h, padding_mask, last_only: bool = False):
    """EncoderLayer.forward before issue 10: nn.MultiheadAttention (sequence-first inside) on the same parameters."""
    x = self.norm1(h)
    q = x[:, -1:] if last_only else x
    h = h[:, -1:] if last_only else h
    h = h + self.dropout1(self.attn(q, x, x, key_padding_mask=padding_mask, need_weights=False)[0])
    return h + self.dropout2(self.ff(self.norm2(h)))


def plain_attention(net):
    """The same network, same parameters, with nn.MultiheadAttention called as before."""
    for layer in net.modules():
        if type(layer).__name__ == "EncoderLayer":
            layer.forward = plain_layer_forward.__get__(layer)
    return net


def plain_adam(params, lr):
    import torch

    return torch.optim.Adam(params, lr=lr)


def plain_soft_update(net, target, tau):
    """A lerp_ per parameter (the scripts' one foreach call gives the same values to the bit)."""
    import torch

    with torch.no_grad():
        for p, tp in zip(net.parameters(), target.parameters(), strict=True):
            tp.lerp_(p, tau)


def plain_td3_update(step, data, actor_in, next_actor_in, critic_in, next_critic_in, actor, actor_target, qf1, qf2,
                     qf1_target, qf2_target, q_optimizer, actor_optimizer, args) -> dict:  # fmt: skip
    """The scripts' td3_update before issue 10 (qf1 not frozen in the actor loss): the actor reads actor_in /
    next_actor_in (observations or windows), the critics critic_in / next_critic_in (observations or windows)."""
    import torch
    import torch.nn.functional as F

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
    if step % args.policy_frequency == 0:
        actor_loss = -qf1(*critic_in, actor(*actor_in)).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target)]:
            plain_soft_update(net, target, args.tau)
        losses["losses/actor_loss"] = actor_loss.detach()
    return losses


def plain_train_transformer(trajectory, transformer, transformer_target, optimizer, qf1, actor, args, *sample_args,
                            batch_size: int) -> dict:  # fmt: skip
    """The accelerator scripts' train_transformer before issue 10 (without --bc-clear; qf1 not frozen in the
    critic ascent): minibatches trajectory.sample(batch_size, *sample_args)."""
    import torch
    import torch.nn.functional as F

    transformer.train()
    bc_losses, ascent_qs = [], []
    for _ in range(args.bc_updates):
        windows, valids, targets = trajectory.sample(batch_size, *sample_args)
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


def make_td3_nets(mod, kind, obs_dim, act_dim, args, version, device="cpu"):
    """td3_update's networks and optimizers from script module `mod` (seed 0): actor, target, twin critics and targets
    (kind mlp: MLP actor; transformer: the transformer actor, plain attention for version 'plain'; lstm: LSTM actor
    and critics), the critics' and the actor's optimizer (the script's adam, or plain_adam for 'plain')."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    if kind == "lstm":
        actors = [mod.LSTMActor(obs_dim, low, high, args.lstm_hidden_size) for _ in range(2)]
        qs = [mod.LSTMQNetwork(obs_dim, act_dim, args.lstm_hidden_size) for _ in range(4)]
    else:
        if kind == "mlp":
            actors = [mod.Actor(obs_dim, low, high) for _ in range(2)]
        else:
            actors = [mod.make_transformer(obs_dim, low, high, args) for _ in range(2)]
            if version == "plain":
                actors = [plain_attention(a) for a in actors]
        qs = [mod.QNetwork(obs_dim, act_dim) for _ in range(4)]
    nets = [net.to(device) for net in (*actors, *qs)]
    make = mod.adam if version == "new" else plain_adam
    opts = make(list(nets[2].parameters()) + list(nets[3].parameters()), 1e-3), make(nets[0].parameters(), 1e-3)
    return (*nets, *opts)


def make_bc_nets(mod, obs_dim, act_dim, args, version):
    """train_transformer's networks from script module `mod` (seed 0): the transformer and its target (plain
    attention for version 'plain'), qf1, the MLP actor, and the transformer's optimizer (adam or plain_adam)."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    transformer, target = (mod.make_transformer(obs_dim, low, high, args) for _ in range(2))
    if version == "plain":
        transformer, target = plain_attention(transformer), plain_attention(target)
    qf1, actor = mod.QNetwork(obs_dim, act_dim), mod.Actor(obs_dim, low, high)
    opt = (mod.adam if version == "new" else plain_adam)(transformer.parameters(), 1e-3)
    return transformer, target, qf1, actor, opt


def random_windows(batch, steps, obs_dim, seed=0):
    """Windows with every left-padding length 0..K-1, garbage (nonzero) in the padding."""
    import torch

    g = torch.Generator().manual_seed(seed)
    first = torch.arange(batch) % steps  # first valid position
    valid = torch.arange(steps)[None] >= first[:, None]
    return torch.randn(batch, steps, obs_dim, generator=g), valid


def assert_same_parameters(net, ref):
    import torch

    for (name, p), q in zip(net.state_dict().items(), ref.state_dict().values(), strict=True):
        if name.endswith("attn.in_proj_bias"):  # the key bias: its gradient is 0 but for rounding (softmax ignores a
            p, q = p[: len(p) // 3], q[: len(q) // 3]  # shift of all scores), which Adam turns into lr-sized steps
        torch.testing.assert_close(p, q, **PARAM_TOL, msg=lambda s, name=name: f"{name}: {s}")


def assert_attention_equals_multihead_attention(encoder_layer, last_only: bool, train: bool):
    """An EncoderLayer class against plain_layer_forward: outputs, input and parameter gradients (dropout only with
    last_only, where both draw the same masks), and padding never reaching the output."""
    import torch

    torch.manual_seed(0)
    layer = encoder_layer(32, 4, 64, dropout=0.1 if train and last_only else 0.0).train(train)
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


def assert_same_outputs_and_gradients(new, ref, window, valid):
    """Two actors in train mode (the same dropout draws): the same outputs and parameter gradients."""
    import torch

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


def adam_steps(make, init, grads):
    """An optimizer made by make(params, 1e-3) on copies of `init`, stepped once per gradient list in `grads`."""
    params = [p.clone().requires_grad_(True) for p in init]
    opt = make(params, 1e-3)
    for g in grads:
        for p, gi in zip(params, g, strict=True):
            p.grad = gi.clone()
        opt.step()
    return params, opt


def assert_soft_update_equals_lerp_loop(soft_update, net, target, tau, mismatched, name=""):
    """soft_update(net, target, tau) against a lerp_ per parameter, to the bit; a `mismatched` network fails."""
    import pytest
    import torch

    ref = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p, tp in zip(net.parameters(), ref, strict=True):
            tp.lerp_(p, tau)
    soft_update(net, target, tau)
    for got, want in zip(target.parameters(), ref, strict=True):
        assert torch.equal(got, want), name
    assert not torch.equal(next(target.parameters()), next(net.parameters()))
    with pytest.raises(RuntimeError):
        soft_update(mismatched, net, tau)


def assert_same_td3_losses(new_losses, ref_losses):
    """The losses of a run of td3_update steps (the second with the actor's) against the plain run's."""
    import torch

    assert "losses/actor_loss" in new_losses[1]
    for got, want in zip(new_losses, ref_losses, strict=True):
        assert got.keys() == want.keys()
        for k in got:
            torch.testing.assert_close(got[k], want[k], **TOL)


def assert_td3_networks_moved(nets, init):
    """The actor, its target, qf1 and its target (of the six networks in td3_update's order) moved from `init`."""
    import torch

    for i in (0, 1, 2, 4):
        assert not torch.allclose(next(nets[i].parameters()), next(init[i].parameters()))


def assert_same_bc_runs(new, ref):
    """Runs of train_transformer, (transformer, target, the rounds' losses), against the plain one's: the same losses
    and parameters."""
    import torch

    for a, b in zip(new[2], ref[2], strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], **TOL)
    for i in (0, 1):
        assert_same_parameters(new[i], ref[i])


class NumpyReplayBuffer:
    """The scripts' numpy replay buffer before issue 25 made one buffer for CPU and GPU: the reference the single
    buffer must hold, gather and save (resume.pt's format) exactly as."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations", "episode_step")

    def __init__(self, size: int, obs_dim: int, act_dim: int, device):
        self.size, self.device = size, device
        self.obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.actions = np.zeros((size, act_dim), dtype=np.float32)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.terminations = np.zeros(size, dtype=np.float32)
        self.episode_step = np.zeros(size, dtype=np.int64)
        self.ptr, self.count = 0, 0

    def add(self, obs, next_obs, action, reward, terminated, episode_step=0) -> None:
        i = self.ptr
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, action
        self.rewards[i], self.terminations[i], self.episode_step[i] = reward, terminated, episode_step
        self.ptr = (self.ptr + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def windows(self, idx, context_len: int):
        offsets = np.arange(context_len - 1, -1, -1)
        src = (idx[:, None] - offsets[None, :]) % self.size
        age = (self.ptr - 1 - idx) % self.size
        valid = (self.episode_step[idx][:, None] >= offsets) & (age[:, None] + offsets <= self.count - 1)
        window = self.obs[src] * valid[..., None]
        next_window = np.concatenate([window[:, 1:], self.next_obs[idx][:, None]], axis=1)
        next_valid = np.concatenate([valid[:, 1:], np.ones((len(idx), 1), dtype=bool)], axis=1)
        return window, valid, next_window, next_valid

    def recent(self, n: int) -> dict:
        idx = (self.ptr - min(n, self.count) + np.arange(min(n, self.count))) % self.size
        return {k: getattr(self, k)[idx] for k in self.FIELDS}

    def extend(self, data: dict) -> None:
        n = min(len(data["obs"]), self.size)
        idx = (self.ptr + np.arange(n)) % self.size
        for k, v in data.items():
            getattr(self, k)[idx] = v[len(v) - n :]
        self.ptr, self.count = (self.ptr + n) % self.size, min(self.count + n, self.size)

    def gather(self, idx, context_len: int = 0) -> dict:
        data = dict(obs=self.obs[idx], next_obs=self.next_obs[idx], actions=self.actions[idx],
                    rewards=self.rewards[idx, None], terminations=self.terminations[idx, None])  # fmt: skip
        if context_len:
            data["window"], data["valid"], data["next_window"], data["next_valid"] = self.windows(idx, context_len)
        return {k: torch.as_tensor(v, device=self.device) for k, v in data.items()}

    def state_dict(self) -> dict:
        return {"ptr": self.ptr, "count": self.count,
                **{k: torch.from_numpy(getattr(self, k)[: self.count]) for k in self.FIELDS}}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for k in self.FIELDS:
            getattr(self, k)[: len(state[k])] = state[k]
        self.ptr, self.count = state["ptr"], state["count"]
