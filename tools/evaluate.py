"""Evaluate a saved agent: deterministic episodes of a checkpoint written by any of the nine training scripts.

    python tools/evaluate.py runs/RUN/final.pt --episodes 50
    python tools/evaluate.py runs/RUN/accelerated.pt --policy accelerator --csv accel.csv
    MUJOCO_GL=egl python tools/evaluate.py runs/RUN/final.pt --episodes 5 --video videos/RUN   # needs moviepy

It reads the args stored in the checkpoint (final.pt, accelerated.pt or resume.pt) and which script wrote it (the
checkpoint's `script` where it has one, else told from its args: accel_steps, history_len, context_len and num_envs
say which of the nine), imports that script as a module and uses its own make_env(s), networks and evaluate
function: the same env (a `--pomdp velocity` run is evaluated velocity-only), the same deterministic policy, and the
same episodes for the same seeds. Episode k uses seed SEED + k (as the scripts' evaluate does); the default SEED is
the one the run's own evaluation at the checkpoint's step used (RUN's seed + 10000 + step), so the first
--eval-episodes episodes of a final.pt or accelerated.pt repeat the run's last in-run evaluation, and where the run's
TensorBoard events lie beside the checkpoint that logged value is printed next to them.

Policies: `transformer` (the accel scripts' default: the transformer actor) or `accelerator` (their MLP or LSTM
accelerator, as it was at the end of stage 1); a baseline has one policy, its actor (MLP, LSTM or transformer).
ManiSkill episodes run one at a time in one CPU env process (--num-eval-envs of the run ran them side by side: the
same seeds and initial states; PhysX's history dependence and batch rounding may move the last digits).

Output: mean, sample std (ddof=1), median, min and max of the returns (and of the success rates for ManiSkill), and
with --csv one row per episode. --video DIR records episodes with gymnasium's RecordVideo as the scripts'
--capture-video does (episodes 0, 1, 8, 27, 64, ...; MuJoCo only; needs moviepy).

Bad input (a missing, truncated or foreign file, a policy the checkpoint lacks, no moviepy for --video) prints one
line on stderr and exits 2; a non-finite action exits 1. Checkpoints are pickles: load only files you trust, as the
training scripts do. Never imported by the training scripts.
"""

import argparse
import csv
import dataclasses
import importlib.util
import os
import sys
import warnings
import zipfile

import numpy as np

if __package__:  # imported as tools.evaluate
    from .helptext import HelpFormatter
else:  # run as python tools/evaluate.py: its folder is on sys.path
    from helptext import HelpFormatter

PROG = "evaluate"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# script name (as a checkpoint's `script` holds it) -> path in the repository
SCRIPTS = {
    "td3_accel_mujoco.py": "td3_accel_mujoco.py",
    "td3_accel_lstm_pomdp.py": "td3_accel_lstm_pomdp.py",
    "td3_accel_maniskill.py": "td3_accel_maniskill.py",
    **{f"td3_{arch}_{family}.py": f"baselines/td3_{arch}_{family}.py"
       for family in ("mujoco", "maniskill") for arch in ("mlp", "lstm", "transformer")},
}  # fmt: skip
ACCEL = ("td3_accel_mujoco.py", "td3_accel_lstm_pomdp.py", "td3_accel_maniskill.py")


class UsageError(Exception):
    pass


