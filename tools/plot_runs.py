"""Evaluation curves of TensorBoard runs, mean +- std over seeds against environment steps, one panel per env.

    python tools/plot_runs.py runs/grid --out curves.png
    python tools/plot_runs.py runs/grid --table
    python tools/plot_runs.py runs/rq3 runs/rq4 --method-from root,exp_name --envs 'Hopper*' --table --out rq.png
    python tools/plot_runs.py runs/rq4 --method-from exp_name,buffer_size --tags eval/transformer_return eval/return

Runs are the directories named {env_id}__{exp_name}__{seed}__{unix_time} anywhere under the roots (as the
training scripts and tools/grid.py write them); a run with the same env, method and seed twice (a run restarted
after a crash) counts once, the newest. A resumed run's event files are read as TensorBoard reads them: its purge
marker drops what the interrupted process logged after its saved step.

Method: by default the exp_name; --method-from lists the parts of the method's name, joined by "/": `exp_name`,
`root` (the name of the folder holding the run directory) and any hyperparameter of the text table the scripts log
("hyperparameters"), shown as key=value.

Curves: by default each env's evaluation returns (eval/transformer_return, eval/accelerator_return, and the
baselines' eval/return), or its success rates where the runs log them (ManiSkill: eval/transformer_success_once,
eval/accelerator_success_once, eval/success_once); --metric or --tags choose others, --max-step N
cuts every run at step N (methods compared at equal steps, or stage 1 alone), --min-step N drops the evaluations
before step N (stage 2 alone). Seeds of different lengths
are aligned on the steps all of them have logged (--align common, the default: the curve ends where the shortest
seed ends) or linearly interpolated onto the union of their steps within the range all of them cover (--align
interp). The shaded band and the table's std are the population std over seeds (ddof=0).

The table (--table) gives, per env, method and curve, the number of seeds, the last aligned step, and the mean and
std over seeds of each seed's value there (final; --last K: the mean of each seed's last K aligned evaluations) and of
each seed's best value on the aligned steps (best) and of each seed's mean over all its aligned evaluations (all
evals: the area under its curve over the number of evaluations, a measure of how fast a method learns); --per-seed
adds each seed's final value.

--complete-only keeps the finished runs (final.pt, or for a stage-1-only run with finetune_steps 0, accelerated.pt and
no resume.pt: tools/grid.py's rule) and notes the others: for a figure of a study whose grid is still running.

Bad input (a missing root, no runs, an unknown tag, method part or filter, nothing to plot) prints one line on
stderr and exits with code 2; runs lacking a tag that other seeds of their method have are noted on stderr, one
line each, and left out of that curve. Never imported by the training scripts.
"""

import argparse
import fnmatch
import logging
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

if __package__:  # imported as tools.plot_runs
    from .grid import is_complete as grid_is_complete
else:  # run as python tools/plot_runs.py: its folder is on sys.path
    from grid import is_complete as grid_is_complete

RUN_NAME = re.compile(r"^(?P<env>.+?)__(?P<exp>.+)__(?P<seed>-?\d+)__(?P<time>\d+)_*$")
METRICS = ("return", "success_once", "success_at_end")
PROG = "plot_runs"


class UsageError(Exception):
    pass


@dataclass
class Run:
    path: str
    env: str
    exp_name: str
    seed: int
    time: str  # the unix time of the directory name, with the "_" added for a second run in the same second
    scalars: dict = field(default_factory=dict)  # eval tag -> {step: value}
    hparams: dict = field(default_factory=dict)  # the logged hyperparameter table, as strings


@dataclass
class Curve:
    env: str
    method: str
    tag: str
    runs: list  # the seeds' runs in the curve
    steps: np.ndarray
    values: np.ndarray  # seeds x steps


def note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def find_runs(roots: list[str]) -> list[str]:
    """Run directories (named like a run, holding an event file) anywhere under the roots."""
    found = []
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"{root}: no such folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if RUN_NAME.match(os.path.basename(os.path.normpath(dirpath))) and any(
                f.startswith("events.out.tfevents") for f in filenames
            ):
                found.append(dirpath)
                dirnames[:] = []  # no runs inside a run
    return found


