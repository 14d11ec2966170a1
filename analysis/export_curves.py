"""Each finished run's curves as a small CSV (and its flags and cost as JSON), so a study's tables and figures can be
made again from the repository when runs/ is gone (runs/ is never committed, and a new machine starts without it).

    python analysis/export_curves.py runs/ant results/ant/curves

For every run directory under ROOT that tools/grid.py counts as complete, writes OUT/RUN (RUN: the run directory's
own name) holding curves.csv (columns step, tag, value: every eval/* scalar, charts/SPS and charts/stage, the last
value where a resumed run logged a step twice, exact to float32), run.json (its logged flags, the wall-clock span of
its events in seconds, its last logged SPS per stage, and per stage the seconds it was running: the gaps between its
events, less those over MAX_GAP, where it was stopped or between sessions) and, where tools/grid.py --evaluate wrote
one, a copy of its eval_final.csv. tools/plot_runs.py reads such a folder as it reads the run itself. Unfinished
runs are listed and left out. Rerunning it rewrites the folders of the runs it finds; those of runs no longer under
ROOT are kept. analysis/run_costs.py sums the running time into a study's cost.
"""

import bisect
import csv
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools.plot_runs import EXPORTED, FINAL_EVAL, RUN_NAME, Run, find_runs, is_complete, logged_hparams  # noqa: E402

TAGS = ("eval/", "charts/SPS", "charts/stage")
# A longer gap between two logged events is not the run's own time: the process was stopped (SIGSTOP while the
# machine was benchmarked) or gone (between two sessions, before --resume). The scripts log every 1000 steps, and an
# evaluation takes minutes at most, so no running stretch comes near it.
MAX_GAP = 600.0


def active_seconds(events: list[tuple[float, int]], stage_at: dict[int, int], max_gap: float = MAX_GAP) -> dict:
    """Time the run spent running, per stage: the gaps between consecutive events (wall time, step) of any tag,
    leaving out gaps longer than max_gap; a gap counts to the stage of the step that ends it (stage_at: the logged
    charts/stage values, a step taking the stage last logged at or before it; stage 1 before any)."""
    logged = sorted(stage_at)
    out = {}
    events = sorted(events)
    for (t0, _), (t1, step) in zip(events, events[1:], strict=False):
        if t1 - t0 <= max_gap:
            i = bisect.bisect_right(logged, step)
            stage = f"stage{int(stage_at[logged[i - 1]]) if i else 1}"
            out[stage] = out.get(stage, 0.0) + t1 - t0
    return {k: round(v, 1) for k, v in sorted(out.items())}


def export(path: str, out: str) -> str | None:
    """Writes the run's folder under out; returns its path, or None for an unfinished run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()  # every event file of the run, honouring the purge markers a resumed run writes
    m = RUN_NAME.match(os.path.basename(os.path.normpath(path)))
    run = Run(path, m["env"], m["exp"], int(m["seed"]), m["time"], hparams=logged_hparams(ea))
    if not is_complete(run):  # plot_runs' (and so tools/grid.py's) rule
        return None
    rows, wall, events = {}, [], []
    for tag in ea.Tags()["scalars"]:
        for e in ea.Scalars(tag):
            events.append((e.wall_time, e.step))  # every tag's, for the time the run was running
            if tag.startswith(TAGS):
                rows[(e.step, tag)] = e.value  # a step logged twice: the last value
                wall.append(e.wall_time)
    folder = os.path.join(out, os.path.basename(os.path.normpath(path)))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, EXPORTED), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "tag", "value"])
        for (step, tag), value in sorted(rows.items()):
            w.writerow([step, tag, repr(value)])
    sps = {}  # the last SPS each stage logged (charts/stage says which stage a step belongs to)
    stages = {s: v for (s, t), v in rows.items() if t == "charts/stage"}
    for (step, tag), value in sorted(rows.items()):
        if tag == "charts/SPS":
            sps[f"stage{int(stages.get(step, 1))}"] = value
    meta = {"args": run.hparams, "wall_seconds": round(max(wall) - min(wall), 1), "last_sps": sps,
            "active_seconds": active_seconds(events, stages)}  # fmt: skip
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    if os.path.isfile(os.path.join(path, FINAL_EVAL)):
        shutil.copyfile(os.path.join(path, FINAL_EVAL), os.path.join(folder, FINAL_EVAL))
    return folder


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python analysis/export_curves.py ROOT OUT", file=sys.stderr)
        return 2
    root, out = argv
    if not os.path.isdir(root):
        print(f"export_curves: error: no such directory: {root}", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    for path in find_runs([root]):
        if os.path.isfile(os.path.join(path, EXPORTED)):
            continue  # already an export (OUT inside ROOT)
        folder = export(path, out)
        print(f"{path}: " + (folder if folder else "unfinished, left out"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
