"""Size, write time and load time of td3_accel_mujoco.py's resumable state (resume.pt) for an Ant-v4-sized run
(observation 27, action 8): the default networks, targets and optimizers, a full T, and a replay buffer holding 15k,
100k or 500k random transitions (added with the script's own ReplayBuffer.add / extend), written with the script's
own save_checkpoint (temporary file, fsync, rename) and read back with its load_resume_state; for comparison, the same
state with the buffers as NumPy arrays, as resume.pt held them before (pickled arrays). Prints a markdown table.

    python benchmarks/bench_resume.py --transitions 15000 100000 500000 --repeats 3
"""

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import td3_accel_mujoco as m  # noqa: E402

OBS_DIM, ACT_DIM = 27, 8  # Ant-v4


def learners(args: m.Args) -> dict:
    """The networks, targets and optimizers of a run with default flags, every optimizer holding its Adam state."""
    low, high = -np.ones(ACT_DIM, np.float32), np.ones(ACT_DIM, np.float32)
    nets = {"actor": m.Actor(OBS_DIM, low, high), "actor_target": m.Actor(OBS_DIM, low, high)}
    for name in ("qf1", "qf2", "qf1_target", "qf2_target"):
        nets[name] = m.QNetwork(OBS_DIM, ACT_DIM)
    for name in ("transformer", "transformer_target"):
        nets[name] = m.make_transformer(OBS_DIM, low, high, args)
    groups = {"q_optimizer": ["qf1", "qf2"], "actor_optimizer": ["actor"], "transformer_optimizer": ["transformer"]}
    optimizers = {}
    for name, owners in groups.items():
        params = [p for owner in owners for p in nets[owner].parameters()]
        optimizers[name] = m.adam(params, args.learning_rate)
        sum((p**2).sum() for p in params).backward()  # one step creates Adam's moment estimates
        optimizers[name].step()
    return {**nets, **optimizers}


def filled_buffers(args: m.Args, transitions: int):
    rng = np.random.default_rng(0)
    rb = m.ReplayBuffer(args.accel_buffer_size, OBS_DIM, ACT_DIM, "cpu")
    for i in range(10):  # a few one at a time, the rest in chunks, as stage 2's prefill does
        rb.add(rng.standard_normal(OBS_DIM), rng.standard_normal(OBS_DIM), rng.uniform(-1, 1, ACT_DIM), 1.0, False, i)
    for start in range(10, transitions, 50_000):
        n = min(50_000, transitions - start)
        rb.extend({"obs": rng.standard_normal((n, OBS_DIM), np.float32),
                   "next_obs": rng.standard_normal((n, OBS_DIM), np.float32),
                   "actions": rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
                   "rewards": rng.standard_normal(n, np.float32), "terminations": np.zeros(n, np.float32),
                   "episode_step": (start + np.arange(n)) % 1000})  # fmt: skip
    trajectory = m.TrajectoryBuffer(args.bc_buffer_size, args.context_len, OBS_DIM, ACT_DIM)
    for _ in range(args.bc_buffer_size):  # T is full after its first 10k stage-1 steps
        trajectory.add(rng.standard_normal((args.context_len, OBS_DIM)), np.ones(args.context_len, bool),
                       rng.uniform(-1, 1, ACT_DIM))  # fmt: skip
    return rb, trajectory


def resume_state(args: m.Args, nets: dict, rb, trajectory, transitions: int) -> dict:
    """What main()'s resume_state() holds at a stage-1 step (same keys, same objects)."""
    env = m.make_env("Pendulum-v1", args.seed)  # only for its generators' states
    state = {"script": os.path.basename(m.__file__), "stage": 1, "global_step": transitions,
             "stage1_end": args.accel_steps, "from_checkpoint": False, "args": asdict(args),
             **{k: v.state_dict() for k, v in nets.items()}, "rb": rb.state_dict(),
             "trajectory": trajectory.state_dict(), "episode_count": transitions // 1000, "episode_step": 0,
             "dagger": False, "last_eval": {"accelerator": -1.0, "transformer": -1.0}, "stage_losses": {},
             "env_rng": env.unwrapped.np_random.bit_generator.state,
             "action_space_rng": env.action_space.np_random.bit_generator.state, "python_rng": random.getstate(),
             "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state(), "cuda_rng": None}  # fmt: skip
    env.close()
    return state


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, nargs="+", default=[15_000, 100_000, 500_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: the system's temporary directory)")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    args = m.Args(env_id="Ant-v4")
    if max(opts.transitions) > args.accel_buffer_size:
        parser.error(f"at most --accel-buffer-size ({args.accel_buffer_size}) transitions")
    nets = learners(args)
    run = tempfile.mkdtemp(prefix="bench_resume_", dir=opts.dir)
    rows = []
    try:
        for transitions in opts.transitions:
            rb, trajectory = filled_buffers(args, transitions)
            state = resume_state(args, nets, rb, trajectory, transitions)
            path = os.path.join(run, m.RESUME_FILE)
            writes, loads = [], []
            for _ in range(opts.repeats):
                start = time.perf_counter()
                m.save_checkpoint(path, state)
                writes.append(time.perf_counter() - start)
                start = time.perf_counter()
                loaded = m.load_resume_state(run)
                loads.append(time.perf_counter() - start)
                assert loaded["rb"]["count"] == transitions
            size = os.path.getsize(path) / 2**20
            # for comparison, the buffers as NumPy arrays (before): pickle protocol 2, torch.save's, writes an array's
            # bytes as a latin-1 string encoded in UTF-8, where a tensor's raw bytes go into the archive as they are
            as_arrays = {**state, **{k: {n: v.numpy() if isinstance(v, torch.Tensor) else v
                                         for n, v in state[k].items()} for k in ("rb", "trajectory")}}  # fmt: skip
            array_writes = []
            for _ in range(opts.repeats):
                start = time.perf_counter()
                m.save_checkpoint(path, as_arrays)
                array_writes.append(time.perf_counter() - start)
            array_size = os.path.getsize(path) / 2**20
            write, load = statistics.median(writes), statistics.median(loads)
            rows.append(f"| {transitions:,} | {size:.0f} | {write:.2f} | {size / write:.0f} | {load:.2f} "
                        f"| {array_size:.0f} / {statistics.median(array_writes):.2f} |")  # fmt: skip
            print(f"{transitions} transitions: {size:.1f} MiB, writes {[round(t, 3) for t in writes]} s, "
                  f"loads {[round(t, 3) for t in loads]} s; as arrays {array_size:.1f} MiB, writes "
                  f"{[round(t, 3) for t in array_writes]} s", file=sys.stderr, flush=True)  # fmt: skip
            del rb, trajectory, state, loaded, as_arrays
    finally:
        shutil.rmtree(run)
    print(f"Machine: {machine()}. Written to {opts.dir or tempfile.gettempdir()}.\n")
    print(f"```bash\npython benchmarks/bench_resume.py {' '.join(sys.argv[1:])}\n```\n")
    print(f"| transitions in the replay buffer | resume.pt (MiB) | write, median of {opts.repeats} (s) | MiB/s "
          f"| load (s) | before (buffers as NumPy arrays): MiB / write (s) |\n|---|---|---|---|---|---|")  # fmt: skip
    print("\n".join(rows))


if __name__ == "__main__":
    main()
