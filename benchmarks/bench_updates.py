"""The update phase of every training script, before and after a change, on a fixed workload (issue 10).

Per path, the work the main loop does per environment step once learning runs (replay sample, TD3 update,
and for stage 1 the transformer's BC step every --bc-frequency steps, amortised), Hopper sizes (obs 11,
action 3), batch 256, one torch thread. The ManiSkill paths (--paths maniskill) do the same for the four ManiSkill
scripts at PushCube-v1 sizes (obs 35, action 8) with their defaults: --utd 0.5 TD3 updates per environment step
(one env's transition), batch 600 (stage 1, MLP and LSTM baselines) or 256 (stage 2, transformer baseline, BC).
The LSTM-accelerator paths (--paths lstm_pomdp) do the same for td3_accel_lstm_pomdp.py at velocity-only Hopper sizes
(obs 6, action 3) with its defaults (batch 256, history and context windows of 3, LSTM hidden 128): stage 1 is the
LSTM TD3 update plus the transformer's BC step every --bc-frequency steps, amortised; stage 2 the transformer actor's
TD3 update against the LSTM twin critics (after the critic warm-up: actor updates on).
"before" is the scripts at git revision --before (default: 33d768a for the MuJoCo paths, 2badf10 for the ManiSkill
and LSTM-accelerator ones; loaded from `git show`), "after" the working tree; both run in this process,
alternating within each round, and each round also measures the matmul rate (a 256x256x256 product). The
arithmetic limit of a path is its matmul FLOPs per environment step (counted by torch.utils.flop_counter on the
"before" version: the network shapes, policy and BC frequencies included) at that rate; the figure to quote is
limit / measured time.

    OMP_NUM_THREADS=1 python benchmarks/bench_updates.py --rounds 5 --steps 16
    OMP_NUM_THREADS=1 python benchmarks/bench_updates.py --rounds 5 --steps 16 --paths maniskill
    OMP_NUM_THREADS=1 python benchmarks/bench_updates.py --rounds 7 --steps 16 --paths lstm_pomdp
    OMP_NUM_THREADS=1 python benchmarks/bench_updates.py --memory   # peak RSS against --buffer-size
    OMP_NUM_THREADS=1 python benchmarks/bench_updates.py --candidates   # Adam and soft-update variants alone

--memory runs each path in a fresh process with its replay buffer filled to the given size and reports
the process's peak RSS (ru_maxrss) after a few updates. Never imported by the training scripts.
"""

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACT_DIM, BATCH = 11, 3, 256
MS_OBS_DIM, MS_ACT_DIM, MS_ENVS = 35, 8, 50  # PushCube-v1 (state, pd_joint_delta_pos), the scripts' --num-envs
PO_OBS_DIM = 6  # Hopper-v4 with --pomdp velocity (its 6 qvel entries); action 3 as above
# path: (script, its default replay-buffer size for this path)
PATHS = {
    "accel stage 1 (MLP TD3 + BC)": ("td3_accel_mujoco.py", 500_000),
    "accel stage 2 (transformer TD3)": ("td3_accel_mujoco.py", 100_000),
    "baseline MLP": ("baselines/td3_mlp_mujoco.py", 500_000),
    "baseline transformer": ("baselines/td3_transformer_mujoco.py", 500_000),
    "baseline LSTM": ("baselines/td3_lstm_mujoco.py", 500_000),
}
MANISKILL_PATHS = {
    "maniskill accel stage 1 (MLP TD3 + BC)": ("td3_accel_maniskill.py", 50_000),
    "maniskill accel stage 2 (transformer TD3)": ("td3_accel_maniskill.py", 10_000),
    "maniskill baseline MLP": ("baselines/td3_mlp_maniskill.py", 50_000),
    "maniskill baseline transformer": ("baselines/td3_transformer_maniskill.py", 50_000),
    "maniskill baseline LSTM": ("baselines/td3_lstm_maniskill.py", 50_000),
}
LSTM_POMDP_PATHS = {
    "lstm-pomdp accel stage 1 (LSTM TD3 + BC)": ("td3_accel_lstm_pomdp.py", 500_000),
    "lstm-pomdp accel stage 2 (transformer TD3, LSTM critics)": ("td3_accel_lstm_pomdp.py", 100_000),
}
GROUPS = {"mujoco": list(PATHS), "maniskill": list(MANISKILL_PATHS), "lstm_pomdp": list(LSTM_POMDP_PATHS),
          "all": [*PATHS, *MANISKILL_PATHS, *LSTM_POMDP_PATHS]}  # fmt: skip
