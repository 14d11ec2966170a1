"""Whole short runs of a script at two git revisions, alternating, on one thread: the wall time of each, and the
median ratio after/before over the rounds (issue 25: the refactor must be no slower). A short run covers the
replay buffer's add and sample, the updates, evaluation and logging, so it catches what bench_updates.py (the update
phase alone) does not.

    python benchmarks/bench_before_after.py --before 92ce832 --rounds 3 td3_accel_mujoco.py baselines/td3_mlp_mujoco.py
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Hopper, past the random warm-up into the updates (and for the accel script into stage 2); no checkpoint writes
FLAGS = {
    "td3_accel_mujoco.py": "--accel-steps 2500 --learning-starts 1000 --finetune-steps 1000 --critic-warmup 0",
    "td3_accel_lstm_pomdp.py": "--pomdp velocity --accel-steps 2000 --learning-starts 1000 --finetune-steps 800 "
    "--critic-warmup 0",
}
BASELINE = "--total-timesteps 2000 --learning-starts 1000"
COMMON = "--env-id Hopper-v4 --eval-frequency 100000 --eval-episodes 1 --checkpoint-frequency 0 --num-threads 1"


def run(tree: str, script: str, run_dir: str) -> float:
    cmd = [sys.executable, script, *COMMON.split(), *FLAGS.get(script, BASELINE).split(), "--run-dir", run_dir]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=tree, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scripts", nargs="+")
    p.add_argument("--before", required=True, help="git revision of the 'before' scripts")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = os.path.join(tmp, "before")
        subprocess.run(["git", "worktree", "add", "--detach", before, a.before], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            print(f"load average {os.getloadavg()[0]:.2f} at the start; before = {a.before}, after = working tree")
            for script in a.scripts:
                times = {"before": [], "after": []}
                for r in range(a.rounds):
                    order = [("before", before), ("after", ROOT)]
                    for name, tree in order if r % 2 == 0 else reversed(order):
                        times[name].append(run(tree, script, os.path.join(tmp, "runs")))
                ratios = [x / y for x, y in zip(times["after"], times["before"], strict=True)]
                print(f"{script}: before {statistics.median(times['before']):.1f} s, after "
                      f"{statistics.median(times['after']):.1f} s (medians of {a.rounds}); after/before median "
                      f"{statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)}); load "
                      f"average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", before], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
