"""Issue 10's GPU path, checked on the CPU: --compile (torch.compile of the TD3 losses) against the eager update, the
device replay buffer (torch storage and gathering, the CUDA path's) against the numpy one for the same indices, and
the deferred finite check (one host sync per logging step on CUDA) against the per-step one; end-to-end tiny runs
with --compile. benchmarks/bench_compile.py times compiled against eager.

Tolerance: inductor fuses and reorders float32 operations (a fused kernel sums in another order than the eager one),
so compiled losses, gradients and parameters after a few Adam steps agree with eager to float32 rounding, not to the
bit: TOL as tests/test_speed_equivalence.py (1e-4 relative); a wrong loss or gradient is off by far more. Shapes are
Pendulum's (obs 3, action 1) with batch 64 in every test, so the compiled code is built once and inductor's cache
serves the later compilations (the first compilation of a loss takes 10-30 s on one thread)."""

import copy
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import NumpyReplayBuffer, checked, load_events, run_cli, single_run_dir  # noqa: E402
from test_baselines import load  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)
# Adam's steps are lr-sized whatever the gradient's size: rounding alone moves a parameter whose gradient is near 0
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)
OBS, ACT, BATCH = 3, 1, 64
NAMES = ["mlp", "accel", "transformer"]
LOW, HIGH = -2 * np.ones(ACT, np.float32), 2 * np.ones(ACT, np.float32)
TAGS_COMMON = ["charts/episodic_return", "charts/SPS", "losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss"]
TINY_TF = dict(dim_model=8, dim_feedforward=16)  # the e2e runs' transformer, also the unit tests'


def random_data(g: torch.Generator, b: int = BATCH) -> dict:
    return dict(obs=torch.randn(b, OBS, generator=g), next_obs=torch.randn(b, OBS, generator=g),
                actions=torch.rand(b, ACT, generator=g) * 4 - 2, rewards=torch.randn(b, 1, generator=g),
                terminations=(torch.rand(b, 1, generator=g) < 0.1).float())  # fmt: skip


