"""Is the progress line's eta right? A short two-stage run of td3_accel_mujoco.py (Hopper, one thread): each line's
eta against the time the run really took from that line to its end (issue 27: within 25% once stage 2 has run a
while). Run it on a quiet machine (pause other runs); it prints one row per progress line and the worst ratio.

    OMP_NUM_THREADS=1 python benchmarks/eta_check.py [--accel-steps 3000 --finetune-steps 4000]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seconds(text: str) -> float:
    """duration()'s text back to seconds: 12s, 7m05s, 3h12m."""
    h, m, s = (re.search(rf"(\d+){u}", text) for u in "hms")
    return sum(int(x.group(1)) * f for x, f in ((h, 3600), (m, 60), (s, 1)) if x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accel-steps", type=int, default=3000)
    p.add_argument("--finetune-steps", type=int, default=4000)
    a = p.parse_args()
    flags = ["--env-id", "Hopper-v4", "--accel-steps", a.accel_steps, "--finetune-steps", a.finetune_steps,
             "--learning-starts", 1000, "--eval-frequency", 500, "--eval-episodes", 5, "--checkpoint-frequency", 0,
             "--num-threads", 1]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "td3_accel_mujoco.py", *map(str, flags), "--run-dir", tmp]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        lines = [(time.time(), line.strip()) for line in proc.stdout]
        end = time.time()
        assert proc.wait() == 0
    print(f"load average {os.getloadavg()[0]:.2f}; {' '.join(map(str, flags))}")
    print("| step | stage | eta printed | time left in fact | eta / fact |\n|---|---|---|---|---|")
    worst = 0.0
    for t, line in lines:
        m = re.match(r"step=(\d+) stage=(\d) SPS=\d+ eta=(\S+)", line)
        if not m or end - t < 5:  # the last lines: the final checkpoint write is most of what is left
            continue
        eta, left = m[3], end - t
        ratio = "" if eta == "measuring" or eta.startswith(">") else f"{seconds(eta) / left:.2f}"
        if ratio and int(m[2]) == 2:
            worst = max(worst, abs(float(ratio) - 1))
        print(f"| {m[1]} | {m[2]} | {eta} | {left:.0f}s | {ratio} |")
    print(f"worst |eta / fact - 1| over stage 2's lines with an eta: {worst:.2f}")


if __name__ == "__main__":
    main()