PATHS.update(MANISKILL_PATHS)
PATHS.update(LSTM_POMDP_PATHS)
# the revisions before each family's issue-10 changes (lstm_pomdp: before the WindowLSTM rewrite of 395aff7)
BEFORE = {"mujoco": "33d768a", "maniskill": "2badf10", "lstm_pomdp": "2badf10"}
MEMORY_SIZES = [10_000, 15_000, 20_000, 100_000, 500_000]


def before_rev(path: str, before: str | None) -> str | None:
    """The 'before' revision of a path: --before if given ('' : none), else its family's."""
    if before is not None:
        return before or None
    return BEFORE[next(g for g in ("maniskill", "lstm_pomdp", "mujoco") if path in GROUPS[g])]


def load(script: str, rev: str | None):
    """The script as a module: the working tree's, or its text at git revision `rev`."""
    path = os.path.join(ROOT, script)
    if rev is not None:
        text = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{script}"], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip
        path = os.path.join(tempfile.mkdtemp(prefix="bench_updates_"), os.path.basename(script))
        with open(path, "w") as f:
            f.write(text)
    name = f"bench_{os.path.basename(script)[:-3]}_{rev or 'worktree'}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def adam(mod, params, lr):
    """The optimizer as the script's main() builds it (its `adam` helper where it has one)."""
    return mod.adam(params, lr) if hasattr(mod, "adam") else torch.optim.Adam(params, lr=lr)


def fill(mod, size: int, episode_len: int = 200, obs_dim: int = OBS_DIM):
    """The path's replay buffer, full, random transitions in episodes of `episode_len` (windows get padded)."""
    rb = mod.ReplayBuffer(size, obs_dim, ACT_DIM, "cpu")
    rng = np.random.default_rng(0)
    for start in range(0, size, 10_000):  # in chunks: no buffer-sized temporary counts in the peak RSS
        n, step = min(10_000, size - start), np.arange(start, min(start + 10_000, size)) % episode_len
        chunk = {"obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
                 "next_obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
                 "actions": rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
                 "rewards": rng.standard_normal(n, dtype=np.float32),
                 "terminations": (step == episode_len - 1).astype(np.float32)}  # fmt: skip
        if hasattr(rb, "episode_step"):
            chunk["episode_step"] = step
        for k, v in chunk.items():
            getattr(rb, k)[start : start + n] = torch.as_tensor(v)  # a numpy or a torch buffer's field
    rb.ptr, rb.count = 0, size
    return rb


def fill_maniskill(mod, size: int, episode_len: int = 50):
    """A ManiSkill path's per-env replay buffer (rows x MS_ENVS), full, random transitions; the envs' episodes of
    `episode_len` steps are staggered, so windows get padded."""
    rb = mod.ReplayBuffer(size, MS_ENVS, MS_OBS_DIM, MS_ACT_DIM, "cpu")
    g = torch.Generator().manual_seed(0)
    for start in range(0, rb.rows, 1_000):  # in chunks: no buffer-sized temporary counts in the peak RSS
        rows = slice(start, min(start + 1_000, rb.rows))
        n = rows.stop - rows.start
        step = (torch.arange(rows.start, rows.stop)[:, None] + torch.arange(MS_ENVS)) % episode_len
        rb.obs[rows] = torch.randn(n, MS_ENVS, MS_OBS_DIM, generator=g)
        rb.next_obs[rows] = torch.randn(n, MS_ENVS, MS_OBS_DIM, generator=g)
        rb.actions[rows] = torch.rand(n, MS_ENVS, MS_ACT_DIM, generator=g) * 2 - 1
        rb.rewards[rows] = torch.randn(n, MS_ENVS, generator=g)
        rb.terminations[rows] = (step == episode_len - 1).float()
        rb.episode_step[rows] = step
    rb.ptr, rb.count = 0, rb.rows
    return rb


