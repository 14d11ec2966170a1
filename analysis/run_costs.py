"""What a study's finished runs cost: per run and per method, the hours each stage was running and its steps/s (per
method: the median over its runs, with the range), from the run.json files analysis/export_curves.py keeps (its
active_seconds: the time the run was running, stops and the time between sessions left out), so the cost line can be
made again without runs/.

    python analysis/run_costs.py results/ant/curves

Stage 1 is the accelerated scripts' --accel-steps (a baseline's whole --total-timesteps), stage 2 their
--finetune-steps. A run exported before active_seconds existed is listed as such and not counted."""

import json
import math
import os
import statistics
import sys
from collections import defaultdict


def stage_steps(args: dict) -> dict:
    if "accel_steps" in args:
        return {"stage1": int(args["accel_steps"]), "stage2": int(args["finetune_steps"])}
    return {"stage1": int(args["total_timesteps"])}


def costs(folder: str) -> tuple[list[dict], list[str]]:
    """One row per exported run (method, seed, hours and steps/s per stage), and the runs without active_seconds."""
    rows, old = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "run.json")
        if not os.path.isfile(path):
            continue
        meta = json.load(open(path))
        if "active_seconds" not in meta:
            old.append(name)
            continue
        args, active = meta["args"], meta["active_seconds"]
        steps = stage_steps(args)
        row = {"run": name, "method": args["exp_name"], "seed": int(args["seed"]), "hours": sum(active.values()) / 3600}
        for stage, n in steps.items():
            seconds = active.get(stage, 0.0)
            row[f"{stage} h"] = seconds / 3600
            row[f"{stage} steps/s"] = n / seconds if seconds else float("nan")
        rows.append(row)
    return rows, old


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("run_costs: error: give one folder of exported runs (analysis/export_curves.py's OUT)", file=sys.stderr)
        return 2
    rows, old = costs(argv[0])
    print("| method | seed | hours | stage 1: hours, steps/s | stage 2: hours, steps/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        s1 = f"{r['stage1 h']:.2f}, {r['stage1 steps/s']:.0f}"
        s2 = f"{r['stage2 h']:.2f}, {r['stage2 steps/s']:.0f}" if "stage2 h" in r else "-"
        print(f"| {r['method']} | {r['seed']} | {r['hours']:.2f} | {s1} | {s2} |")
    per_method = defaultdict(list)
    for r in rows:
        per_method[r["method"]].append(r)
    hours = {m: sum(r["hours"] for r in runs) for m, runs in sorted(per_method.items())}
    each = [f"{m}: {len(per_method[m])} run{'s' * (len(per_method[m]) != 1)}, {h:.2f} h" for m, h in hours.items()]
    print("\n" + "; ".join(each) + f"; all: {sum(hours.values()):.2f} core-hours (one thread per run)")
    print("\nsteps/s per method: median over its runs (min-max)\n")
    print("| method | runs | stage 1 steps/s | stage 2 steps/s |")
    print("|---|---|---|---|")
    for m, runs in sorted(per_method.items()):
        cells = []
        for stage in ("stage1", "stage2"):
            sps = [r[f"{stage} steps/s"] for r in runs if not math.isnan(r.get(f"{stage} steps/s", math.nan))]
            cells.append(f"{statistics.median(sps):.0f} ({min(sps):.0f}-{max(sps):.0f})" if sps else "-")
        print(f"| {m} | {len(runs)} | {cells[0]} | {cells[1]} |")
    for name in old:
        print(f"{name}: exported without active_seconds (rerun analysis/export_curves.py), not counted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
