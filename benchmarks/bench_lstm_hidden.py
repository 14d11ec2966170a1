"""Time one TD3 update of baselines/td3_lstm_mujoco.py (LSTM actor + twin LSTM critics, batch 256, window 3,
Hopper sizes) at LSTM hidden sizes 256 and 128, interleaved over rounds; prints medians and the ratio.

    python benchmarks/bench_lstm_hidden.py --rounds 3 --steps 40
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines"))
import td3_lstm_mujoco as m  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    obs_dim, act_dim = 11, 3
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    rb = m.ReplayBuffer(5000, obs_dim, act_dim, "cpu")
    for i in range(5000):
        rb.add(np.random.randn(obs_dim), np.random.randn(obs_dim), np.zeros(act_dim), 0.0, False, i % 100)
    times = {256: [], 128: []}
    for r in range(a.rounds):
        for hidden in times:
            args = m.Args(lstm_hidden_size=hidden)
            actor, actor_t = m.LSTMActor(obs_dim, low, high, hidden), m.LSTMActor(obs_dim, low, high, hidden)
            qs = [m.LSTMQNetwork(obs_dim, act_dim, hidden) for _ in range(4)]
            q_opt = torch.optim.Adam(list(qs[0].parameters()) + list(qs[1].parameters()))
            a_opt = torch.optim.Adam(actor.parameters())
            t = time.perf_counter()
            for i in range(a.steps):
                m.td3_update(i, rb.sample(256, 3), actor, actor_t, *qs, q_opt, a_opt, args)
            times[hidden].append((time.perf_counter() - t) / a.steps * 1000)
            print(f"round {r} hidden={hidden}: {times[hidden][-1]:.1f} ms per update", flush=True)
    m256, m128 = statistics.median(times[256]), statistics.median(times[128])
    print(f"median ms per update: hidden 256 {m256:.1f}, hidden 128 {m128:.1f}, ratio 256/128 = {m256 / m128:.2f}")


if __name__ == "__main__":
    main()