def assert_close_nets(nets, refs, tol, grads: bool = False):
    for net, ref in zip(nets, refs, strict=True):
        for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
            a, b = (p.grad, q.grad) if grads else (p, q)
            assert (a is None) == (b is None), name
            if name.endswith("attn.in_proj_bias") and not grads:  # the key bias: its gradient is 0 but for rounding
                a, b = a[: len(a) // 3], b[: len(b) // 3]  # (softmax ignores a shift), which Adam makes lr-sized steps
            if a is not None:
                torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


def assert_same_runs(runs: dict, loss: str):
    """runs: name -> (each update's losses, the gradients' networks (lists), the networks after the updates)."""
    (le, ge, ne), (lc, gc, nc) = runs["eager"], runs["compiled"]
    assert [sorted(x) for x in le] == [sorted(x) for x in lc] and any(loss in x for x in le)
    for a, b in zip(le, lc, strict=True):
        for k in a:
            torch.testing.assert_close(b[k], a[k], **TOL)
    for a, b in zip(gc, ge, strict=True):
        assert_close_nets(a, b, TOL, grads=True)
    assert_close_nets(nc, ne, PARAM_TOL)


# ---------------------------------------------------------------------------------------------------------------
# MLP baseline
def mlp_learners(m, seed: int = 0):
    torch.manual_seed(seed)
    actor, actor_t = m.Actor(OBS, LOW, HIGH), m.Actor(OBS, LOW, HIGH)
    qs = [m.QNetwork(OBS, ACT) for _ in range(4)]
    for net, target in [(actor, actor_t), (qs[0], qs[2]), (qs[1], qs[3])]:
        target.load_state_dict(net.state_dict())
    q_opt = m.adam(list(qs[0].parameters()) + list(qs[1].parameters()), 1e-3)
    return [actor, actor_t, *qs], q_opt, m.adam(actor.parameters(), 1e-3)


@pytest.mark.slow
def test_mlp_compiled_update_is_the_eager_one():
    """Losses, gradients (of the first update: critics' TD loss, actor's policy loss) and all six networks after
    four updates (two with the actor's), compiled against eager from the same networks, data and noise draws."""
    m = load("mlp")
    args = m.Args(batch_size=BATCH)
    runs = {}
    for name, fns in [("eager", m.EAGER), ("compiled", m.compiled_losses(torch.device("cpu")))]:
        nets, q_opt, a_opt = mlp_learners(m)
        g, losses, grads = torch.Generator().manual_seed(1), [], None
        torch.manual_seed(2)  # the smoothing noise
        for step in range(4):
            losses.append(m.td3_update(step, random_data(g), *nets, q_opt, a_opt, args, fns))
            if step == 0:
                grads = [copy.deepcopy([nets[0], nets[2], nets[3]])]  # deepcopy keeps .grad
        runs[name] = losses, grads, nets
    assert_same_runs(runs, "losses/actor_loss")
    assert not torch.equal(
        runs["eager"][2][2].fc1.weight, mlp_learners(m)[0][2].fc1.weight
    )  # the updates did move them


def filled(buffer, n: int, seed: int, episode_len: int = 0):
    """n random transitions added in order; when the buffer stores episode steps, in episodes of episode_len steps,
    the first 3 steps into its episode, so that windows reach before the ring's first slot and, once it has wrapped
    round, into the overwritten part: both must be invalid."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        step = ((t + 3) % episode_len,) if episode_len else ()
        buffer.add(rng.normal(size=OBS), rng.normal(size=OBS), rng.uniform(-2, 2, ACT), rng.normal(),
                   bool(rng.random() < 0.1), *step)  # fmt: skip
    return buffer


def device_buffer(m):
    """The script's replay buffer on the CUDA path: one class drawing indices with torch's generator."""
    return lambda *a: m.ReplayBuffer(*a, torch_rng=True)


def assert_same_state(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and a[k].device == b[k].device, k
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("n", [5, 37, 100])  # part-filled, full (size 37), wrapped round the ring
def test_mlp_device_buffer_holds_and_gathers_what_the_numpy_one_does(n):
    m = load("mlp")
    reference = type("MlpReference", (NumpyReplayBuffer,), {"FIELDS": NumpyReplayBuffer.FIELDS[:-1]})  # no episode_step
    ref, dev = (filled(cls(37, OBS, ACT, "cpu"), n, seed=n) for cls in (reference, device_buffer(m)))
    idx = np.arange(ref.count)
    a, b = ref.gather(idx), dev.gather(torch.as_tensor(idx))
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert_same_state(dev.state_dict(), ref.state_dict())  # resume.pt's keys and tensors
    assert all(v.untyped_storage().nbytes() == v.nbytes for v in dev.state_dict().values() if torch.is_tensor(v))
    back = device_buffer(m)(37, OBS, ACT, "cpu")
    back.load_state_dict(ref.state_dict())
    assert_same_state(back.state_dict(), ref.state_dict())
    torch.manual_seed(0)
    sample = dev.sample(16)  # indices from torch's generator, in range
    assert sample["obs"].shape == (16, OBS) and sample["rewards"].shape == (16, 1)
    assert all((dev.obs[: dev.count] == row).all(1).any() for row in sample["obs"])


# ---------------------------------------------------------------------------------------------------------------
# td3_accel_mujoco.py (stage 1's MLP TD3 update and BC step, stage 2's transformer TD3 update)
def window_data(g: torch.Generator, k: int = 3) -> dict:
    valid = torch.rand(BATCH, k, generator=g) < 0.7
    valid[:, -1] = True
    next_valid = torch.cat([valid[:, 1:], torch.ones(BATCH, 1, dtype=torch.bool)], 1)
    return dict(
        random_data(g),
        window=torch.randn(BATCH, k, OBS, generator=g) * valid[..., None],
        valid=valid,
        next_window=torch.randn(BATCH, k, OBS, generator=g) * next_valid[..., None],
        next_valid=next_valid,
    )


def accel_learners(m, seed: int = 0):
    torch.manual_seed(seed)
    args = m.Args(batch_size=BATCH, critic_ascent=True, **TINY_TF)
    actor, actor_t = m.Actor(OBS, LOW, HIGH), m.Actor(OBS, LOW, HIGH)
    tf, tf_t = m.make_transformer(OBS, LOW, HIGH, args), m.make_transformer(OBS, LOW, HIGH, args)
    qs = [m.QNetwork(OBS, ACT) for _ in range(4)]
    for net, target in [(actor, actor_t), (tf, tf_t), (qs[0], qs[2]), (qs[1], qs[3])]:
        target.load_state_dict(net.state_dict())
    tf_t.eval()
    opts = [m.adam(list(qs[0].parameters()) + list(qs[1].parameters()), 1e-3), m.adam(actor.parameters(), 1e-3),
            m.adam(tf.parameters(), 1e-3)]  # fmt: skip
    return args, [actor, actor_t, tf, tf_t, *qs], opts


@pytest.mark.slow
def test_accel_compiled_updates_are_the_eager_ones(monkeypatch):
    """Stage 1 (MLP TD3 and the BC + critic-ascent step on T) and stage 2 (transformer TD3 on context windows, in
    train mode: dropout), compiled against eager: losses, first-update gradients and all networks after four steps.
    fallback_random: the compiled dropout draws its masks from torch's generator as eager does, so the two runs
    draw the same masks (inductor's own RNG would draw other, equally random ones)."""
    from torch._inductor import config

    monkeypatch.setattr(config, "fallback_random", True)
    m = load("accel")
    runs = {}
    for name, fns in [("eager", m.EAGER), ("compiled", m.compiled_losses(torch.device("cpu")))]:
        args, nets, (q_opt, a_opt, tf_opt) = accel_learners(m)
        actor, actor_t, tf, tf_t, qf1, qf2, qf1_t, qf2_t = nets
        trajectory = m.TrajectoryBuffer(BATCH, 3, OBS, ACT)
        g, losses, grads = torch.Generator().manual_seed(1), [], []
        for _ in range(BATCH):
            d = window_data(g)
            trajectory.add(d["window"][0].numpy(), d["valid"][0].numpy(), d["actions"][0].numpy())
        torch.manual_seed(2)  # noise and dropout
        np.random.seed(3)  # T's samples
        for step in range(4):
            d = window_data(g)
            losses.append(m.td3_update(step, d, (d["obs"],), (d["next_obs"],), actor, actor_t, qf1, qf2, qf1_t, qf2_t,
                                       q_opt, a_opt, args, losses_fns=fns))  # fmt: skip
            losses.append(m.train_transformer(trajectory, tf, tf_t, tf_opt, qf1, actor, args, "cpu", fns))
            if step == 0:
                grads.append(copy.deepcopy([actor, tf]))  # the actor's loss, the last critic-ascent step's
            tf.train()
            losses.append(m.td3_update(step, d, (d["window"], d["valid"]), (d["next_window"], d["next_valid"]), tf,
                                       tf_t, qf1, qf2, qf1_t, qf2_t, q_opt, tf_opt, args, losses_fns=fns))  # fmt: skip
            tf.eval()
            if step == 0:
                grads.append(copy.deepcopy([tf, qf1, qf2]))  # the transformer's actor loss, the critics' TD loss
        runs[name] = losses, grads, nets
    assert_same_runs(runs, "losses/critic_ascent_q")


@pytest.mark.slow
def test_transformer_compiled_update_is_the_eager_one(monkeypatch):
    """The transformer baseline's TD3 update (windows, train mode: dropout), compiled against eager, as stage 2's."""
    from torch._inductor import config

    monkeypatch.setattr(config, "fallback_random", True)  # the same dropout masks (see the test above)
    m, accel = load("transformer"), load("accel")
    runs = {}
    for name, fns in [("eager", m.EAGER), ("compiled", m.compiled_losses(torch.device("cpu")))]:
        args, nets, _ = accel_learners(accel)  # the same networks, state_dict for state_dict
        tf, tf_t, *qs = (copy_into(m, net, args) for net in nets[2:])
        q_opt = m.adam(list(qs[0].parameters()) + list(qs[1].parameters()), 1e-3)
        tf_opt = m.adam(tf.parameters(), 1e-3)
        g, losses, grads = torch.Generator().manual_seed(1), [], None
        torch.manual_seed(2)
        for step in range(4):
            tf.train()
            losses.append(m.td3_update(step, window_data(g), tf, tf_t, *qs, q_opt, tf_opt, args, fns))
            tf.eval()
            if step == 0:
                grads = [copy.deepcopy([tf, qs[0], qs[1]])]
        runs[name] = losses, grads, [tf, tf_t, *qs]
    assert_same_runs(runs, "losses/actor_loss")


def copy_into(m, net, args):
    """The transformer baseline's network of the same kind as td3_accel_mujoco.py's `net`, with its state."""
    new = m.make_transformer(OBS, LOW, HIGH, args) if hasattr(net, "layers") else m.QNetwork(OBS, ACT)
    new.load_state_dict(net.state_dict())
    return new.train(net.training)


@pytest.mark.parametrize("name", ["accel", "transformer"])
@pytest.mark.parametrize("n", [5, 37, 100])  # part-filled, full (size 37), wrapped round the ring
def test_window_device_buffer_holds_and_gathers_what_the_numpy_one_does(name, n):
    """Transitions and the context windows of s and s' (valid only inside the episode and the ring's filled,
    not overwritten part) for every index, the state_dict, and for td3_accel_mujoco.py recent() and extend()
    (stage 2's prefill)."""
    m = load(name)
    ref, dev = (filled(cls(37, OBS, ACT, "cpu"), n, seed=n, episode_len=50) for cls in
                (NumpyReplayBuffer, device_buffer(m)))  # fmt: skip
    idx = np.arange(ref.count)
    a, b = ref.gather(idx, 3), dev.gather(torch.as_tensor(idx), 3)
    assert list(a) == list(b) and not a["valid"].all()  # some windows reach before their episode's start
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert_same_state(dev.state_dict(), ref.state_dict())
    assert all(v.untyped_storage().nbytes() == v.nbytes for v in dev.state_dict().values() if torch.is_tensor(v))
    back = device_buffer(m)(37, OBS, ACT, "cpu")
    back.load_state_dict(ref.state_dict())
    assert_same_state(back.state_dict(), ref.state_dict())
    if name == "transformer":  # no stage 2 to prefill
        return
    for k, v in ref.recent(20).items():
        assert v.dtype == dev.recent(20)[k].dtype and np.array_equal(v, dev.recent(20)[k]), k
    ref2, dev2 = (filled(cls(16, OBS, ACT, "cpu"), 3, seed=0, episode_len=7) for cls in
                  (NumpyReplayBuffer, device_buffer(m)))  # fmt: skip
    ref2.extend(ref.recent(20))
    dev2.extend(ref.recent(20))
    assert_same_state(dev2.state_dict(), ref2.state_dict())
    torch.manual_seed(0)
    assert dev.sample(16, 3)["window"].shape == (16, 3, OBS)


# ---------------------------------------------------------------------------------------------------------------
# The deferred finite check
def test_finite_check_deferred_names_the_first_bad_loss_and_its_step():
    m = load("mlp")
    nan, one = torch.tensor(float("nan")), torch.tensor(1.0)
    steps = {5: {"a": one, "b": one}, 6: {"a": one, "b": torch.tensor(float("inf"))}, 7: {"a": nan, "b": nan}}
    now = m.FiniteCheck(deferred=False)
    now(steps[5], 5)
    with pytest.raises(m.DivergenceError, match=r"^b is inf at global step 6$"):
        now(steps[6], 6)
    later = m.FiniteCheck(deferred=True)
    for step, losses in steps.items():
        later(losses, step)  # nothing raised: no sync
    with pytest.raises(m.DivergenceError, match=r"^b is inf at global step 6$"):
        later.flush()
    later.flush()  # checked once
    later({"a": one}, 8)
    later.flush()
    # a non-finite action reports the deferred loss that caused it
    later(steps[7], 9)
    with pytest.raises(m.DivergenceError, match=r"^a is nan at global step 9$"):
        m.check_action(np.array([np.nan]), "actor", 10, later)


def nan_at(module, step: int, loss: str):
    """module.td3_update with `loss` made NaN at global step `step`."""
    update = module.td3_update

    def wrapped(global_step, *a, **kw):
        losses = update(global_step, *a, **kw)
        if global_step == step:
            losses[loss] = losses[loss] * float("nan")
        return losses

    return wrapped


# a later --buffer-size wins
TINY_RUN = ["--env-id", "Pendulum-v1", "--batch-size", BATCH, "--buffer-size", 1000, "--num-threads", 1,
            "--eval-episodes", 1]  # fmt: skip
# each script's tiny networks and budget, as main()'s arguments and as flags (the steps: 100 random, 200 learning)
TF_CLI = [x for k, v in TINY_TF.items() for x in (f"--{k.replace('_', '-')}", v)]
TINY_ARGS = {
    "mlp": dict(total_timesteps=300),
    "transformer": dict(total_timesteps=300, **TINY_TF),
    "accel": dict(accel_steps=200, finetune_steps=100, buffer_size=200, accel_buffer_size=1000, **TINY_TF),
}
TINY_CLI = {
    "mlp": ["--total-timesteps", 300],
    "transformer": ["--total-timesteps", 300, *TF_CLI],
    "accel": [
        "--accel-steps",
        200,
        "--finetune-steps",
        100,
        "--buffer-size",
        200,
        "--accel-buffer-size",
        1000,
        *TF_CLI,
    ],
}
TAGS = {"mlp": TAGS_COMMON + ["eval/return"], "transformer": TAGS_COMMON + ["eval/return"],
        "accel": TAGS_COMMON + ["losses/bc_loss", "eval/accelerator_return", "eval/transformer_return"]}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_deferred_check_stops_at_the_bad_step_and_writes_no_checkpoint_after_it(name, tmp_path, monkeypatch):
    """The CUDA path forced on the CPU (device buffer, deferred check): a NaN loss at step 130 is found at the next
    checkpoint write (step 140) and reported with its own step; resume.pt stays the one of step 120."""
    m = load(name)
    monkeypatch.setattr(m, "DEVICE_PATH", True)
    monkeypatch.setattr(m, "td3_update", nan_at(m, 130, "losses/qf2_loss"))
    args = m.Args(env_id="Pendulum-v1", batch_size=BATCH, num_threads=1, learning_starts=100, checkpoint_frequency=20,
                  log_frequency=1000, eval_frequency=1000, run_dir=str(tmp_path),
                  **{"buffer_size": 1000, **TINY_ARGS[name]})  # fmt: skip
    seen = []
    with pytest.raises(m.DivergenceError, match=r"^losses/qf2_loss is nan at global step 130$"):
        m.main(args, on_step=lambda loop: seen.append((loop["global_step"], loop["rb"].torch_rng)))
    assert seen[-1][0] == 140 and {kind for _, kind in seen} == {True}
    state = torch.load(os.path.join(single_run_dir(tmp_path), "resume.pt"), weights_only=False)
    assert state["global_step"] == 120


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compile_tiny_run_to_final_pt(name, tmp_path):
    m = load(name)
    argv = [*TINY_RUN, "--compile", "--learning-starts", 100, "--eval-frequency", 300, "--log-frequency", 100,
            "--run-dir", tmp_path, *TINY_CLI[name]]  # fmt: skip
    proc = checked(run_cli(m, argv, cwd=tmp_path))
    assert "--compile: the first updates compile" in proc.stdout
    run = single_run_dir(tmp_path)
    assert os.path.isfile(os.path.join(run, "final.pt")) and not os.path.exists(os.path.join(run, "resume.pt"))
    tags = load_events(run).Tags()["scalars"]
    assert set(TAGS[name]) <= set(tags), tags


@pytest.mark.parametrize("name", NAMES)
def test_compile_without_a_cpp_compiler_exits_2_with_one_line(name, tmp_path, monkeypatch):
    from torch._inductor import config

    monkeypatch.setattr(config.cpp, "cxx", (None, "/nonexistent/g++"))
    proc = checked(run_cli(load(name), [*TINY_RUN, "--compile", "--run-dir", tmp_path], cwd=tmp_path), rc=2)
    assert proc.stderr.count("\n") == 1 and "error: --compile on the CPU needs a C++ compiler" in proc.stderr