def transformer_pair(mod, obs_dim: int, low, high, args) -> list:
    """Two Table-1 transformers in eval mode (main() switches to train mode only inside their updates)."""
    pair = [mod.make_transformer(obs_dim, low, high, args) for _ in range(2)]
    for net in pair:
        net.eval()
    return pair


def networks(path: str, mod, args, obs_dim: int, act_dim: int):
    """The path's actor, actor target, four critics (qf1, qf2 and their targets) and two optimizers as main() builds
    them, in td3_update's order; for stage 1 also the transformer, its target and optimizer (else None)."""
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    if "LSTM critics" in path:  # the LSTM accelerator's stage 2: the transformer actor, the LSTM twin critics
        qs = [mod.LSTMQNetwork(obs_dim, act_dim, args.lstm_hidden_size) for _ in range(4)]
        actor, actor_t = transformer_pair(mod, obs_dim, low, high, args)
    elif "LSTM" in path:
        actor, actor_t = (mod.LSTMActor(obs_dim, low, high, args.lstm_hidden_size) for _ in range(2))
        qs = [mod.LSTMQNetwork(obs_dim, act_dim, args.lstm_hidden_size) for _ in range(4)]
    else:
        qs = [mod.QNetwork(obs_dim, act_dim) for _ in range(4)]
        if "transformer" in path:
            actor, actor_t = transformer_pair(mod, obs_dim, low, high, args)
        else:
            actor, actor_t = mod.Actor(obs_dim, low, high), mod.Actor(obs_dim, low, high)
    actor_t.load_state_dict(actor.state_dict())
    for q, qt in zip(qs[:2], qs[2:], strict=True):
        qt.load_state_dict(q.state_dict())
    q_opt = adam(mod, list(qs[0].parameters()) + list(qs[1].parameters()), args.learning_rate)
    a_opt = adam(mod, actor.parameters(), args.learning_rate)
    if "stage 1" not in path:
        return (actor, actor_t, *qs, q_opt, a_opt), None
    transformer, transformer_t = transformer_pair(mod, obs_dim, low, high, args)
    transformer_t.load_state_dict(transformer.state_dict())
    return (actor, actor_t, *qs, q_opt, a_opt), (transformer, transformer_t, adam(mod, transformer.parameters(),
                                                                                   args.learning_rate))  # fmt: skip