def parse_hparams(markdown: str) -> dict:
    """The scripts' "|param|value|" table."""
    table = {}
    for line in markdown.splitlines()[2:]:
        cells = line.strip().strip("|").split("|", 1)
        if len(cells) == 2:
            table[cells[0].strip()] = cells[1].strip()
    return table


def load_run(path: str, max_step: int | None = None, min_step: int | None = None) -> Run:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    m = RUN_NAME.match(os.path.basename(os.path.normpath(path)))
    run = Run(path, m["env"], m["exp"], int(m["seed"]), m["time"])
    ea = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()  # all event files of the directory, in order, honouring purge markers of resumed runs
    tags = ea.Tags()
    for tag in tags["scalars"]:
        if tag.startswith("eval/"):
            # a step logged twice: the last value
            run.scalars[tag] = {
                e.step: e.value
                for e in ea.Scalars(tag)
                if (max_step is None or e.step <= max_step) and (min_step is None or e.step >= min_step)
            }
    if "hyperparameters/text_summary" in tags["tensors"]:
        proto = ea.Tensors("hyperparameters/text_summary")[0].tensor_proto
        run.hparams = parse_hparams(b"".join(proto.string_val).decode())
    return run


def is_complete(run: Run) -> bool:
    """tools/grid.py's rule, with stage 2's presence read from the logged hyperparameters."""
    stage1_only = run.hparams.get("finetune_steps", "").replace("_", "").strip() == "0"
    return grid_is_complete(run.path, stage2=not stage1_only)


def method_name(run: Run, parts: list[str]) -> str:
    names = []
    for part in parts:
        if part == "exp_name":
            names.append(run.exp_name)
        elif part == "root":
            names.append(os.path.basename(os.path.dirname(os.path.normpath(run.path))))
        else:
            names.append(f"{part}={run.hparams.get(part, '?')}")
    return "/".join(names)


