"""Eager against --compile (issue 10): the time per environment step of the replay sample, the TD3 update and the
finite check, for the MLP baseline's update (baselines/td3_mlp_mujoco.py; td3_accel_mujoco.py's stage 1 is the same
update) and the transformer baseline's (baselines/td3_transformer_mujoco.py; stage 2's is the same), at Table 1's
sizes (batch 256, Hopper's 11-dim observations and 3-dim actions, 100k transitions in the buffer).

Variants, alternated within each round (the median of the rounds is quoted, after a warm-up whose time, the
compilation's for the compiled variants, is reported on its own):
  CPU:  eager and compiled, each with numpy's index draw and the per-step finite check (the scripts' CPU path);
  CUDA: eager with numpy's index draw and the per-step check, eager and compiled (CUDA graphs, mode
        reduce-overhead) with the indices drawn on the device and the deferred check (the scripts' CUDA path), with a
        synchronize around each timed block. The buffer is on the device in all three (issue 25: one ReplayBuffer;
        the numpy buffer on the host, the path before issue 10, is gone).

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py --rounds 7 --steps 16          # CPU (and CUDA if present)
    python benchmarks/bench_compile.py --device cuda --rounds 7 --steps 200

By default inductor's cache is a fresh temporary directory, so the compile time is a first run's; --warm-cache
keeps the user's cache (what a second run of a script sees).
"""

import argparse
import functools
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS, ACT, BATCH, FILL = 11, 3, 256, 100_000


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dynamo looks the module up by name
    spec.loader.exec_module(module)
    return module


def filled_buffer(m, cls, device, windows: bool):
    """FILL random transitions in episodes of 1000 steps, the same for every variant."""
    rb = cls(FILL, OBS, ACT, device)
    rng = np.random.default_rng(0)
    data = dict(obs=rng.normal(size=(FILL, OBS)), next_obs=rng.normal(size=(FILL, OBS)),
                actions=rng.uniform(-1, 1, (FILL, ACT)), rewards=rng.normal(size=FILL),
                terminations=np.zeros(FILL))  # fmt: skip
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in data.items()}
    if windows:
        state["episode_step"] = torch.arange(FILL) % 1000
    rb.load_state_dict({"ptr": 0, "count": FILL, **state})
    return rb


def variant(m, device, compiled: bool, on_device: bool, windows: bool):
    """A step function (sample, update, finite check) on fresh networks, and the finite check to flush."""
    torch.manual_seed(0)
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    args = m.Args(batch_size=BATCH)
    make = (lambda: m.make_transformer(OBS, low, high, args)) if windows else (lambda: m.Actor(OBS, low, high))
    actor, actor_target = make().to(device), make().to(device)
    qs = [m.QNetwork(OBS, ACT).to(device) for _ in range(4)]
    actor_target.load_state_dict(actor.state_dict())
    actor_target.eval()
    q_opt = m.adam(list(qs[0].parameters()) + list(qs[1].parameters()), args.learning_rate)
    a_opt = m.adam(actor.parameters(), args.learning_rate)
    rb = filled_buffer(m, functools.partial(m.ReplayBuffer, torch_rng=on_device), device, windows)
    fns = m.compiled_losses(device) if compiled else m.EAGER
    finite = m.FiniteCheck(deferred=on_device)

    def step(global_step: int) -> None:
        data = rb.sample(BATCH, args.context_len) if windows else rb.sample(BATCH)
        actor.train()
        losses = m.td3_update(global_step, data, actor, actor_target, *qs, q_opt, a_opt, args, fns)
        actor.eval()
        finite(losses, global_step)

    return step, finite


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(path: str, device, rounds: int, steps: int) -> None:
    windows = "transformer" in path
    m = load(path, "bench_" + os.path.basename(path)[:-3])
    kinds = [("eager", False, False), ("compiled", True, False)]
    if device.type == "cuda":
        kinds = [("eager, numpy draw", False, False), ("eager, device draw", False, True),
                 ("compiled, device draw", True, True)]  # fmt: skip
    variants, warmup = {}, {}
    for name, compiled, on_device in kinds:
        step, finite = variant(m, device, compiled, on_device, windows)
        sync(device)
        start = time.perf_counter()
        for s in range(4):  # the critic-only and the actor steps, compiled (CUDA graphs: recorded) on first use
            step(s)
        finite.flush()
        sync(device)
        warmup[name] = time.perf_counter() - start
        variants[name] = step, finite
    times = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            step, finite = variants[name]
            sync(device)
            start = time.perf_counter()
            for s in range(steps):
                step(4 + r * steps + s)
            finite.flush()  # the deferred check's one sync, once per logging interval in a run
            sync(device)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    base = statistics.median(times[list(variants)[0]])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"  {os.path.basename(path)} [{device.type}] {name}: {med:.2f} ms per step (range {min(ts):.2f}-"
            f"{max(ts):.2f}), {base / med:.2f}x the first; warm-up (4 steps) {warmup[name]:.1f} s",
            flush=True,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=16, help="environment steps per variant per round")
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    p.add_argument("--warm-cache", action="store_true", help="keep inductor's cache (default: a fresh one)")
    a = p.parse_args()
    if not a.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_")
    devices = [torch.device(d) for d in ("cpu", "cuda") if a.device in ("all", d)]
    if torch.device("cuda") in devices and not torch.cuda.is_available():
        if a.device == "cuda":
            sys.exit("bench_compile.py: error: no CUDA device")
        devices.remove(torch.device("cuda"))
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA device"),
        flush=True,
    )
    for device in devices:
        for path in ("baselines/td3_mlp_mujoco.py", "baselines/td3_transformer_mujoco.py"):
            bench(path, device, a.rounds, a.steps)


if __name__ == "__main__":
    main()
