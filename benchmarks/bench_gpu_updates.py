"""Eager update times on a CUDA GPU (issue 10's GPU part; no compiled or graph-captured path exists yet, so this
is the eager baseline such a path would be measured against): one TD3 update of td3_accel_mujoco.py's stage 1 (MLP
accelerator) and stage 2 (transformer actor on context windows), and of baselines/td3_lstm_mujoco.py, at Table 1's
sizes (batch 256, Hopper's 11-dim observations, 3-dim actions), median of repeats after warm-up, with a CUDA
synchronize around each timed block. Also checks the hand-written LSTM (WindowLSTM) on CUDA against the same
module on the CPU: outputs and gradients.

    python benchmarks/bench_gpu_updates.py --steps 200 --repeats 5
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import td3_accel_mujoco as accel  # noqa: E402


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch(dev, b=256, k=3, obs_dim=11, act_dim=3):
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[: b // 4, 0] = False  # some windows at an episode's start
    data = dict(obs=torch.randn(b, obs_dim, generator=g), next_obs=torch.randn(b, obs_dim, generator=g),
                actions=torch.rand(b, act_dim, generator=g) * 2 - 1, rewards=torch.randn(b, 1, generator=g),
                terminations=torch.zeros(b, 1), window=torch.randn(b, k, obs_dim, generator=g), valid=valid,
                next_window=torch.randn(b, k, obs_dim, generator=g), next_valid=valid.clone())  # fmt: skip
    return {key: v.to(dev) for key, v in data.items()}


def timed(update, steps, repeats, dev):
    for step in range(20):  # warm-up: kernels, allocator, cuBLAS handles
        update(step)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(dev)
        start = time.perf_counter()
        for step in range(steps):
            update(step)
        torch.cuda.synchronize(dev)
        times.append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(times), times


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu_updates.py: error: no CUDA device")
    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, TF32 matmul "
          f"{torch.backends.cuda.matmul.allow_tf32}")  # fmt: skip
    low, high = -np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    args = accel.Args()
    data = batch(dev)

    def nets(actor):
        q = [accel.QNetwork(11, 3).to(dev) for _ in range(4)]
        target = type(actor)(11, low, high).to(dev) if isinstance(actor, accel.Actor) else None
        return q, target

    # stage 1: the MLP accelerator's TD3 step
    actor = accel.Actor(11, low, high).to(dev)
    (qf1, qf2, qf1_t, qf2_t), actor_t = nets(actor)
    q_opt = accel.adam(list(qf1.parameters()) + list(qf2.parameters()), 3e-4)
    a_opt = accel.adam(actor.parameters(), 3e-4)

    def stage1(step):
        accel.td3_update(step, data, (data["obs"],), (data["next_obs"],), actor, actor_t, qf1, qf2, qf1_t, qf2_t,
                         q_opt, a_opt, args)  # fmt: skip

    # stage 2: the transformer actor's TD3 step on context windows
    tf, tf_t = (accel.make_transformer(11, low, high, args).to(dev) for _ in range(2))
    tf_opt = accel.adam(tf.parameters(), 3e-4)

    def stage2(step):
        tf.train()
        accel.td3_update(step, data, (data["window"], data["valid"]), (data["next_window"], data["next_valid"]), tf,
                         tf_t, qf1, qf2, qf1_t, qf2_t, q_opt, tf_opt, args)  # fmt: skip

    lstm = load("baselines/td3_lstm_mujoco.py", "_lstm")
    largs = lstm.Args()
    l_actor, l_actor_t = (lstm.LSTMActor(11, low, high, largs.lstm_hidden_size).to(dev) for _ in range(2))
    lq = [lstm.LSTMQNetwork(11, 3, largs.lstm_hidden_size).to(dev) for _ in range(4)]
    lq_opt, la_opt = (
        lstm.adam(list(lq[0].parameters()) + list(lq[1].parameters()), 3e-4),
        lstm.adam(l_actor.parameters(), 3e-4),
    )

    def lstm_step(step):
        lstm.td3_update(step, data, l_actor, l_actor_t, *lq, lq_opt, la_opt, largs)

    for name, update in [("stage 1 (MLP TD3)", stage1), ("stage 2 (transformer TD3)", stage2),
                         ("LSTM baseline TD3", lstm_step)]:  # fmt: skip
        median, times = timed(update, a.steps, a.repeats, dev)
        print(f"{name}: {median:.3f} ms per update (median of {a.repeats}; " + ", ".join(f"{t:.3f}" for t in times)
              + f"), peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")  # fmt: skip

    # the hand-written LSTM on CUDA against the same weights on the CPU
    torch.manual_seed(0)
    cpu_net = lstm.WindowLSTM(11, largs.lstm_hidden_size)
    gpu_net = lstm.WindowLSTM(11, largs.lstm_hidden_size).to(dev)
    gpu_net.load_state_dict(cpu_net.state_dict())
    w, v = data["window"].cpu().requires_grad_(), data["valid"].cpu()
    wg = w.detach().to(dev).requires_grad_()
    out_c, out_g = cpu_net(w, v), gpu_net(wg, v.to(dev))
    out_c.square().sum().backward()
    out_g.square().sum().backward()
    errs = [(out_c - out_g.cpu()).abs().max().item(), (w.grad - wg.grad.cpu()).abs().max().item()]
    pairs = zip(cpu_net.parameters(), gpu_net.parameters(), strict=True)
    errs += [(pc.grad - pg.grad.cpu()).abs().max().item() for pc, pg in pairs]
    print(f"WindowLSTM CUDA vs CPU: max abs difference of outputs, input and parameter gradients {max(errs):.2e}")


if __name__ == "__main__":
    main()
