"""Evaluation curves of TensorBoard runs over environment steps, and tables with rliable's intervals.

    python tools/plot_runs.py runs/grid --out curves.png
    python tools/plot_runs.py runs/grid --table --reference accel
    python tools/plot_runs.py runs/rq3 runs/rq4 --method-from root,exp_name --envs 'Hopper*' --table --out rq.png
    python tools/plot_runs.py runs/rq4 --method-from exp_name,buffer_size --tags eval/transformer_return eval/return
    python tools/plot_runs.py runs/study --methods accel 'accel_buf*' 'transformer_buf*' --reference accel \\
        --panel accel_buf10k,transformer_buf10k --panel accel,transformer_buf15k --out rq4.png

Runs are the directories named {env_id}__{exp_name}__{seed}__{unix_time} anywhere under the roots (as the
training scripts and tools/grid.py write them); a run with the same env, method and seed twice (a run restarted
after a crash) counts once, the newest. A resumed run's event files are read as TensorBoard reads them: its purge
marker drops what the interrupted process logged after its saved step. The task is the env id, with
"(velocity-only observations)" for a --pomdp velocity run: a different task, never pooled with the full one.

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
interp).

The table (--table) gives, per task, method and curve, the number of seeds, the last aligned step, and the mean and
std over seeds (--std: sample, ddof=1, the default; or population, ddof=0, as tables before issue 23) of each seed's
value there (final; --last K: the mean of each seed's last K aligned evaluations) and of each seed's best value on
the aligned steps (best) and of each seed's mean over all its aligned evaluations (all evals: the area under its
curve over the number of evaluations, a measure of how fast a method learns); --per-seed adds each seed's final
and all-evals values. --final-eval takes each policy curve's final value from RUN/eval_final.csv instead
(tools/evaluate.py's episodes of final.pt, written by tools/grid.py --evaluate N) and adds a column saying where each
row's came from.
A second table gives, for the final and the all-evals values, the IQM (interquartile mean: the mean of the middle
half of the seeds' values; with fewer than 4 seeds nothing is trimmed, it is the mean) and the mean, each with its
95% stratified-bootstrap confidence interval, and with --reference METHOD the probability of improvement
P(X > reference) over seeds (Mann-Whitney U / (n_X n_ref), ties half) with its interval, against the reference's
curve of the same task and metric (its transformer's where it has one): all from rliable (Agarwal et al., NeurIPS
2021), percentile intervals of --reps resamples of the seeds drawn from --bootstrap-seed.

The figure: one panel per task, or with --reference one per comparison (the reference and one other method), or
one per --panel (a comma-separated list of method patterns, repeatable). Per method the mean over seeds (thick),
each seed (thin) and the 95% bootstrap interval of the mean at each step (shaded; the caption says so); a dotted
line marks the handover from stage 1 to stage 2 (the runs' accel_steps, or the step of the stage-1 checkpoint they
fine-tuned from). Legends in words (--label NAME=WORDS overrides or adds to the built-in names), titles that name
the task (and, with --reference, the two methods compared). --out PATH writes PATH's stem as a 300-dpi PNG and a
vector PDF, sized for a two-column paper (3.5 in wide per panel, 8-pt text).

--complete-only keeps the finished runs (final.pt, or for a stage-1-only run with finetune_steps 0, accelerated.pt and
no resume.pt: tools/grid.py's rule) and notes the others: for a figure of a study whose grid is still running.

Bad input (a missing root, no runs, an unknown tag, method part, filter or reference, nothing to plot, rliable not
installed) prints one line on stderr and exits with code 2; runs lacking a tag that other seeds of their method
have are noted on stderr, one line each, and left out of that curve. Never imported by the training scripts.
"""

import argparse
import fnmatch
import logging
import os
import re
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

if __package__:  # imported as tools.plot_runs
    from .grid import EVAL_CSV as FINAL_EVAL  # tools/evaluate.py's episodes of final.pt (tools/grid.py --evaluate)
    from .grid import is_complete as grid_is_complete
    from .helptext import HelpFormatter
else:  # run as python tools/plot_runs.py: its folder is on sys.path
    from grid import EVAL_CSV as FINAL_EVAL
    from grid import is_complete as grid_is_complete
    from helptext import HelpFormatter

