"""Summarize TensorBoard runs: a table of each run's evaluation curve end points, grouped by method, and an
optional figure of the curves.

    python analysis/summarize_runs.py runs/ --tags eval/transformer_return eval/return --plot curves.png

A run directory is named {env_id}__{exp_name}__{seed}__{unix_time}; runs with the same env_id and exp_name
are seeds of one method. The table's std is the population std over seeds (ddof=0). --plot PATH draws the curves
with tools/plot_runs.py (issue 23's figure: a 300-dpi PNG and a PDF, one panel per env, each seed thin under the
mean, 95% bootstrap bands, a mark at the handover; --tags as given here). Never imported by the training scripts.
"""

import argparse
import glob
import os
import sys
from collections import defaultdict

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def load(run_dir: str, tags: list[str]) -> dict:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    have = acc.Tags()["scalars"]
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags if t in have}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="folder holding run directories")
    p.add_argument("--tags", nargs="+", help="default: eval/transformer_return eval/accelerator_return eval/return")
    p.add_argument("--plot", help="draw the curves here with tools/plot_runs.py: PATH's stem as a PNG and a PDF")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    a = p.parse_args()
    tags = a.tags or ["eval/transformer_return", "eval/accelerator_return", "eval/return"]

    groups = defaultdict(list)  # (env, method, tag) -> [curve per seed]
    for run in sorted(glob.glob(os.path.join(a.root, "*__*__*__*"))):
        env_id, exp_name, seed, _ = os.path.basename(run).split("__")
        for tag, curve in load(run, tags).items():
            groups[(env_id, exp_name, tag)].append((int(seed), curve))

    rows = []
    for (env_id, exp_name, tag), curves in sorted(groups.items()):
        finals = [c[-1][1] for _, c in curves]
        best = [max(v for _, v in c) for _, c in curves]
        rows.append((env_id, exp_name, tag, len(curves), curves[0][1][-1][0], np.mean(finals), np.std(finals),
                     np.mean(best), " ".join(f"{f:.0f}" for f in finals)))  # fmt: skip
    header = ("env", "method", "tag", "seeds", "last step", "final mean", "final std", "best mean", "finals")
    if a.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} | {r[7]:.1f} | {r[8]} |")
    else:
        for r in rows:
            print(f"{r[0]:16s} {r[1]:28s} {r[2]:26s} seeds={r[3]} step={r[4]} final={r[5]:.1f}+-{r[6]:.1f} "
                  f"best={r[7]:.1f} [{r[8]}]")  # fmt: skip

    if a.plot:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from tools import plot_runs  # the repository's tools; run as python analysis/summarize_runs.py

        sys.exit(plot_runs.main([a.root, "--out", a.plot, *(["--tags", *a.tags] if a.tags else [])]))


if __name__ == "__main__":
    main()