def build_maniskill(path: str, mod, buffer_size: int):
    """A ManiSkill path's networks, optimizers and buffer; step(i) is the work of environment step i (one env's
    transition): the TD3 updates that --utd owes by then (counted as main() counts them) and, for stage 1, the BC
    step every --bc-frequency steps."""
    torch.manual_seed(0)
    args = mod.Args()
    rb = fill_maniskill(mod, buffer_size)
    nets, bc_nets = networks(path, mod, args, MS_OBS_DIM, MS_ACT_DIM)
    actor = nets[0]
    stage2 = path.startswith("maniskill accel stage 2")
    batch = args.finetune_batch_size if stage2 else args.batch_size
    context = args.history_len if "LSTM" in path else args.context_len if "transformer" in path else 0

    def update(u):
        data = rb.sample(batch, context)
        if bc_nets is not None:
            mod.td3_update(u, data, (data["obs"],), (data["next_obs"],), *nets, args)
        elif stage2:
            actor.train()
            mod.td3_update(u, data, (data["window"], data["valid"]), (data["next_window"], data["next_valid"]),
                           *nets, args)  # fmt: skip
            actor.eval()
        else:
            actor.train()
            mod.td3_update(u, data, *nets, args)
            actor.eval()

    if bc_nets is not None:
        traj = mod.TrajectoryBuffer(args.bc_buffer_size, args.context_len, MS_OBS_DIM, MS_ACT_DIM, "cpu")
        t = torch.arange(args.bc_buffer_size)
        w, v, _, _ = rb.windows(t // MS_ENVS, t % MS_ENVS, args.context_len)
        traj.add(w, v, torch.rand(args.bc_buffer_size, MS_ACT_DIM) * 2 - 1)

    def step(i):
        for u in range(int((i - 1) * args.utd) + 1, int(i * args.utd) + 1):
            update(u)
        if bc_nets is not None and i % args.bc_frequency == 0:
            mod.train_transformer(traj, *bc_nets, nets[2], actor, args)

    return step, args


def build_lstm_pomdp(path: str, mod, buffer_size: int):
    """An LSTM-accelerator path (td3_accel_lstm_pomdp.py, velocity-only Hopper) as main()'s loop runs it: the
    LSTMs read the history windows, the transformer its context windows (tails of one stored window); step(i) is
    the work of environment step i."""
    torch.manual_seed(0)
    np.random.seed(0)
    rb = fill(mod, buffer_size, obs_dim=PO_OBS_DIM)
    args = mod.Args(env_id="Hopper-v4")  # --pomdp velocity, the default
    nets, bc_nets = networks(path, mod, args, PO_OBS_DIM, ACT_DIM)
    actor = nets[0]

    def sample():
        data = rb.sample(args.batch_size, args.history_len, args.context_len)
        history = data["history"], data["history_valid"]
        next_history = data["next_history"], data["next_history_valid"]
        return data, history, next_history

    if bc_nets is not None:
        length = max(args.history_len, args.context_len)
        traj = mod.TrajectoryBuffer(args.bc_buffer_size, length, PO_OBS_DIM, ACT_DIM)
        w, v, _, _ = rb.windows(np.arange(args.bc_buffer_size), length)
        traj.windows[:], traj.valids[:], traj.count = w, v, args.bc_buffer_size

        def step(i):
            data, history, next_history = sample()
            mod.td3_update(i, data, history, next_history, history, next_history, *nets, args)
            if i % args.bc_frequency == 0:
                mod.train_transformer(traj, *bc_nets, nets[2], actor, args, "cpu")

    else:

        def step(i):
            data, history, next_history = sample()
            actor.train()
            mod.td3_update(i, data, history, next_history, (data["context"], data["context_valid"]),
                           (data["next_context"], data["next_context_valid"]), *nets, args)  # fmt: skip
            actor.eval()

    return step, args


def build(path: str, mod, buffer_size: int):
    """The networks, optimizers and buffer of `path`; returns step(i), the work of environment step i."""
    if path in MANISKILL_PATHS:
        return build_maniskill(path, mod, buffer_size)
    if path in LSTM_POMDP_PATHS:
        return build_lstm_pomdp(path, mod, buffer_size)
    torch.manual_seed(0)
    np.random.seed(0)
    rb = fill(mod, buffer_size)
    args = mod.Args(env_id="Hopper-v4")
    nets, bc_nets = networks(path, mod, args, OBS_DIM, ACT_DIM)
    actor = nets[0]

    if path.startswith("accel stage 1"):
        traj = mod.TrajectoryBuffer(args.bc_buffer_size, args.context_len, OBS_DIM, ACT_DIM)
        w, v, _, _ = rb.windows(np.arange(args.bc_buffer_size), args.context_len)
        traj.windows[:], traj.valids[:], traj.count = w, v, args.bc_buffer_size

        def step(i):
            data = rb.sample(BATCH)
            mod.td3_update(i, data, (data["obs"],), (data["next_obs"],), *nets, args)
            if i % args.bc_frequency == 0:
                mod.train_transformer(traj, *bc_nets, nets[2], actor, args, "cpu")

    elif path.startswith("accel stage 2"):

        def step(i):
            data = rb.sample(BATCH, args.context_len)
            actor.train()
            mod.td3_update(i, data, (data["window"], data["valid"]), (data["next_window"], data["next_valid"]),
                           *nets, args)  # fmt: skip
            actor.eval()

    elif path == "baseline transformer":

        def step(i):
            data = rb.sample(BATCH, args.context_len)
            actor.train()
            mod.td3_update(i, data, *nets, args)
            actor.eval()

    elif path == "baseline LSTM":

        def step(i):
            mod.td3_update(i, rb.sample(BATCH, args.history_len), *nets, args)

    else:

        def step(i):
            mod.td3_update(i, rb.sample(BATCH), *nets, args)

    return step, args


def cycle(args) -> int:
    """Environment steps after which the schedule repeats (policy and BC frequencies; ManiSkill: --utd updates per
    step, so an actor update every policy_frequency / utd steps)."""
    actor_every = round(args.policy_frequency / getattr(args, "utd", 1))
    return int(np.lcm(actor_every, getattr(args, "bc_frequency", 1)))


def matmul_rate(n: int = 256, reps: int = 50) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


# the LSTM scripts' hand-written recurrent products (WindowLSTM's addmm_, the LSTM baseline's and
# td3_accel_lstm_pomdp.py's, before and after 395aff7) are in place, which FlopCounterMode does not count by itself
# (benchmarks/bench_lstm_update.py's INPLACE)
def addmm_inplace_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def flops_per_step(step, args) -> float:
    n = cycle(args)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_inplace_flop}) as fc:
        for i in range(1, n + 1):
            step(i)
    return fc.get_total_flops() / n