RUN_NAME = re.compile(r"^(?P<env>.+?)__(?P<exp>.+)__(?P<seed>-?\d+)__(?P<time>\d+)_*$")
METRICS = ("return", "success_once", "success_at_end")
PROG = "plot_runs"
EXPORTED = "curves.csv"  # a run kept by analysis/export_curves.py


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

    @property
    def task(self) -> str:
        """The env id, and what the run changed about its observations (--pomdp velocity): a task of its own."""
        return self.env + (" (velocity-only observations)" if self.hparams.get("pomdp") == "velocity" else "")


@dataclass
class Curve:
    env: str  # the task (Run.task)
    method: str
    tag: str
    runs: list  # the seeds' runs in the curve
    steps: np.ndarray
    values: np.ndarray  # seeds x steps


def note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def find_runs(roots: list[str]) -> list[str]:
    """Run directories (named like a run, holding an event file, or the CSV of analysis/export_curves.py: a finished
    run's curves kept in the repository) anywhere under the roots."""
    found = []
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"{root}: no such folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if RUN_NAME.match(os.path.basename(os.path.normpath(dirpath))) and any(
                f.startswith("events.out.tfevents") or f == EXPORTED for f in filenames
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
    m = RUN_NAME.match(os.path.basename(os.path.normpath(path)))
    run = Run(path, m["env"], m["exp"], int(m["seed"]), m["time"])
    if os.path.isfile(os.path.join(path, EXPORTED)):
        return load_exported(run, max_step, min_step)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
    run.hparams = logged_hparams(ea)
    return run


def logged_hparams(ea) -> dict:
    """The hyperparameter table a run logged, from its loaded EventAccumulator ({} if it logged none)."""
    if "hyperparameters/text_summary" not in ea.Tags()["tensors"]:
        return {}
    proto = ea.Tensors("hyperparameters/text_summary")[0].tensor_proto
    return parse_hparams(b"".join(proto.string_val).decode())