def load(path: str) -> dict:
    import torch

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise UsageError(f"{path}: not a whole checkpoint (truncated or damaged: {type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - a foreign file can fail to unpickle in any way
        raise UsageError(f"{path}: not a checkpoint of the training scripts ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("args"), dict) or "global_step" not in ckpt:
        raise UsageError(f"{path}: not a checkpoint of the training scripts (no args and global_step)")
    return ckpt


def which_script(ckpt: dict, path: str) -> str:
    """The name of the script that wrote the checkpoint: its own word where it has one (resume.pt, ManiSkill's
    accelerated.pt and final.pt), else from its args' fields, checked against its networks."""
    if "script" in ckpt:
        if ckpt["script"] not in SCRIPTS:
            raise UsageError(f"{path}: written by {ckpt['script']}, not one of the nine training scripts")
        return ckpt["script"]
    args = ckpt["args"]
    if "accel_steps" in args and "total_timesteps" not in args and "transformer" in ckpt:
        name = "td3_accel_maniskill.py" if "num_envs" in args else None
        name = name or ("td3_accel_lstm_pomdp.py" if "history_len" in args else "td3_accel_mujoco.py")
    elif "total_timesteps" in args and "accel_steps" not in args and "transformer" not in ckpt:
        arch = "lstm" if "history_len" in args else "transformer" if "context_len" in args else "mlp"
        name = f"td3_{arch}_{'maniskill' if 'num_envs' in args else 'mujoco'}.py"
    else:
        raise UsageError(f"{path}: cannot tell which training script wrote it (its args have neither accel_steps "
                         "nor total_timesteps alone)")  # fmt: skip
    if "actor" not in ckpt:
        raise UsageError(f"{path}: no actor weights (not a checkpoint of {name})")
    return name


def import_script(script: str):
    """The script as a module (its main() is not run), once per process."""
    name = f"_evaluated_{script[:-3]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, SCRIPTS[script]))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_args(mod, saved: dict, path: str):
    """The run's Args: its saved values; a field the script gained since keeps its default."""
    fields = {f.name for f in dataclasses.fields(mod.Args)}
    unknown = sorted(set(saved) - fields)
    if unknown:
        raise UsageError(f"{path}: its args have fields the script no longer has ({', '.join(unknown[:3])}); "
                         "evaluate it with the version of the script that wrote it")  # fmt: skip
    return dataclasses.replace(mod.Args(), **{k: v for k, v in saved.items() if k != "num_threads"})


@dataclasses.dataclass
class Agent:
    """What evaluating one checkpoint needs: the env and the script's own evaluate call, for one episode."""

    script: str
    mod: object
    args: object
    policy: str  # transformer, accelerator or actor
    maniskill: bool
    env: object = None
    run_episode: object = None  # run_episode(seed) -> {"return": ..., (ManiSkill) "success_once", "success_at_end"}


class StepCounter:
    """Counts an env's steps since its last reset (the scripts' evaluate returns no episode lengths)."""

    def __init__(self, env):
        self.env, self.steps = env, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, *a, **kw):
        self.steps = 0
        return self.env.reset(*a, **kw)

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


def load_weights(net, state: dict, what: str, script: str, path: str):
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise UsageError(f"{path}: its {what} weights do not fit {script}'s network (written by another version of "
                         "the script?)") from None  # fmt: skip
    return net.eval()  # acting is dropout-free, as in the scripts


def build(agent: Agent, ckpt: dict, path: str, device, video: str | None) -> None:
    """The script's env and policy network with the checkpoint's weights, and one-episode evaluation through the
    script's own evaluate function."""
    import torch

    mod, args, script, policy = agent.mod, agent.args, agent.script, agent.policy
    if agent.maniskill:
        envs = mod.make_envs(args, 1, True, device)  # evaluation runs to the time limit, as the scripts' eval envs
        obs_dim, act_dim, low, high = envs.obs_dim, envs.act_dim, envs.low.cpu().numpy(), envs.high.cpu().numpy()
        agent.env = StepCounter(envs)
    else:
        extra = {"pomdp": args.pomdp} if hasattr(args, "pomdp") else {}
        env = mod.make_env(args.env_id, args.seed + 1, **extra, capture_video=video is not None, video_dir=video or "")
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
        agent.env = StepCounter(env)
    if ckpt.get("obs_dim", obs_dim) != obs_dim or ckpt.get("act_dim", act_dim) != act_dim:
        agent.env.close()
        raise UsageError(f"{path}: made for observations/actions of {ckpt['obs_dim']}/{ckpt['act_dim']} dims, the "
                         f"env gives {obs_dim}/{act_dim}")  # fmt: skip

    # the policy network, as the script builds it
    lstm_accel = script == "td3_accel_lstm_pomdp.py"
    if policy == "transformer":
        net = mod.make_transformer(obs_dim, low, high, args)
        state = ckpt["transformer" if script in ACCEL else "actor"]
    elif script.startswith("td3_lstm_") or (policy == "accelerator" and lstm_accel):
        net, state = mod.LSTMActor(obs_dim, low, high, args.lstm_hidden_size), ckpt["actor"]
    else:
        net, state = mod.Actor(obs_dim, low, high), ckpt["actor"]
    net = load_weights(net.to(device), state, policy, script, path)

    # act(window or obs) and the episode window length, as the script's own evaluation calls them
    step = ckpt["global_step"]
    if agent.maniskill:
        mlp = policy == "accelerator" or script == "td3_mlp_maniskill.py"
        act = (lambda w: net(w.obs[:, -1])) if mlp else (lambda w: net(w.obs, w.valid))
        length = args.history_len if script == "td3_lstm_maniskill.py" else 1 if script.startswith("td3_mlp") else None
        length = length or args.context_len

        def run_episode(seed: int) -> dict:
            return mod.evaluate(agent.env, act, 1, seed, length, step)

    else:
        if script == "td3_mlp_mujoco.py":
            evaluate = lambda seed: mod.evaluate(agent.env, lambda o: mod.mlp_act(net, o, device), 1, seed, step)
        else:
            if lstm_accel:  # one window for both networks, each reads its own tail (as the script does)
                length = max(args.history_len, args.context_len)
                tail = args.context_len if policy == "transformer" else args.history_len
                act = lambda w: mod.lstm_act(net, w.last(tail), device)
            elif script == "td3_accel_mujoco.py":
                length = args.context_len
                act = (lambda w: mod.transformer_act(net, w, device)) if policy == "transformer" else (
                    lambda w: mod.mlp_act(net, w.obs[-1], device))  # fmt: skip
            elif script == "td3_lstm_mujoco.py":
                length, act = args.history_len, lambda w: mod.lstm_act(net, w, device)
            else:  # td3_transformer_mujoco.py
                length, act = args.context_len, lambda w: mod.transformer_act(net, w, device)
            evaluate = lambda seed: mod.evaluate(agent.env, act, 1, seed, length, step)

        def run_episode(seed: int) -> dict:
            return {"return": evaluate(seed)}

    agent.run_episode = torch.no_grad()(run_episode)


def logged_evaluation(path: str, step: int, tag: str) -> tuple[float, int] | None:
    """The run's own evaluation at `step` (TensorBoard events beside the checkpoint), or None."""
    run_dir = os.path.dirname(os.path.abspath(path))
    if not any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir)):
        return None
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    ea = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    ea.Reload()
    if tag not in ea.Tags()["scalars"]:
        return None
    values = [e.value for e in ea.Scalars(tag) if e.step == step]
    return values[-1] if values else None


