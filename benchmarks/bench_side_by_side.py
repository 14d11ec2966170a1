"""Runs side by side: N copies of a training script started at once, each with a given torch thread count, and the
speed each keeps (environment steps per second over stage 1's update phase and over stage 2), against one run alone.
This is what a seed grid from a shell loop does (`for s in 1 2 3; do python td3_accel_mujoco.py --seed $s & done`).

    python benchmarks/bench_side_by_side.py --threads 1,2 --copies 1,2,3 --rounds 2

Each run prints a progress line at every evaluation; a run's speed over a span is the steps between two lines
over the wall time between them, as this script reads them (process start-up and the random warm-up excluded).
--threads 0 runs the script with its own default (no --num-threads flag, OMP_NUM_THREADS unset).
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^step=(\d+) ")  # the accel scripts' and the baselines' progress lines


def launch(script: str, flags: list[str], threads: int, seed: int, run_dir: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, os.path.join(ROOT, script), *flags, "--seed", str(seed), "--run-dir", run_dir]
    if threads:
        cmd += ["--num-threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def read_lines(proc: subprocess.Popen, out: dict) -> None:
    """step -> wall time the line was read"""
    for line in proc.stdout:
        if m := LINE.match(line):
            out[int(m.group(1))] = time.perf_counter()


def rate(times: dict, start: int, end: int) -> float:
    return (end - start) / (times[end] - times[start])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", default="td3_accel_mujoco.py")
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--threads", default="1,2", help="thread counts to compare (0: the script's default)")
    p.add_argument("--copies", default="1,2,3", help="how many runs at once")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--stage1", type=int, default=3000, help="stage-1 steps (its rate: learning-starts..stage1)")
    p.add_argument("--stage2", type=int, default=2000, help="stage-2 steps (its rate: over all of them); 0: none")
    p.add_argument("--flags", default="", help="more flags for every run (one shell-quoted string)")
    p.add_argument("--skip", default="", help="thread:copies pairs to leave out, e.g. 2:3 (10x slower, known)")
    p.add_argument("--run-dir", default="/tmp/bench_side_by_side")
    a = p.parse_args()
    every = 1000
    # a baseline (one stage) runs --total-timesteps of stage 1's length; its rate is reported as stage 1's
    baseline = a.script.startswith("baselines/")
    a.stage2 = 0 if baseline else a.stage2
    steps = ["--total-timesteps", str(a.stage1)] if baseline else ["--accel-steps", str(a.stage1),
                                                                    "--finetune-steps", str(a.stage2)]  # fmt: skip
    flags = ["--env-id", a.env_id, "--learning-starts", str(a.learning_starts), *steps, "--eval-frequency",
             str(every), "--eval-episodes", "1", "--checkpoint-frequency", "0", *shlex.split(a.flags)]  # fmt: skip
    skip = {tuple(int(x) for x in s.split(":")) for s in a.skip.split(",") if s}
    results: dict = {}
    for r in range(a.rounds):
        for threads in [int(t) for t in a.threads.split(",")]:
            for copies in [int(c) for c in a.copies.split(",")]:
                if (threads, copies) in skip:
                    continue
                load = os.getloadavg()[0]
                procs = [launch(a.script, flags, threads, s + 1, a.run_dir) for s in range(copies)]
                lines = [{} for _ in procs]
                readers = [threading.Thread(target=read_lines, args=pl) for pl in zip(procs, lines, strict=True)]
                for t in readers:
                    t.start()
                for pr, t in zip(procs, readers, strict=True):
                    pr.wait()
                    t.join()
                if any(pr.returncode for pr in procs):
                    sys.exit(f"a run failed (exit codes {[pr.returncode for pr in procs]})")
                s1 = [rate(ln, a.learning_starts, a.stage1) for ln in lines]
                s2 = [rate(ln, a.stage1, a.stage1 + a.stage2) for ln in lines] if a.stage2 else [float("nan")]
                results.setdefault((threads, copies), []).append((min(s1), min(s2)))
                print(f"round {r} threads={threads or 'default'} copies={copies} load_before={load:.2f}: "
                      f"stage 1 SPS {[round(x, 1) for x in s1]}, stage 2 SPS {[round(x, 1) for x in s2]}",
                      flush=True)  # fmt: skip
    lone = {t: results[(t, 1)] for t, c in results if c == 1}
    print("\n| threads per run | runs at once | stage 1 SPS, slowest run (median) | stage 2 SPS, slowest run (median) "
          "| stage 1 / lone | stage 2 / lone |\n|---|---|---|---|---|---|")  # fmt: skip
    for (threads, copies), v in sorted(results.items()):
        m1, m2 = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        ref = lone.get(threads)
        r1 = m1 / statistics.median(x[0] for x in ref) if ref else float("nan")
        r2 = m2 / statistics.median(x[1] for x in ref) if ref else float("nan")
        print(f"| {threads or 'default'} | {copies} | {m1:.1f} | {m2:.1f} | {r1:.2f} | {r2:.2f} |")


if __name__ == "__main__":
    main()