def align(curves: dict, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a seeds x steps array from {run: {step: value}}; empty steps when the seeds share none."""
    if how == "common":
        steps = np.array(sorted(set.intersection(*(set(c) for c in curves.values()))), dtype=np.int64)
        return steps, np.array([[c[s] for s in steps] for c in curves.values()], dtype=np.float64)
    lo, hi = max(min(c) for c in curves.values()), min(max(c) for c in curves.values())
    steps = np.array(sorted({s for c in curves.values() for s in c if lo <= s <= hi}), dtype=np.int64)
    values = []
    for c in curves.values():
        xs = sorted(c)
        values.append(np.interp(steps, xs, [c[x] for x in xs]))
    return steps, np.array(values, dtype=np.float64)


def short(tag: str) -> str:
    return tag.split("/", 1)[-1]


def build_curves(runs: list[Run], a: argparse.Namespace) -> list[Curve]:
    groups = defaultdict(dict)  # (env, method) -> {seed: run}
    for run in sorted(runs, key=lambda r: (int(r.time.rstrip("_")), len(r.time), r.path)):
        key = (run.env, method_name(run, a.method_from))
        if run.seed in groups[key]:
            note(f"{key[0]} {key[1]} seed {run.seed}: {run.path} replaces the older {groups[key][run.seed].path}")
        groups[key][run.seed] = run  # the newest last
    curves = []
    for env in sorted({env for env, _ in groups}):
        env_runs = [r for (e, _), seeds in groups.items() if e == env for r in seeds.values()]
        if a.tags:
            tags = a.tags
        else:
            metric = a.metric
            if metric == "auto":
                has_success = any(t.endswith("success_once") for r in env_runs for t in r.scalars)
                metric = "success_once" if has_success else "return"
            tags = [f"eval/transformer_{metric}", f"eval/accelerator_{metric}", f"eval/{metric}"]
        env_curves = []
        for (e, method), seeds in sorted(groups.items()):
            if e != env:
                continue
            for tag in tags:
                have = {r.path: r.scalars[tag] for r in seeds.values() if r.scalars.get(tag)}
                if not have:
                    continue  # e.g. a baseline has no accelerator
                for r in seeds.values():
                    if r.path not in have:
                        note(f"{r.path} has no {tag} (yet); left out of {env} {method} {short(tag)}")
                steps, values = align(have, a.align)
                ends = sorted({max(c) for c in have.values()})
                if not len(steps):
                    note(f"{env} {method} {short(tag)}: its {len(have)} seeds share no step; try --align interp")
                    continue
                if len(ends) > 1:
                    note(f"{env} {method} {short(tag)}: seeds end at steps {ends[0]} to {ends[-1]}; "
                         f"the curve ends at step {steps[-1]} ({a.align})")  # fmt: skip
                by_path = {r.path: r for r in seeds.values()}
                env_curves.append(Curve(env, method, tag, [by_path[p] for p in have], steps, values))
        if not env_curves:
            note(f"{env}: no run has any of {', '.join(tags)} (yet)")
        curves += env_curves
    return curves


def table(curves: list[Curve], digits: int, last: int = 1, per_seed: bool = False) -> str:
    final_name = "final" if last == 1 else f"last {last} evals"
    head = (f"| env | method | curve | seeds | step | {final_name} mean | {final_name} std | best mean | best std "
            "| all evals mean | all evals std |")  # fmt: skip
    head += f" {final_name} per seed |" if per_seed else ""
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for c in curves:
        # --last K: each seed's mean over its last K aligned evaluations (one 5-episode evaluation is noisy)
        # all evals: each seed's mean over the whole curve (area under it), less noisy than final and best
        final, best, whole = c.values[:, -last:].mean(axis=1), c.values.max(axis=1), c.values.mean(axis=1)
        nums = " | ".join(f"{x:.{digits}f}" for v in (final, best, whole) for x in (v.mean(), v.std()))
        if per_seed:  # --per-seed: "seed: final", in seed order
            finals = sorted(zip((r.seed for r in c.runs), final, strict=True))
            nums += " | " + ", ".join(f"{seed}: {x:.{digits}f}" for seed, x in finals)
        lines.append(f"| {c.env} | {c.method} | {short(c.tag)} | {len(c.runs)} | {c.steps[-1]} | {nums} |")
    return "\n".join(lines)


def plot(curves: list[Curve], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({c.env for c in curves})
    colors = {m: f"C{i % 10}" for i, m in enumerate(sorted({c.method for c in curves}))}
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(envs) :]:
        ax.set_visible(False)
    for ax, env in zip(axes.flat, envs, strict=False):
        ylabels = set()
        for c in curves:
            if c.env != env:
                continue
            mean, std = c.values.mean(axis=0), c.values.std(axis=0)
            who = short(c.tag)
            label = f"{c.method} (n={len(c.runs)})" if who in METRICS else f"{c.method} ({who}, n={len(c.runs)})"
            style = "--" if "accelerator" in c.tag else "-"
            ax.plot(c.steps, mean, style, color=colors[c.method], label=label)
            ax.fill_between(c.steps, mean - std, mean + std, color=colors[c.method], alpha=0.15, lw=0)
            ylabels.add("success rate" if "success" in c.tag else "evaluation return" if "return" in c.tag else who)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(" / ".join(sorted(ylabels)) + " (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="*", default=["runs"], help="folders to search for run directories (default: runs)")
    p.add_argument("--out", help="write the figure to this PNG (default: curves.png, or none with --table)")
    p.add_argument("--table", action="store_true", help="print the markdown table of final and best values")
    p.add_argument("--tags", nargs="+", help="the scalar tags to draw (default: from --metric)")
    p.add_argument("--metric", default="auto", choices=("auto", *METRICS),
                   help="auto: success_once where an env's runs log it, else return")  # fmt: skip
    p.add_argument("--method-from", default="exp_name", help="comma-separated: exp_name, root, hyperparameter names")
    p.add_argument("--envs", nargs="+", help="only these env ids (shell-style patterns)")
    p.add_argument("--methods", nargs="+", help="only these methods (shell-style patterns)")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds (e.g. the seeds every method has)")
    p.add_argument("--align", default="common", choices=("common", "interp"), help="how seeds of unequal lengths meet")
    p.add_argument("--complete-only", action="store_true", help="only finished runs (final.pt); note the others")
    p.add_argument("--max-step", type=int, help="only evaluations up to this environment step (e.g. stage 1's end)")
    p.add_argument("--min-step", type=int, help="only evaluations from this environment step on (e.g. stage 2 alone)")
    p.add_argument(
        "--last",
        type=int,
        default=1,
        help="the table's final value: each seed's mean over its last this many evaluations (default 1)",
    )
    p.add_argument("--digits", type=int, default=2, help="decimals in the table")
    p.add_argument("--per-seed", action="store_true", help="the table gains a column of each seed's final value")
    a = p.parse_args(argv)
    a.method_from = [part.strip() for part in a.method_from.split(",") if part.strip()]
    if not a.method_from:
        p.error("--method-from: give at least one of exp_name, root, or a hyperparameter name")
    if a.last < 1:
        p.error(f"--last {a.last}: give 1 or more evaluations")
    if a.min_step is not None and a.max_step is not None and a.min_step > a.max_step:
        p.error(f"--min-step {a.min_step} is above --max-step {a.max_step}: no evaluation is left")
    if a.out is None and not a.table:
        a.out = "curves.png"
    return a


def run(a: argparse.Namespace) -> None:
    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # its "out of order event" lines on resumed runs
    paths = find_runs(a.roots)
    if not paths:
        raise UsageError(f"no run directories ({{env_id}}__{{exp_name}}__{{seed}}__{{time}}) under {' '.join(a.roots)}")
    runs = [load_run(p, a.max_step, a.min_step) for p in paths]
    if a.complete_only:
        finished = [r for r in runs if is_complete(r)]
        for r in runs:
            if r not in finished:
                note(f"{r.path} is not finished (no final.pt); left out (--complete-only)")
        runs = finished
        if not runs:
            raise UsageError(f"--complete-only: none of the {len(paths)} runs is finished (no final.pt)")
    if a.envs:
        runs = [r for r in runs if any(fnmatch.fnmatchcase(r.env, pat) for pat in a.envs)]
        if not runs:
            raise UsageError(f"--envs {' '.join(a.envs)} matches none of the {len(paths)} runs' envs")
    for part in a.method_from:
        if part not in ("exp_name", "root") and not any(part in r.hparams for r in runs):
            known = sorted({k for r in runs for k in r.hparams})[:12]
            raise UsageError(f"--method-from {part}: not a logged hyperparameter (some are: {', '.join(known)})")
    if a.methods:
        runs = [r for r in runs if any(fnmatch.fnmatchcase(method_name(r, a.method_from), p) for p in a.methods)]
        if not runs:
            raise UsageError(f"--methods {' '.join(a.methods)} matches no method")
    if a.seeds:
        runs = [r for r in runs if r.seed in a.seeds]
        if not runs:
            raise UsageError(f"--seeds {' '.join(map(str, a.seeds))} matches none of the runs' seeds")
    for tag in a.tags or []:
        if not any(tag in r.scalars for r in runs):
            have = sorted({t for r in runs for t in r.scalars})
            raise UsageError(f"unknown tag {tag}: the runs log {', '.join(have) or 'no eval/ tags'}")
    curves = build_curves(runs, a)
    if not curves:
        raise UsageError(f"nothing to plot: none of the {len(runs)} runs has an evaluation value yet")
    if a.table:
        print(table(curves, a.digits, a.last, a.per_seed))
    if a.out:
        plot(curves, a.out)
        print(f"{PROG}: wrote {a.out} ({len({c.env for c in curves})} panels, {len(curves)} curves)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