def describe(values: np.ndarray) -> str:
    std = f"{values.std(ddof=1):.2f}" if len(values) > 1 else "n/a"
    return (f"mean {values.mean():.2f}, std {std} (sample, ddof=1), median {np.median(values):.2f}, "
            f"min {values.min():.2f}, max {values.max():.2f}")  # fmt: skip


def parse_args(argv):
    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, exit 2, as for every other bad input
            raise UsageError(message)

    p = Parser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("checkpoint", help="final.pt, accelerated.pt or resume.pt of a run")
    p.add_argument("--episodes", type=int, default=50, help="deterministic episodes (default 50)")
    p.add_argument("--seed", type=int, help="episode k uses seed SEED + k (default: the run's own evaluation's)")
    p.add_argument("--policy", choices=("transformer", "accelerator"),
                   help="an accel script's policy (default: transformer); a baseline has one, its actor")  # fmt: skip
    p.add_argument("--video", metavar="DIR", help="record episodes 0, 1, 8, 27, ... into DIR (MuJoCo; needs moviepy)")
    p.add_argument("--csv", metavar="FILE", help="write one row per episode to FILE")
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (default 1)")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error(f"--episodes {a.episodes}: give 1 or more")
    if a.num_threads < 1:
        p.error(f"--num-threads {a.num_threads}: give 1 or more")
    return a


