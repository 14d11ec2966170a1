"""Transfer figures of td3_accel_mujoco.py runs (the transfer study in RESULTS.md), per run and per environment.

    python analysis/transfer_metrics.py runs/transfer_before runs/transfer_after runs/transfer_sn \
        --plot results/transfer.png
    python analysis/transfer_metrics.py runs/handover --stage1-from runs/transfer_after

With R the mean return of a uniform random policy (20 episodes), A and T1 the means of the accelerator's and the
transformer's last 3 stage-1 evaluations, and E1..En the transformer's stage-2 evaluations:
- tracking gap   = (A - T1) / (A - R)            how far the transformer is behind its accelerator at handover
- handover drop  = (T1 - mean(E1..E3)) / (A - R)  how much of that level the first stage-2 evaluations lose
- last - T1      = En - T1                         whether stage 2 ends at or above the stage-1 level
Stage-1 evaluations are those that also logged eval/accelerator_return.

--plot PATH draws the curves with tools/plot_runs.py (issue 23's figure: a 300-dpi PNG and a PDF, one panel per env,
each seed thin under the mean, 95% bootstrap bands, a mark at the handover), the methods named as in the tables
(root/exp_name); --label NAME=WORDS puts a root's or an exp_name's name in words. Never imported by the training
scripts.
"""

import argparse
import glob
import os
import sys
from collections import defaultdict
from functools import cache

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tools import plot_runs  # noqa: E402  (the repository's tools; run as python analysis/transfer_metrics.py)
from tools.plot_runs import is_complete  # noqa: E402


@cache
def random_return(env_id: str, episodes: int = 20, seed: int = 0) -> float:
    """Mean undiscounted return of uniform random actions."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def transfer_figures(accel: dict, transformer: dict, random: float, last: int = 3) -> dict:
    """accel, transformer: {step: evaluation return}. Stage 1 = the steps where the accelerator was evaluated."""
    stage1 = sorted(accel)
    stage2 = sorted(s for s in transformer if s > stage1[-1])
    a = float(np.mean([accel[s] for s in stage1[-last:]]))
    t1 = float(np.mean([transformer[s] for s in stage1[-last:]]))
    out = {"random": random, "accelerator": a, "transformer_stage1": t1, "tracking_gap": (a - t1) / (a - random)}
    if stage2:
        first = float(np.mean([transformer[s] for s in stage2[:last]]))
        out.update(stage2_first=first, handover_drop=(t1 - first) / (a - random),
                   stage2_last=transformer[stage2[-1]], last_minus_t1=transformer[stage2[-1]] - t1)  # fmt: skip
    return out


def eval_curves(run: plot_runs.Run) -> tuple[dict, dict]:
    """The accelerator's and the transformer's evaluations, {step: return}, of a run read by tools/plot_runs.py."""
    return run.scalars.get("eval/accelerator_return", {}), run.scalars.get("eval/transformer_return", {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "roots",
        nargs="+",
        help="folders holding run directories {env_id}__{exp_name}__{seed}__{time}; the folder's name labels its runs",
    )
    p.add_argument(
        "--complete-only",
        action="store_true",
        help="only finished runs (tools/plot_runs.py's rule: final.pt, or a finished stage-1-only run)",
    )
    p.add_argument("--plot", help="draw the curves here with tools/plot_runs.py: PATH's stem as a PNG and a PDF")
    p.add_argument("--label", action="append", default=[], metavar="NAME=WORDS", help="a name in the figure's legend")
    p.add_argument(
        "--stage1-from",
        help="for runs that fine-tuned a stage-1 checkpoint (--accelerated-checkpoint): "
        "the folder of the runs that wrote those checkpoints, matched by env and seed",
    )
    a = p.parse_args()
    rows, per_env = [], defaultdict(list)
    runs = [(root, run) for root in a.roots for run in sorted(glob.glob(os.path.join(root, "*__*__*__*")))]
    for root, run in runs:
        env_id, exp_name, seed, _ = os.path.basename(run).split("__")
        exp_name = f"{os.path.basename(os.path.normpath(root))}/{exp_name}"
        loaded = plot_runs.load_run(run)  # one read of its event files, for the rule and the curves
        if a.complete_only and not is_complete(loaded):
            print(f"skipped (not finished, --complete-only): {run}")
            continue
        accel, transformer = eval_curves(loaded)
        if a.stage1_from:  # stage-1 evaluations from the run that wrote the checkpoint
            source = glob.glob(os.path.join(a.stage1_from, f"{env_id}__*__{seed}__*"))
            if len(source) != 1:
                print(f"skipped (no single stage-1 run for {env_id} seed {seed} in {a.stage1_from}): {run}")
                continue
            accel, stage1 = eval_curves(plot_runs.load_run(source[0]))
            transformer = {**{s: v for s, v in stage1.items() if s <= max(accel)}, **transformer}
        if len(accel) < 3:
            print(f"skipped (fewer than 3 stage-1 evaluations): {run}")
            continue
        f = transfer_figures(accel, transformer, random_return(env_id))
        rows.append((env_id, exp_name, int(seed), f))
        per_env[(env_id, exp_name)].append(f)
    nan = float("nan")
    print(
        "| env | method | seed | random | accelerator | transformer (stage 1) | tracking gap | stage 2 first 3 "
        "| handover drop | stage 2 last | last - stage 1 |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for env_id, exp_name, seed, f in sorted(rows, key=lambda r: r[:3]):
        print(
            f"| {env_id} | {exp_name} | {seed} | {f['random']:.1f} | {f['accelerator']:.1f} | "
            f"{f['transformer_stage1']:.1f} | {f['tracking_gap']:.2f} | {f.get('stage2_first', nan):.1f} | "
            f"{f.get('handover_drop', nan):.2f} | {f.get('stage2_last', nan):.1f} | {f.get('last_minus_t1', nan):.1f} |"
        )
    print("\n| env | method | seeds | tracking gap mean (std, max) | handover drop mean (std) "
          "| last - stage 1 mean (std) |\n|---|---|---|---|---|---|")  # fmt: skip
    for (env_id, exp_name), fs in sorted(per_env.items()):
        gap = np.array([f["tracking_gap"] for f in fs])
        drop = np.array([f.get("handover_drop", nan) for f in fs])
        last = np.array([f.get("last_minus_t1", nan) for f in fs])
        print(
            f"| {env_id} | {exp_name} | {len(fs)} | {gap.mean():.2f} ({gap.std():.2f}, {gap.max():.2f}) | "
            f"{drop.mean():.2f} ({drop.std():.2f}) | {last.mean():.1f} ({last.std():.1f}) |"
        )

    if a.plot:  # the same runs, methods named as in the tables: a folder's name and the run's exp_name
        argv = [*a.roots, "--method-from", "root,exp_name", "--out", a.plot, *(f"--label={x}" for x in a.label)]
        sys.exit(plot_runs.main(argv + ["--complete-only"] * a.complete_only))


if __name__ == "__main__":
    main()
