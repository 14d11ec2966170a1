"""Each finished run's curves as a small CSV (and its flags and cost as JSON), so a study's tables and figures can be
made again from the repository when runs/ is gone (runs/ is never committed, and a new machine starts without it).

    python analysis/export_curves.py runs/ant results/ant/curves

For every run directory under ROOT that tools/grid.py counts as complete, writes OUT/{env}__{method}__{seed}.csv
(columns step, tag, value: every eval/* scalar and charts/SPS, the last value where a resumed run logged a step
twice) and OUT/{env}__{method}__{seed}.json (the run's directory name, its logged flags, the wall-clock span of its
events in seconds and its last logged SPS per stage). Unfinished runs are listed and left out. Rerunning it rewrites
the files of the runs it finds; files of runs no longer under ROOT are kept.
"""

import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools.grid import is_complete  # noqa: E402
from tools.plot_runs import RUN_NAME, find_runs, parse_hparams  # noqa: E402

TAGS = ("eval/", "charts/SPS", "charts/stage")


def export(path: str, out: str) -> str | None:
    """Writes the run's CSV and JSON; returns their stem, or None for an unfinished run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    name = RUN_NAME.match(os.path.basename(os.path.normpath(path)))
    ea = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()  # every event file of the run, honouring the purge markers a resumed run writes
    hparams = {}
    if "hyperparameters/text_summary" in ea.Tags()["tensors"]:
        proto = ea.Tensors("hyperparameters/text_summary")[0].tensor_proto
        hparams = parse_hparams(b"".join(proto.string_val).decode())
    stage2 = hparams.get("finetune_steps", "").replace("_", "").strip() != "0"
    if not is_complete(path, stage2=stage2):
        return None
    rows, wall = {}, []
    for tag in ea.Tags()["scalars"]:
        if tag.startswith(TAGS):
            for e in ea.Scalars(tag):
                rows[(e.step, tag)] = e.value  # a step logged twice: the last value
                wall.append(e.wall_time)
    stem = f"{name['env']}__{name['exp']}__{name['seed']}"
    with open(os.path.join(out, stem + ".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "tag", "value"])
        for (step, tag), value in sorted(rows.items()):
            w.writerow([step, tag, f"{value:.6g}"])
    sps = {}  # the last SPS each stage logged (charts/stage says which stage a step belongs to)
    stages = {s: v for (s, t), v in rows.items() if t == "charts/stage"}
    for (step, tag), value in sorted(rows.items()):
        if tag == "charts/SPS":
            sps[f"stage{int(stages.get(step, 1))}"] = value
    meta = {"run": os.path.basename(os.path.normpath(path)), "args": hparams, "wall_seconds": max(wall) - min(wall),
            "last_sps": sps}  # fmt: skip
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    return stem


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
        stem = export(path, out)
        print(f"{path}: " + (f"{out}/{stem}.csv" if stem else "unfinished, left out"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
