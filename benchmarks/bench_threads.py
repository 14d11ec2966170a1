"""Time one stage-1 update (MLP TD3) and one stage-2 update (transformer TD3) of td3_accel_mujoco.py at
1 and 2 torch threads, interleaved over several rounds; prints per-round times, medians and ratios.

    python benchmarks/bench_threads.py --rounds 5 --steps 200
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(threads: int, steps: int, env_id: str) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, ROOT)
    import td3_accel_mujoco as m

    torch.set_num_threads(threads)
    args = m.Args(env_id=env_id)
    obs_dim, act_dim = {"Hopper-v4": (11, 3), "HalfCheetah-v4": (17, 6), "Ant-v4": (27, 8)}[env_id]
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    rb = m.ReplayBuffer(10_000, obs_dim, act_dim, "cpu")
    for i in range(10_000):
        o = np.random.randn(obs_dim)
        rb.add(o, o, np.zeros(act_dim), 0.0, False, i % 1000)
    nets = {}
    for kind in ["mlp", "transformer"]:
        make = (
            (lambda: m.Actor(obs_dim, low, high))
            if kind == "mlp"
            else (lambda: m.make_transformer(obs_dim, low, high, args))
        )
        actor, actor_t = make(), make()
        qs = [m.QNetwork(obs_dim, act_dim) for _ in range(4)]
        q_opt = torch.optim.Adam(list(qs[0].parameters()) + list(qs[1].parameters()))
        a_opt = torch.optim.Adam(actor.parameters())
        nets[kind] = (actor, actor_t, *qs, q_opt, a_opt)

    def step(kind, i):
        if kind == "mlp":
            d = rb.sample(256)
            m.td3_update(i, d, (d["obs"],), (d["next_obs"],), *nets[kind], args)
        else:
            d = rb.sample(256, 3)
            m.td3_update(i, d, (d["window"], d["valid"]), (d["next_window"], d["next_valid"]), *nets[kind], args)

    for kind in ["mlp", "transformer"]:
        n = steps if kind == "mlp" else steps // 4
        for i in range(5):
            step(kind, i)
        t = time.perf_counter()
        for i in range(n):
            step(kind, i)
        print(f"{kind} {(time.perf_counter() - t) / n * 1000:.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--worker", type=int, default=0)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.steps, a.env_id)
    times = {(t, k): [] for t in (1, 2) for k in ("mlp", "transformer")}
    for r in range(a.rounds):
        for threads in (1, 2):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(threads), "--steps", str(a.steps), "--env-id", a.env_id],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for line in out.strip().splitlines():
                kind, ms = line.split()
                times[(threads, kind)].append(float(ms))
            print(f"round {r} threads={threads}: {out.strip()}", flush=True)
    for kind in ("mlp", "transformer"):
        m1, m2 = statistics.median(times[(1, kind)]), statistics.median(times[(2, kind)])
        print(
            f"{kind} update, ms per step (median of {a.rounds}): 1 thread {m1:.2f}, 2 threads {m2:.2f}, "
            f"ratio 2/1 = {m2 / m1:.2f}"
        )


if __name__ == "__main__":
    main()