def evaluate(a: argparse.Namespace) -> int:
    if a.video is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display
        try:
            import moviepy  # noqa: F401 - RecordVideo writes with it
        except ImportError:
            raise UsageError("--video needs moviepy (RecordVideo writes with it): pip install moviepy") from None
    ckpt = load(a.checkpoint)
    script = which_script(ckpt, a.checkpoint)
    maniskill = script.endswith("_maniskill.py")
    if maniskill and a.video is not None:
        raise UsageError("--video: the ManiSkill scripts record no videos (MuJoCo runs only)")
    if script in ACCEL:
        policy = a.policy or "transformer"
    elif a.policy == "accelerator" or (a.policy == "transformer" and "transformer" not in script):
        raise UsageError(f"--policy {a.policy}: {script} trains no {a.policy}; its one policy is its actor")
    else:
        policy = "transformer" if "transformer" in script else "actor"
    weights = "transformer" if policy == "transformer" and script in ACCEL else "actor"
    if weights not in ckpt:
        raise UsageError(f"{a.checkpoint}: holds no {policy} weights")

    import torch

    mod = import_script(script)
    args = run_args(mod, ckpt["args"], a.checkpoint)
    torch.set_num_threads(a.num_threads)
    gpu = maniskill and mod.use_gpu_sim(args)
    device = torch.device("cuda" if torch.cuda.is_available() and (args.cuda or gpu) else "cpu")
    step = ckpt["global_step"]
    own_seed = args.seed + 10_000 + step  # the seed of the run's own evaluation at this step
    seed = own_seed if a.seed is None else a.seed
    agent = Agent(script, mod, args, policy, maniskill)
    try:
        build(agent, ckpt, a.checkpoint, device, a.video)
    except mod.UsageError as e:  # the script's own bad-input errors (ManiSkill missing, no Vulkan, unknown env)
        raise UsageError(str(e)) from None
    task = args.env_id + (" (velocity-only observations)" if getattr(args, "pomdp", "none") == "velocity" else "")
    kind = "resume.pt" if "rb" in ckpt else os.path.basename(a.checkpoint)
    what = "its actor" if policy == "actor" else f"the {policy}"
    print(f"{PROG}: {script}'s {kind} at step {step}, {task}: {what}, {a.episodes} deterministic episodes, "
          f"seeds {seed}..{seed + a.episodes - 1}", flush=True)  # fmt: skip
    rows = []
    try:
        for k in range(a.episodes):
            result = agent.run_episode(seed + k)
            rows.append({"episode": k, "seed": seed + k, **result, "length": agent.env.steps})
    except mod.DivergenceError as e:
        print(f"{PROG}: diverged: {e}", file=sys.stderr)
        return 1
    finally:
        agent.env.close()

    returns = np.array([r["return"] for r in rows])
    print(f"return: {describe(returns)}")
    for key in ("success_once", "success_at_end"):
        if maniskill:
            hits = np.array([r[key] for r in rows])
            print(f"{key}: {hits.mean():.3f} ({int(hits.sum())} of {len(hits)} episodes)")
    print(f"episode length: mean {np.mean([r['length'] for r in rows]):.1f}")
    if seed == own_seed and kind != "resume.pt":
        k = min(args.eval_episodes, a.episodes)
        who = {"transformer": "transformer_", "accelerator": "accelerator_"}.get(policy, "")
        if script not in ACCEL:
            who = ""
        logged = logged_evaluation(a.checkpoint, step, f"eval/{who}return")
        here = np.mean(returns[:k])
        line = f"the run's own evaluation at step {step} used seeds {seed}..{seed + k - 1}: here {here:.4f}"
        print(line + (f", logged {logged:.4f}" if logged is not None else " (its events are not beside the file)"))
    if a.csv:
        head = {"checkpoint": os.path.abspath(a.checkpoint), "script": script, "env_id": task, "step": step,
                "policy": policy}  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
        with open(a.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*head, *rows[0]])
            writer.writeheader()
            for r in rows:
                writer.writerow({**head, **r})
        print(f"wrote {a.csv} ({len(rows)} episodes)")
    if a.video is not None:
        print(f"videos in {a.video}")
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*is out of date.*")  # gymnasium's note on v4 envs, not ours to fix
    try:
        return evaluate(parse_args(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