def candidates(rounds: int, reps: int = 50) -> None:
    """The optimizer step and the target updates alone, on the parameters of the Table-1 transformer actor and of
    the twin 256x256 critics: Adam as a per-parameter loop (torch's CPU default), foreach and fused; soft updates as
    a loop of lerp_ and as one torch._foreach_lerp_."""
    mod = load("td3_accel_mujoco.py", None)
    low, high = -np.ones(ACT_DIM, np.float32), np.ones(ACT_DIM, np.float32)
    nets = {
        "transformer actor": [mod.make_transformer(OBS_DIM, low, high, mod.Args()) for _ in range(2)],
        "twin critics": [torch.nn.ModuleList([mod.QNetwork(OBS_DIM, ACT_DIM) for _ in range(2)]) for _ in range(2)],
    }
    adams = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    times = {(n, k): [] for n in nets for k in [*adams, "lerp loop", "foreach_lerp"]}
    for _ in range(rounds):
        for name, (net, target) in nets.items():
            params, tparams = list(net.parameters()), list(target.parameters())
            for p in params:
                p.grad = torch.randn_like(p)
            for kind, kw in adams.items():
                opt = torch.optim.Adam(params, lr=3e-4, **kw)
                opt.step()
                t = time.perf_counter()
                for _ in range(reps):
                    opt.step()
                times[name, kind].append((time.perf_counter() - t) / reps * 1000)
            with torch.no_grad():
                t = time.perf_counter()
                for _ in range(reps):
                    for p, tp in zip(params, tparams, strict=True):
                        tp.lerp_(p, 0.005)
                times[name, "lerp loop"].append((time.perf_counter() - t) / reps * 1000)
                t = time.perf_counter()
                for _ in range(reps):
                    torch._foreach_lerp_(tparams, params, 0.005)
                times[name, "foreach_lerp"].append((time.perf_counter() - t) / reps * 1000)
    print(f"ms per call, median of {rounds} rounds")
    for (name, kind), ts in times.items():
        print(f"{name}: {kind} {statistics.median(ts):.3f}")


def memory_child(path: str, rev: str | None, buffer_size: int) -> None:
    mod = load(PATHS[path][0], rev)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step, args = build(path, mod, buffer_size)
    for i in range(1, 2 * cycle(args) + 1):
        step(i)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{before / 1024:.1f} {peak / 1024:.1f}")


def memory(revs: dict | None, paths, sizes, label: str) -> None:
    """revs: each path's git revision, or None for the working tree."""
    print(f"peak RSS (MiB) of a process that imports the {label} script, builds the path's networks, optimizers "
          "and a full replay buffer, and runs a few updates (in parentheses: RSS after the imports)")  # fmt: skip
    print("| path | " + " | ".join(f"{s:,}" for s in sizes) + " |")
    for path in paths:
        row = []
        for size in sizes:
            cmd = [sys.executable, __file__, "--memory-child", path, "--size", str(size)]
            cmd += ["--before", revs[path] if revs else ""]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            row.append(f"{float(out[1]):.0f} ({float(out[0]):.0f})")
        print(f"| {path} | " + " | ".join(row) + " |", flush=True)


