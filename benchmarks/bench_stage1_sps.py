"""Stage-1 speed against the MLP baseline: whole-process environment steps per second of
baselines/td3_mlp_mujoco.py, td3_accel_mujoco.py stage 1 with its default schedule, and td3_accel_mujoco.py with
Algorithm 1's printed schedule (T cleared every 1000 steps). Each round starts the three side by side, at the same
moment, one torch thread each, so that they share whatever else loads the machine; prints each round, the medians
and each round's ratio to the MLP baseline.

    python benchmarks/bench_stage1_sps.py --rounds 3 --steps 5000 --learning-starts 1000
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_SCHEDULE = ["--bc-frequency", "1000", "--bc-updates", "40", "--bc-buffer-size", "1000", "--bc-clear",
                  "--bc-target", "behavior", "--bc-state-noise", "0", "--bc-dagger", "0"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--env-id", default="Hopper-v4")
    a = p.parse_args()
    common = ["--env-id", a.env_id, "--learning-starts", str(a.learning_starts), "--eval-episodes", "1",
              "--eval-frequency", str(10 * a.steps), "--num-threads", "1"]  # fmt: skip
    programs = {
        "mlp baseline": ["baselines/td3_mlp_mujoco.py", "--total-timesteps", str(a.steps)],
        "accel stage 1, default": ["td3_accel_mujoco.py", "--accel-steps", str(a.steps), "--finetune-steps", "0"],
        "accel stage 1, Algorithm 1 as printed": ["td3_accel_mujoco.py", "--accel-steps", str(a.steps),
                                                  "--finetune-steps", "0", *PAPER_SCHEDULE],
    }  # fmt: skip
    sps = {name: [] for name in programs}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as run_dir:
        for r in range(a.rounds):
            start, procs = time.perf_counter(), {}
            for name, argv in programs.items():
                cmd = [sys.executable, *argv, *common, "--run-dir", run_dir]
                procs[name] = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            pending = dict(procs)
            while pending:
                for name, proc in list(pending.items()):
                    if proc.poll() is not None:
                        assert proc.returncode == 0, f"{name} exited with {proc.returncode}"
                        sps[name].append(a.steps / (time.perf_counter() - start))
                        del pending[name]
                time.sleep(0.05)
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in sps.items()) + " steps/s", flush=True)
    print(f"\n{a.env_id}, {a.steps} steps ({a.learning_starts} random), whole process, 1 thread each, side by side, "
          f"{a.rounds} rounds")  # fmt: skip
    for name, values in sps.items():
        ratios = [v / b for v, b in zip(values, sps["mlp baseline"], strict=True)]
        print(f"{name:40s} median {statistics.median(values):6.1f} steps/s  ratio to mlp: median "
              f"{statistics.median(ratios):.2f} (rounds: {' '.join(f'{x:.2f}' for x in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