def load_exported(run: Run, max_step: int | None, min_step: int | None) -> Run:
    """A run as analysis/export_curves.py kept it: its eval/* scalars (curves.csv) and logged flags (run.json)."""
    import csv
    import json

    with open(os.path.join(run.path, EXPORTED), newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if (
                row["tag"].startswith("eval/")
                and (max_step is None or step <= max_step)
                and (min_step is None or step >= min_step)
            ):
                run.scalars.setdefault(row["tag"], {})[step] = float(row["value"])
    with open(os.path.join(run.path, "run.json")) as f:
        run.hparams = json.load(f)["args"]
    return run


def is_complete(run: Run) -> bool:
    """tools/grid.py's rule, with stage 2's presence read from the logged hyperparameters; an exported run is one
    that was complete."""
    if os.path.isfile(os.path.join(run.path, EXPORTED)):
        return True
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
    groups = defaultdict(dict)  # (task, method) -> {seed: run}
    for run in sorted(runs, key=lambda r: (int(r.time.rstrip("_")), len(r.time), r.path)):
        key = (run.task, method_name(run, a.method_from))
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


def metric_of(tag: str) -> str:
    """return, success_once, ... of eval/{who_}metric (who: transformer, accelerator or none)."""
    name = short(tag)
    for who in ("transformer_", "accelerator_"):
        if name.startswith(who):
            return name[len(who) :]
    return name


def std(values: np.ndarray, how: str) -> float:
    """The std over seeds: sample (ddof=1; undefined for one seed: nan) or population (ddof=0)."""
    if how == "population":
        return float(values.std())
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def read_final_eval(run: Run, tag: str) -> tuple[float, int] | None:
    """The mean of `tag`'s metric over RUN/eval_final.csv's episodes (tools/evaluate.py on final.pt) and their count,
    where the CSV evaluated this curve's policy (the transformer, or a baseline's actor); else None."""
    import csv

    path = os.path.join(run.path, FINAL_EVAL)
    if short(tag).startswith("accelerator_") or not os.path.isfile(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    want = "transformer" if short(tag).startswith("transformer_") else None
    rows = [r for r in rows if want is None or r.get("policy") == want]
    if not rows or metric_of(tag) not in rows[0]:
        return None
    return float(np.mean([float(r[metric_of(tag)]) for r in rows])), len(rows)


def final_values(c: Curve, a: argparse.Namespace) -> tuple[np.ndarray, str]:
    """Each seed's final value and where it comes from: the last --last aligned in-run evaluations, or with
    --final-eval the episodes of final.pt in RUN/eval_final.csv (policy curves only; accelerator curves keep theirs)."""
    in_run = c.values[:, -a.last :].mean(axis=1)  # one 5-episode evaluation is noisy: --last K averages K of them
    source = "in-run, last evaluation" if a.last == 1 else f"in-run, last {a.last} evaluations"
    if not a.final_eval or short(c.tag).startswith("accelerator_"):
        return in_run, source
    found = [read_final_eval(r, c.tag) for r in c.runs]
    missing = [r.path for r, f in zip(c.runs, found, strict=True) if f is None]
    if missing:
        raise UsageError(f"--final-eval: {missing[0]} has no {FINAL_EVAL} of its {metric_of(c.tag)} (tools/grid.py "
                         f"--evaluate N, or tools/evaluate.py RUN/final.pt --csv RUN/{FINAL_EVAL}; with "
                         "--complete-only for a grid still running)")  # fmt: skip
    episodes = sorted({n for _, n in found})
    eps = f"{episodes[0]}" if len(episodes) == 1 else f"{episodes[0]}-{episodes[-1]}"
    return np.array([v for v, _ in found]), f"final.pt, {eps} episodes"


def table(curves: list[Curve], a: argparse.Namespace) -> str:
    final_name = "final" if a.last == 1 else f"last {a.last} evals"
    if a.final_eval:
        final_name = "final"
    sd = f"{a.std} std"
    head = (f"| env | method | curve | seeds | step | {final_name} mean | {final_name} {sd} | best mean | best {sd} "
            f"| all evals mean | all evals {sd} |")  # fmt: skip
    head += f" {final_name} per seed | all evals per seed |" if a.per_seed else ""
    head += " final from |" if a.final_eval else ""
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    fmt = lambda x: "n/a" if np.isnan(x) else f"{x:.{a.digits}f}"
    for c in curves:
        # all evals: each seed's mean over the whole curve (area under it), less noisy than final and best
        (final, source), best, whole = final_values(c, a), c.values.max(axis=1), c.values.mean(axis=1)
        nums = " | ".join(fmt(x) for v in (final, best, whole) for x in (v.mean(), std(v, a.std)))
        if a.per_seed:  # --per-seed: "seed: value", in seed order, of final and of all evals
            seeds = [r.seed for r in c.runs]
            for values in (final, whole):
                nums += " | " + ", ".join(f"{s}: {x:.{a.digits}f}" for s, x in sorted(zip(seeds, values, strict=True)))
        if a.final_eval:
            nums += f" | {source}"
        lines.append(f"| {c.env} | {c.method} | {short(c.tag)} | {len(c.runs)} | {c.steps[-1]} | {nums} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- rliable
def rliable():
    """rliable's library and metrics modules, or one line saying how to install them."""
    try:
        from rliable import library, metrics
    except ImportError:
        raise UsageError("the intervals need rliable: pip install rliable==1.2.0 (see requirements.txt)") from None
    logging.getLogger("absl").setLevel(logging.WARNING)
    return library, metrics


def bootstrap(scores: dict, func, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's get_interval_estimates (95% percentile intervals, stratified bootstrap over the runs), its draws
    made reproducible: rliable 1.2.0 resamples with NumPy's global generator (np.random.choice, not the random_state
    it is given), so that generator is seeded here for each call and restored after it."""
    library, _ = rliable()
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        return library.get_interval_estimates(scores, func, reps=reps, confidence_interval_size=0.95)
    finally:
        np.random.set_state(saved)


def per_resample(func):
    """func (rliable's IQM, mean, probability of improvement: none depends on the order of an array's seeds) computed
    once per distinct resample: 3 seeds have 10, so most of the thousands of bootstrap calls are lookups."""
    memo = {}

    def cached(*arrays):
        key = tuple(tuple(np.sort(x, axis=0).ravel()) for x in arrays)
        if key not in memo:
            memo[key] = func(*arrays)
        return memo[key]

    return cached


def interval_estimates(values: np.ndarray, reps: int, seed: int) -> dict:
    """{"IQM": (point, low, high), "mean": (...)} of one method's per-seed values (runs x 1 task)."""
    _, metrics = rliable()
    stats = per_resample(lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]))
    point, ci = bootstrap({"x": values[:, None]}, stats, reps, seed)
    return {name: (point["x"][i], ci["x"][0, i], ci["x"][1, i]) for i, name in enumerate(("IQM", "mean"))}


def improvement(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
    """P(X > Y) of per-seed values x over y, with its 95% interval (each method's seeds resampled on their own)."""
    _, metrics = rliable()
    func = per_resample(lambda a, b: np.array([metrics.probability_of_improvement(a, b)]))
    point, ci = bootstrap({"xy": [x[:, None], y[:, None]]}, func, reps, seed)
    return point["xy"][0], ci["xy"][0, 0], ci["xy"][1, 0]


def reference_curve(curves: list[Curve], c: Curve, reference: str) -> Curve | None:
    """The reference method's curve of c's task and metric: its transformer's, else its only policy's, else its
    accelerator's."""
    theirs = [r for r in curves if r.env == c.env and r.method == reference and metric_of(r.tag) == metric_of(c.tag)]
    order = lambda r: ("transformer_" not in r.tag, "accelerator_" in r.tag)
    return min(theirs, key=order) if theirs else None


def interval_table(curves: list[Curve], a: argparse.Namespace) -> str:
    """IQM and mean with 95% stratified-bootstrap intervals, and P(X > reference), for final and all-evals values."""
    from importlib.metadata import version as package_version

    version = package_version("rliable")
    ref = f" | P(> {a.reference}) [95% CI]" if a.reference else ""
    lines = [
        f"95% stratified-bootstrap confidence intervals over seeds (rliable {version}, percentile, {a.reps} resamples, "
        f"bootstrap seed {a.bootstrap_seed}); IQM: interquartile mean (with fewer than 4 seeds, the mean)"
        + (f"; P(> {a.reference}): probability of improvement over {a.reference} (Mann-Whitney U over seed pairs, "
           "ties half)" if a.reference else ""),
        "",
        f"| env | method | curve | value | seeds | IQM [95% CI] | mean [95% CI]{ref} |",
        "|---|---|---|---|---|---|---" + "|---" * bool(ref) + "|",
    ]  # fmt: skip
    f = lambda est: f"{est[0]:.{a.digits}f} [{est[1]:.{a.digits}f}, {est[2]:.{a.digits}f}]"
    for c in curves:
        final, source = final_values(c, a)
        rc = reference_curve(curves, c, a.reference) if a.reference else None
        values = {f"final ({source})": final, "all evals": c.values.mean(axis=1)}
        ref_values = {} if rc is None else {f"final ({source})": final_values(rc, a)[0], "all evals": rc.values.mean(1)}
        for value, v in values.items():
            est = interval_estimates(v, a.reps, a.bootstrap_seed)
            row = f"| {c.env} | {c.method} | {short(c.tag)} | {value} | {len(v)} | {f(est['IQM'])} | {f(est['mean'])}"
            if a.reference:
                if rc is c:
                    row += " | reference"
                elif "accelerator_" in c.tag:
                    row += " | n/a (accelerator)"
                elif rc is None:
                    row += f" | n/a (no {a.reference} {metric_of(c.tag)} here)"
                else:
                    ref_value = ref_values.get(value, final_values(rc, a)[0])
                    p = improvement(v, ref_value, a.reps, a.bootstrap_seed)
                    row += f" | {p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]"
            lines.append(row + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- figures
# Legend words for the study's method names (analysis/study.sh); --label NAME=WORDS adds or overrides
LABELS = {
    "accel": "accelerated transformer",
    "accel_ascent": "accelerated transformer, critic ascent",
    "accel_lstm_velocity": "transformer accelerated by an LSTM",
    "bc_behavior": "accelerated transformer, BC on executed actions",
    "bc_eval": "accelerated transformer, T from evaluation rollouts",
    "transformer": "transformer from scratch",
    "mlp": "MLP TD3",
    "lstm": "LSTM TD3",
    "td3_accel_mujoco": "accelerated transformer",
    "td3_accel_lstm_pomdp": "transformer accelerated by an LSTM",
    "td3_accel_maniskill": "accelerated transformer",
    **{f"td3_{arch}_{family}": name for family in ("mujoco", "maniskill")
       for arch, name in (("mlp", "MLP TD3"), ("lstm", "LSTM TD3"), ("transformer", "transformer from scratch"))},
}  # fmt: skip


def label(method: str, labels: dict) -> str:
    """A method's name in words: --label's, the built-in one, `X_bufNk` as X's words with ", Nk buffer", each part of
    a --method-from name in words, or the name as it is."""
    if method in labels:
        return labels[method]
    m = re.fullmatch(r"(.+)_buf(\d+k?)", method)
    if m and m[1] in labels:
        return f"{labels[m[1]]}, {m[2]} buffer"
    if "/" in method:
        return ", ".join(label(part, labels) for part in method.split("/"))
    return method


def handover_steps(runs: list[Run], loaded: dict) -> set:
    """Where stage 2 starts in these runs: a run's accel_steps (rounded up to whole steps of all envs, as the ManiSkill
    script does), or, fine-tuned from a stage-1 checkpoint, the accel_steps of the run that wrote it (when loaded:
    `loaded` maps run directory names to runs)."""
    steps = set()
    for run in runs:
        hp = run.hparams
        if "accel_steps" not in hp or hp.get("finetune_steps", "").replace("_", "") == "0":
            continue
        source = run
        checkpoint = hp.get("accelerated_checkpoint", "None")
        if checkpoint not in ("None", ""):
            source = loaded.get(os.path.basename(os.path.dirname(os.path.normpath(checkpoint))))
            if source is None or "accel_steps" not in source.hparams:
                continue
        n, envs = int(source.hparams["accel_steps"].replace("_", "")), int(source.hparams.get("num_envs", "1"))
        steps.add(-(-n // envs) * envs)
    return steps


def panels(curves: list[Curve], a: argparse.Namespace, labels: dict) -> list[tuple[str, list[Curve]]]:
    """(title, curves) per panel: one per task; with --panel, one per group of method patterns and task; with
    --reference alone, one per other method and task (the reference beside it), titled with the two methods."""
    out = []
    for task in sorted({c.env for c in curves}):
        mine = [c for c in curves if c.env == task]
        if a.panel:
            groups = [[c for c in mine if any(fnmatch.fnmatchcase(c.method, p) for p in g)] for g in a.panel]
            out += [(task, g) for g in groups if g]
        elif a.reference and any(c.method == a.reference for c in mine):
            others = sorted({c.method for c in mine} - {a.reference})
            against = f"against {label(a.reference, labels)}"
            out += [(f"{task}: {label(m, labels)}\n{against}", [c for c in mine if c.method in (a.reference, m)])
                    for m in others] or [(task, mine)]  # fmt: skip
        else:
            out.append((task, mine))
    return out


def mean_band(c: Curve, a: argparse.Namespace) -> tuple[np.ndarray, np.ndarray] | None:
    """The 95% bootstrap interval of the mean over seeds at each step (rliable; seeds resampled per step)."""
    if len(c.runs) < 2:
        return None
    _, ci = bootstrap({"c": c.values[:, None, :]}, lambda x: x.mean(axis=0)[0], a.reps, a.bootstrap_seed)
    return ci["c"][0], ci["c"][1]


def plot(curves: list[Curve], a: argparse.Namespace, loaded: dict) -> tuple[list[str], int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    labels = {**LABELS, **a.label}
    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7, "axes.labelsize": 8,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "pdf.fonttype": 42})  # fmt: skip
    groups = panels(curves, a, labels)
    if not groups:
        raise UsageError(f"--panel: no method matches {' or '.join(','.join(g) for g in a.panel)}")
    colors = {m: f"C{i % 10}" for i, m in enumerate(sorted({c.method for c in curves}))}
    cols = min(len(groups), 2)  # two 3.5-inch panels fill a two-column paper's text width
    rows = -(-len(groups) // cols)
    entries = len({(c.method, "accelerator_" in c.tag) for c in curves})
    legend_height = 0.4 + 0.14 * -(-entries // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.5 * cols, 2.5 * rows + legend_height), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    steps_fmt = FuncFormatter(lambda x, _: f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if x else "0")
    legend = {}  # label -> handle, once for the figure
    for i, (ax, (title, group)) in enumerate(zip(axes.flat, groups, strict=False)):
        ylabels = set()
        for c in group:
            color, dashed = colors[c.method], "accelerator_" in c.tag
            for seed_values in c.values:  # each seed, thin, under the mean
                ax.plot(c.steps, seed_values, "--" if dashed else "-", color=color, lw=0.5, alpha=0.35)
            band = mean_band(c, a)
            if band is not None:
                ax.fill_between(c.steps, *band, color=color, alpha=0.18, lw=0)
            name = label(c.method, labels) + (": its accelerator, stage 1" if dashed else "")
            (line,) = ax.plot(c.steps, c.values.mean(axis=0), "--" if dashed else "-", color=color, lw=1.5)
            legend.setdefault(f"{name} (n={len(c.runs)})", line)
            metric = metric_of(c.tag)
            ylabels.add({"return": "evaluation return", "success_once": "success rate (at any step)",
                         "success_at_end": "success rate (at the end)"}.get(metric, metric))  # fmt: skip
        first, last = min(c.steps[0] for c in group), max(c.steps[-1] for c in group)
        for step in sorted(handover_steps([r for c in group for r in c.runs], loaded)):
            if first <= step <= last:
                ax.axvline(step, color="0.3", ls=":", lw=1)
                ax.annotate(
                    "handover:\nstage 1 → 2",
                    (step, 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -3),
                    textcoords="offset points",
                    va="top",
                    fontsize=6.5,
                    color="0.3",
                )
        ax.set_title(f"({chr(97 + i)}) {title}" if len(groups) > 1 else title)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(" / ".join(sorted(ylabels)))
        ax.xaxis.set_major_formatter(steps_fmt)
        ax.grid(alpha=0.3, lw=0.5)
    caption = (f"thick: mean over seeds; thin: each seed; shaded: 95% bootstrap CI of the mean (rliable, {a.reps} "
               "resamples)")  # fmt: skip
    caption = textwrap.fill(caption, 75 * cols)  # about 75 characters of 6.5-pt text per 3.5-inch panel
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=cols, frameon=False,
               title=caption, title_fontsize=6.5)  # fmt: skip
    stem, ext = os.path.splitext(a.out)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    paths = [stem + ".png", stem + ".pdf"] + ([a.out] if ext.lower() not in (".png", ".pdf") else [])
    for path in paths:
        fig.savefig(path, dpi=300, bbox_inches="tight")  # a long legend grows the figure, never clipped
    plt.close(fig)
    return paths, len(groups)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("roots", nargs="*", default=["runs"], help="folders to search for run directories (default: runs)")
    p.add_argument("--out", help="write the figure as this PNG and a PDF beside it (default: curves.png, or none with "
                   "--table)")  # fmt: skip
    p.add_argument("--table", action="store_true", help="print the tables of final, best and all-evals values")
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
    p.add_argument(
        "--per-seed", action="store_true", help="the table gains columns of each seed's final and all-evals values"
    )
    p.add_argument("--std", default="sample", choices=("sample", "population"),
                   help="the table's std over seeds: sample (ddof=1, default) or population (ddof=0)")  # fmt: skip
    p.add_argument(
        "--final-eval",
        action="store_true",
        help=f"final value of each policy curve from RUN/{FINAL_EVAL} (tools/grid.py --evaluate N)",
    )
    p.add_argument(
        "--reference",
        metavar="METHOD",
        help="the method the others' probability of improvement is against (and the figure's panels)",
    )
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the intervals (default 2000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's draws (default 0)")
    p.add_argument("--label", action="append", default=[], metavar="NAME=WORDS", help="a method's name in the legend")
    p.add_argument(
        "--panel",
        action="append",
        metavar="PATTERNS",
        help="one panel of these comma-separated method patterns (repeatable; default: one per task)",
    )
    a = p.parse_args(argv)
    labels = {}
    for item in a.label:
        name, eq, words = item.partition("=")
        if not eq or not name.strip() or not words.strip():
            p.error(f"--label {item}: give NAME=WORDS")
        labels[name.strip()] = words.strip()
    a.label = labels
    a.panel = [[x.strip() for x in g.split(",") if x.strip()] for g in a.panel or []]
    if any(not g for g in a.panel):
        p.error("--panel: give comma-separated method patterns")
    if a.reps < 1:
        p.error(f"--reps {a.reps}: give 1 or more resamples")
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
    if a.reference and not any(c.method == a.reference for c in curves):
        raise UsageError(
            f"--reference {a.reference}: not one of the methods ({', '.join(sorted({c.method for c in curves}))})"
        )
    rliable()  # before any output: the intervals and the figure's bands need it
    if a.table:
        print(table(curves, a))
        print()
        print(interval_table(curves, a))
    if a.out:
        loaded = {os.path.basename(os.path.normpath(r.path)): r for r in runs}  # by run directory name
        written, n = plot(curves, a, loaded)
        print(f"{PROG}: wrote {' and '.join(written)} ({n} panels, {len(curves)} curves)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
