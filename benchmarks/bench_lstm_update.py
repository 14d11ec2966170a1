"""Time one TD3 update of baselines/td3_lstm_mujoco.py (LSTM actor and twin LSTM critics, batch 256, window 3,
Hopper sizes, hidden 128, 1 thread) against the plain version it replaced (an nn.LSTMCell stepped by autograd,
and the update as it was before, which tests/test_lstm_speed_equivalence.py keeps as the reference),
interleaved over rounds, with the machine's matrix-multiply rate measured in the same run. Prints ms per
update, the matmul FLOPs of an update (counted by torch.utils.flop_counter on the plain version, policy and
non-policy steps averaged) and the fraction of the arithmetic limit (those FLOPs at the measured matmul rate)
each version reaches.

    python benchmarks/bench_lstm_update.py --rounds 5 --steps 20
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
# the plain version, the reference, and the module under test, as the equivalence tests hold them
from test_lstm_speed_equivalence import m, make_nets, plain_td3_update  # noqa: E402


# the hand-written LSTM's recurrent products are in place, which FlopCounterMode does not count by itself
def addmm_inplace_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


INPLACE = {torch.ops.aten.addmm_: addmm_inplace_flop}
UPDATES = {"plain": plain_td3_update, "new": m.td3_update}


# ---------------------------------------------------------------------------------------------------------------
def matmul_rate(shapes, reps: int = 50) -> float:
    """GFLOP/s of torch matrix products of the given (n, k, m) shapes, all together."""
    mats = [(torch.randn(n, k), torch.randn(k, mm)) for n, k, mm in shapes]
    for a, b in mats:
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        for a, b in mats:
            a @ b
    return sum(2 * n * k * mm for n, k, mm in shapes) * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    obs_dim, act_dim, batch, window = 11, 3, 256, 3
    args = m.Args(lstm_hidden_size=a.hidden, history_len=window, batch_size=batch)
    np.random.seed(0)
    rb = m.ReplayBuffer(5000, obs_dim, act_dim, "cpu")
    for i in range(5000):
        rb.add(np.random.randn(obs_dim), np.random.randn(obs_dim), np.zeros(act_dim), 0.0, False, i % 100)
    data = [rb.sample(batch, window) for _ in range(a.steps)]

    flops = {}
    for version in ("plain", "new"):
        update, nets = UPDATES[version], make_nets(version, obs_dim, act_dim, a.hidden)
        counts = []
        for step in (1, 2):  # without and with the actor update (policy_frequency 2)
            with FlopCounterMode(display=False, custom_mapping=INPLACE) as fc:
                update(step, data[0], *nets, args)
            counts.append(fc.get_total_flops())
        flops[version] = sum(counts) / 2
        print(f"{version}: matmul GFLOP per update {counts[0] / 1e9:.3f} (critics only), {counts[1] / 1e9:.3f} "
              f"(critics and actor), mean {flops[version] / 1e9:.3f}")  # fmt: skip

    # the square 256 product, and the LSTM's and heads' own shapes (forward products)
    h = a.hidden
    shapes = {"256x256x256": [(256, 256, 256)],
              "update shapes": [(batch * window, obs_dim, 4 * h), (batch, h, 4 * h), (batch, h + act_dim, 256),
                                (batch, 256, 256)]}  # fmt: skip
    times = {"plain": [], "new": []}
    rates = {name: [] for name in shapes}
    for r in range(a.rounds):
        for name, s in shapes.items():
            rates[name].append(matmul_rate(s))
        for version in times if r % 2 == 0 else reversed(times):
            update, nets = UPDATES[version], make_nets(version, obs_dim, act_dim, a.hidden)
            update(0, data[0], *nets, args)  # warm-up
            t = time.perf_counter()
            for i in range(a.steps):
                update(i, data[i], *nets, args)
            times[version].append((time.perf_counter() - t) / a.steps * 1000)
        print(f"round {r}: plain {times['plain'][-1]:.1f} ms, new {times['new'][-1]:.1f} ms per update; matmul "
              + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " GFLOP/s", flush=True)  # fmt: skip
    rate = statistics.median(rates["256x256x256"])
    limit = flops["plain"] / (rate * 1e9) * 1000
    print("median matmul rate: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in rates.items())
          + " GFLOP/s")  # fmt: skip
    print(f"arithmetic limit: {flops['plain'] / 1e9:.3f} GFLOP at {rate:.1f} GFLOP/s (256x256) = {limit:.1f} ms")
    for version, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{version}: median {med:.1f} ms per update, fraction of the limit {limit / med:.2f} "
            f"(its own matmul FLOPs at that rate: {flops[version] / (rate * 1e9) * 1000 / med:.2f})"
        )
    ratio = statistics.median(n / p for n, p in zip(times["new"], times["plain"], strict=True))
    print(f"median ratio new/plain {ratio:.2f}")


if __name__ == "__main__":
    main()