def split_paths(spec: str) -> list[str]:
    """--paths as names: split at the commas, except those inside a path's name (the longest known name wins)."""
    pieces, names = spec.split(","), []
    while pieces:
        n = next((k for k in range(len(pieces), 1, -1) if ",".join(pieces[:k]) in PATHS), 1)
        names.append(",".join(pieces[:n]))
        pieces = pieces[n:]
    return [x for x in names if x]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=16, help="environment steps timed per round (a multiple of 8)")
    p.add_argument("--before", default=None,
                   help="git revision of the 'before' scripts ('' : none; default: 33d768a for the MuJoCo paths, "
                   "2badf10 for the ManiSkill and LSTM-accelerator ones)")  # fmt: skip
    p.add_argument(
        "--paths",
        default="mujoco",
        help="comma-separated paths, or a group: mujoco (the default), maniskill, lstm_pomdp, all",
    )
    p.add_argument("--memory", action="store_true", help="peak RSS against buffer size instead of timing")
    p.add_argument("--candidates", action="store_true", help="time Adam and soft-update variants alone")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(1)
    paths = [path for x in split_paths(a.paths) for path in GROUPS.get(x, [x])]
    unknown = [x for x in paths if x not in PATHS]
    if unknown:
        p.error(f"unknown path {unknown[0]!r}; paths: {', '.join(PATHS)}; groups: {', '.join(GROUPS)}")
    if a.memory_child:
        return memory_child(a.memory_child, a.before or None, a.size)
    if a.candidates:
        return candidates(a.rounds)
    revs = {path: before_rev(path, a.before) for path in paths}
    if a.memory:
        memory(None, paths, MEMORY_SIZES, "working tree's")
        if all(revs.values()):
            memory(revs, paths, MEMORY_SIZES[-2:], "'before' (" + ", ".join(sorted(set(revs.values()))) + ")")
        return

    with_before = all(revs.values())  # --before '' gives None for every path
    versions = ["before", "after"] if with_before else ["after"]
    steps, flops, times = {}, {}, {}
    for path in paths:
        for version in versions:
            mod = load(PATHS[path][0], revs[path] if version == "before" else None)
            step, args = build(path, mod, 20_000)  # timing does not depend on the size (memory does)
            for i in range(1, cycle(args) + 1):  # warm-up
                step(i)
            flops[path, version] = flops_per_step(step, args)
            steps[path, version], times[path, version] = step, []
    rates = []
    for r in range(a.rounds):
        rates.append(matmul_rate())
        for path in paths:
            for version in versions if r % 2 == 0 else reversed(versions):
                np.random.seed(r)
                torch.manual_seed(r)  # the ManiSkill buffers sample with torch
                step = steps[path, version]
                t = time.perf_counter()
                for i in range(1, a.steps + 1):
                    step(i)
                times[path, version].append((time.perf_counter() - t) / a.steps * 1000)
        print(f"round {r}: matmul {rates[-1]:.1f} GFLOP/s; "
              + "; ".join(f"{path} " + "/".join(f"{times[path, v][-1]:.1f}" for v in versions) for path in paths)
              + " ms", flush=True)  # fmt: skip
    rate = statistics.median(rates)
    ref = "before" if with_before else "after"
    if with_before:
        print("before: " + "; ".join(f"{path} {revs[path]}" for path in paths))
    print(f"\nmatmul rate (256x256x256, median of {a.rounds} rounds, range {min(rates):.1f}-{max(rates):.1f}): "
          f"{rate:.1f} GFLOP/s. Limit: the {ref} version's matmul FLOPs per env step at that rate.")  # fmt: skip
    print("| path | GFLOP per env step | limit (ms) | " + " | ".join(f"{v} (ms, median)" for v in versions)
          + " | " + " | ".join(f"{v}: achieved/limit" for v in versions)
          + (" | after/before (median of rounds) |" if with_before else " |"))  # fmt: skip
    for path in paths:
        limit = flops[path, ref] / (rate * 1e9) * 1000
        meds = {v: statistics.median(times[path, v]) for v in versions}
        row = f"| {path} | {flops[path, ref] / 1e9:.3f} | {limit:.2f} | "
        row += " | ".join(f"{meds[v]:.2f}" for v in versions) + " | "
        row += " | ".join(f"{limit / meds[v]:.2f}" for v in versions) + " |"
        if with_before:
            ratio = statistics.median(x / y for x, y in zip(times[path, "after"], times[path, "before"], strict=True))
            row += f" {ratio:.2f} |"
        print(row)
    if with_before:
        for path in paths:
            if flops[path, "after"] != flops[path, "before"]:
                print(f"{path}: the after version executes {flops[path, 'after'] / 1e9:.3f} GFLOP per env step")


if __name__ == "__main__":
    main()
