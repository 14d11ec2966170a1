"""Run a grid of seeds x envs x methods, N runs at a time, one thread each; rerun it to finish what is left.

    python tools/grid.py --root runs/rq2 --envs Hopper-v4 HalfCheetah-v4 --seeds 1 2 3 --jobs 2 \\
        --method accel:td3_accel_mujoco.py --method mlp:baselines/td3_mlp_mujoco.py:"--total-timesteps 200000" \\
        -- --eval-frequency 5000
    python tools/grid.py ... --dry-run        # the runs, numbered, and what each would do
    python tools/grid.py ... --index 4        # only run 4 (a Slurm array task): the script replaces this process

A method is NAME:SCRIPT[:FLAGS]: NAME becomes the run's --exp-name (the run directory is
ROOT/{env_id}__{NAME}__{seed}__{unix_time}), FLAGS (one shell-quoted string) go to that method's runs only, and
the flags after `--` go to every run. The grid sets --env-id, --seed, --exp-name, --run-dir ROOT and
--num-threads (with OMP_NUM_THREADS and MKL_NUM_THREADS) itself. Runs are numbered seed by seed, then env, then
method, so the first seed of every method finishes first.

In FLAGS and after `--`, {root}, {env_id} and {seed} stand for the run's own (ROOT as given), and a value with `*`
is a glob, resolved when the run starts to the existing path it matches (the newest by modification time if
several do). So a method can fine-tune from another's stage-1 checkpoint of the same env and seed (RQ4):
    --method accel:td3_accel_mujoco.py:"--accel-steps 50000 --finetune-steps 50000" \\
    --method accel_buf10k:td3_accel_mujoco.py:"--finetune-steps 50000 --buffer-size 10000 \\
        --accelerated-checkpoint '{root}/{env_id}__accel__{seed}__*/accelerated.pt'"
A run whose glob matches nothing yet is waiting: not started, not failed, tried again whenever a slot is free (so
the run it needs may come earlier in the same grid call), listed with its pattern if still waiting at the end.

Each run, from the run directories already under ROOT for its env, method and seed:
- complete, skipped: one holds final.pt, or, for a run without stage 2 (--finetune-steps 0 among its flags),
  accelerated.pt and no resume.pt;
- resumed: otherwise, the newest one holding resume.pt (an interrupted run, see --checkpoint-frequency):
  `SCRIPT --resume DIR --num-threads T` plus those of its flags the script lets a resumed run change (its
  RESUME_SAFE: step counts, evaluation, logging); the others, a resolved glob among them, keep the run's own values;
- started fresh: otherwise (a run that crashed without resume.pt starts over in a new directory).
Each run's output is appended to ROOT/logs/{env_id}__{NAME}__{seed}.log. A progress line counts done, running,
failed, waiting and left runs with the elapsed time. SIGTERM or Ctrl-C asks every running run to write its
resume.pt and exit (a second one stops them at once). Exit code: 0 when every run is complete, 1 when a run failed
(listed with its log), 3 when runs were interrupted, not started or waiting (rerun the same command to resume or
start them; --index with a waiting run says so in one line on stderr and exits 3, so a requeued task retries),
2 for bad input.

--evaluate N: then every complete run's final.pt without an up-to-date RUN/eval_final.csv (N episodes, newer than
final.pt) is evaluated with tools/evaluate.py (N deterministic episodes, --jobs at a time, output appended to
ROOT/logs/{env_id}__{NAME}__{seed}.eval.log) into RUN/eval_final.csv, which tools/plot_runs.py --final-eval uses
for the final column in place of the in-run evaluations; a stage-1-only run (no final.pt) is not evaluated. A failed
evaluation makes the exit code 1. With --index, a complete run is evaluated; a run still to do runs (evaluate it
by running the same task again once it is complete).
Never imported by the training scripts.
"""

import argparse
import ast
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

if __package__:  # imported as tools.grid
    from .helptext import HelpFormatter
else:  # run as python tools/grid.py: its folder is on sys.path
    from helptext import HelpFormatter

PROG = "grid"
EVAL_CSV = "eval_final.csv"  # tools/evaluate.py's episodes of final.pt, read by tools/plot_runs.py --final-eval
GRID_FLAGS = ("--env-id", "--seed", "--exp-name", "--run-dir", "--num-threads", "--resume")
EXIT_INTERRUPTED = 3  # the scripts' code for "interrupted, resume.pt written"


class UsageError(Exception):
    pass


@dataclass
class Method:
    name: str
    script: str
    flags: list
    resume_safe: tuple  # the script's RESUME_SAFE field names (empty: the script cannot resume)


@dataclass
class Run:
    index: int
    env: str
    seed: int
    method: Method
    flags: list  # the method's flags, then the grid's pass-through ones
    status: str = "fresh"  # complete, resume or fresh (see `shown`: a run whose glob matches nothing is waiting)
    run_dir: str | None = None  # the complete or resumable run directory
    args: list | None = None  # the flags it would be started or resumed with, globs resolved (None: complete)
    needs: str | None = None  # the first glob that matches nothing yet (the run is waiting)
    proc: subprocess.Popen | None = None
    started: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.env} {self.method.name} seed {self.seed}"

    @property
    def shown(self) -> str:
        return "waiting" if self.needs else self.status  # resolve() leaves a complete run no `needs`


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def flag_items(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """[("--flag", [tokens of the flag and its values]), ...]; `--flag=value` is one token."""
    items = []
    for token in tokens:
        if token.startswith("--"):
            items.append((token.split("=", 1)[0], [token]))
        elif items:
            items[-1][1].append(token)
        else:
            raise UsageError(f"{shlex.join(tokens)}: {token!r} comes before any --flag")
    return items


def flag_value(tokens: list[str], flag: str) -> str | None:
    """The last value given to --flag, tyro style (the last one wins)."""
    value = None
    for name, given in flag_items(tokens):
        if name == flag:
            value = given[0].split("=", 1)[1] if "=" in given[0] else (given[1] if len(given) > 1 else "")
    return value


def substitute(tokens: list[str], root: str, env: str, seed: int) -> list[str]:
    """{root}, {env_id} and {seed} replaced by the run's own (other braces are left as they are)."""
    values = {"{root}": root, "{env_id}": env, "{seed}": str(seed)}
    return [re.sub(r"\{(?:root|env_id|seed)\}", lambda m: values[m[0]], token) for token in tokens]


def resolve_globs(tokens: list[str]) -> tuple[list[str], str | None]:
    """Each value with `*` replaced by the existing path it matches, the newest (modification time) of several;
    (tokens, None), or (tokens unchanged, the first pattern that matches nothing yet)."""
    resolved = []
    for token in tokens:
        prefix, value = ("", token)
        if token.startswith("--"):  # a flag's name never globs, the value of `--flag=value` may
            name, _, value = token.partition("=")
            prefix = name + "="
        if "*" not in value:
            resolved.append(token)
            continue
        matches = []
        for path in glob.glob(value):
            try:
                matches.append((os.path.getmtime(path), path))
            except OSError:  # removed since
                pass
        if not matches:
            return tokens, value
        resolved.append(prefix + max(matches)[1])
    return resolved, None


def resume_safe_flags(tokens: list[str], safe: tuple) -> list[str]:
    """The flags a resumed run may set anew (`--no-x` for a boolean x counts as x)."""
    kept = []
    for name, given in flag_items(tokens):
        field = name[2:].replace("-", "_")
        if field in safe or (field.startswith("no_") and field[3:] in safe):
            kept += given
    return kept


def read_resume_safe(script: str) -> tuple:
    """The script's module-level RESUME_SAFE tuple, read without importing it (no torch in the grid)."""
    with open(script) as f:
        tree = ast.parse(f.read(), script)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RESUME_SAFE" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def parse_method(spec: str) -> Method:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"--method {spec}: expected NAME:SCRIPT[:FLAGS]")
    name, script, flags = parts[0], parts[1], shlex.split(parts[2]) if len(parts) == 3 else []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", name) or "__" in name:
        raise UsageError(f"--method {spec}: the name {name!r} must be letters, digits, . _ = + - without '__'")
    if not os.path.isfile(script):
        raise UsageError(f"--method {spec}: no such script {script}")
    flag_items(flags)  # a stray value is an error here, before any run starts
    return Method(name, script, flags, read_resume_safe(script))


def run_dirs(root: str, env: str, name: str, seed: int) -> list[str]:
    """This env, method and seed's run directories under root, oldest first."""
    pattern = re.compile(rf"{re.escape(env)}__{re.escape(name)}__{seed}__(\d+)(_*)")
    found = []
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        m = pattern.fullmatch(entry)
        if m and os.path.isdir(os.path.join(root, entry)):
            found.append((int(m[1]), len(m[2]), os.path.join(root, entry)))
    return [path for *_, path in sorted(found)]


def is_complete(run_dir: str, stage2: bool) -> bool:
    has = lambda name: os.path.isfile(os.path.join(run_dir, name))
    return has("final.pt") or (not stage2 and has("accelerated.pt") and not has("resume.pt"))


def update_status(run: Run, root: str) -> None:
    dirs = run_dirs(root, run.env, run.method.name, run.seed)
    finetune = flag_value(run.flags, "--finetune-steps")
    stage2 = finetune is None or finetune.replace("_", "").strip().lstrip("+-").strip("0") != ""
    complete = [d for d in dirs if is_complete(d, stage2)]
    resumable = [d for d in dirs if os.path.isfile(os.path.join(d, "resume.pt"))] if run.method.resume_safe else []
    if complete:
        run.status, run.run_dir = "complete", complete[-1]
    elif resumable:
        run.status, run.run_dir = "resume", resumable[-1]
    else:
        run.status, run.run_dir = "fresh", None
    resolve(run)


def resolve(run: Run) -> str | None:
    """Resolve the globs of the flags the run would get now (a resumed run: its RESUME_SAFE ones); the pattern that
    matches nothing yet, or None."""
    if run.status == "complete":
        run.args, run.needs = None, None
        return None
    given = resume_safe_flags(run.flags, run.method.resume_safe) if run.status == "resume" else run.flags
    run.args, run.needs = resolve_globs(given)
    return run.needs


def command(run: Run, a: argparse.Namespace) -> list[str]:
    threads = ["--num-threads", str(a.threads)]
    if run.status == "resume":
        return [a.python, run.method.script, "--resume", run.run_dir, *threads, *run.args]
    own = ["--env-id", run.env, "--seed", str(run.seed), "--exp-name", run.method.name, "--run-dir", a.root]
    return [a.python, run.method.script, *own, *threads, *run.args]


def log_path(run: Run, root: str) -> str:
    return os.path.join(root, "logs", f"{run.env}__{run.method.name}__{run.seed}.log")


def child_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def open_log(run: Run, a: argparse.Namespace, cmd: list[str]):
    os.makedirs(os.path.dirname(log_path(run, a.root)), exist_ok=True)
    log = open(log_path(run, a.root), "a")  # noqa: SIM115 - handed to the child, closed when it ends
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} grid run {run.index} ({run.status}): {shlex.join(cmd)}\n")
    log.flush()
    return log


def last_line(path: str) -> str:
    """The log's last line with words in it; of an error box (tyro's), its first line."""
    try:
        with open(path, errors="replace") as f:
            tail = f.readlines()[-30:]
    except OSError:
        return ""
    boxes = [i for i, line in enumerate(tail) if line.startswith("╭")]
    lines = [line.strip(" \n│─") for line in (tail[boxes[-1] + 1 :] if boxes else tail)]
    lines = [line for line in lines if any(c.isalnum() for c in line)]
    return (lines[0] if boxes else lines[-1])[:200] if lines else ""


class Progress:
    """One line over the whole grid: rewritten in place on a terminal, printed at each change otherwise."""

    def __init__(self, total: int, skipped: int, waiting: int):
        self.total, self.skipped, self.start = total, skipped, time.time()
        self.done, self.failed, self.interrupted, self.running, self.waiting = skipped, [], [], 0, waiting
        self.tty = sys.stdout.isatty()
        self.shown = ""

    def line(self) -> str:
        left = self.total - self.done - len(self.failed) - len(self.interrupted) - self.running - self.waiting
        extra = f", {len(self.interrupted)} interrupted" if self.interrupted else ""
        extra += f", {self.waiting} waiting" if self.waiting else ""
        return (f"grid: {self.done}/{self.total} done ({self.skipped} skipped), {self.running} running, "
                f"{len(self.failed)} failed{extra}, {left} left, elapsed {hms(time.time() - self.start)}")  # fmt: skip

    def say(self, message: str) -> None:
        if self.tty and self.shown:
            print("\r\033[K", end="")
        print(message, flush=True)
        self.shown = ""
        self.show()

    def show(self) -> None:
        line = self.line()
        if self.tty:
            print(f"\r\033[K{line}", end="", flush=True)
        elif line != self.shown:
            print(line, flush=True)
        self.shown = line


def run_grid(runs: list[Run], a: argparse.Namespace) -> int:
    todo = [r for r in runs if r.status != "complete"]
    progress = Progress(len(runs), len(runs) - len(todo), sum(r.needs is not None for r in todo))
    running: list[Run] = []
    signals = []

    def on_signal(signum, frame):
        signals.append(signum)
        name = signal.Signals(signum).name
        if len(signals) == 1:
            progress.say(f"grid: {name}: no more runs start; {len(running)} running asked to write resume.pt and "
                         "exit (again to stop them at once)")  # fmt: skip
        for r in running:  # the runs are in sessions of their own: a terminal's Ctrl-C reaches them only from here
            r.proc.send_signal(signal.SIGTERM)

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        progress.show()
        while todo or running:
            while todo and len(running) < a.jobs and not signals:
                # a free slot: resolve the globs again (a run that finished may have written what one waits for)
                ready = [r for r in todo if resolve(r) is None]
                progress.waiting = len(todo) - len(ready)
                if not ready:
                    break
                r = ready[0]
                todo.remove(r)
                cmd = command(r, a)
                with open_log(r, a, cmd) as log:
                    r.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=child_env(a.threads), start_new_session=True)  # fmt: skip
                r.started = time.time()
                running.append(r)
                if signals:  # the signal came while it was starting
                    r.proc.send_signal(signal.SIGTERM)
                progress.running += 1
                what = f"resuming {r.run_dir}" if r.status == "resume" else "starting"
                progress.say(f"grid: run {r.index}, {r.label}: {what}")
            if not running and (signals or all(r.needs for r in todo)):
                break  # nothing running can make a waiting run ready
            time.sleep(0.2)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                progress.running -= 1
                rc, took = r.proc.returncode, hms(time.time() - r.started)
                update_status(r, a.root)
                if rc == 0 and r.status == "complete":
                    progress.done += 1
                    progress.say(f"grid: run {r.index}, {r.label}: done in {took}, {r.run_dir}")
                elif rc == EXIT_INTERRUPTED and r.status == "resume":
                    progress.interrupted.append(r)
                    progress.say(f"grid: run {r.index}, {r.label}: interrupted after {took}, resume.pt in {r.run_dir}")
                else:
                    why = f"exit {rc}" if rc else "exit 0 without final.pt"
                    progress.failed.append((r, why))
                    progress.say(f"grid: run {r.index}, {r.label}: FAILED ({why}) after {took}: "
                                 f"{last_line(log_path(r, a.root))}")  # fmt: skip
            if progress.tty:
                progress.show()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    if progress.tty:
        print()
    waiting = [r for r in todo if r.needs]
    never = len(todo) - len(waiting)
    progress.waiting = len(waiting)
    if progress.tty or never or progress.line() != progress.shown:
        print(progress.line() + (f", {never} not started" if never else ""))
    for r, why in progress.failed:
        print(f"failed: run {r.index}, {r.label} ({why}), log {log_path(r, a.root)}")
    for r in progress.interrupted:
        print(f"interrupted: run {r.index}, {r.label}, {r.run_dir}")
    for r in waiting:
        print(f"waiting: run {r.index}, {r.label}, needs {r.needs}")
    if progress.failed:
        return 1
    if progress.interrupted or todo:
        print("rerun the same command to resume or start what is left")
        return EXIT_INTERRUPTED
    return 0


def needs_evaluation(run_dir: str, episodes: int) -> bool:
    """A run with final.pt whose eval_final.csv is missing, older than final.pt or of another episode count."""
    final, table = os.path.join(run_dir, "final.pt"), os.path.join(run_dir, EVAL_CSV)
    if not os.path.isfile(final):
        return False
    if not os.path.isfile(table) or os.path.getmtime(table) < os.path.getmtime(final):
        return True
    with open(table) as f:
        return sum(1 for _ in f) - 1 != episodes


def evaluate_command(run: Run, a: argparse.Namespace) -> list[str]:
    evaluate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluate.py")
    return [a.python, evaluate, os.path.join(run.run_dir, "final.pt"), "--episodes", str(a.evaluate), "--csv",
            os.path.join(run.run_dir, EVAL_CSV), "--num-threads", str(a.threads)]  # fmt: skip


def eval_log_path(run: Run, root: str) -> str:
    """Where a run's evaluation output goes: beside its training log, ROOT/logs/{env_id}__{NAME}__{seed}.eval.log."""
    return log_path(run, root)[: -len(".log")] + ".eval.log"


def evaluate_runs(runs: list[Run], a: argparse.Namespace) -> int:
    """tools/evaluate.py on the final.pt of every complete run that needs it, --jobs at a time; 1 if one failed."""
    for r in runs:
        update_status(r, a.root)
    todo = [r for r in runs if r.status == "complete" and needs_evaluation(r.run_dir, a.evaluate)]
    running, failed, done = [], [], 0
    while todo or running:
        while todo and len(running) < a.jobs:
            r = todo.pop(0)
            log_file = eval_log_path(r, a.root)
            os.makedirs(os.path.dirname(log_file), exist_ok=True)
            with open(log_file, "a") as log:
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(evaluate_command(r, a))}\n")
                log.flush()
                proc = subprocess.Popen(evaluate_command(r, a), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=child_env(a.threads))  # fmt: skip
            running.append((r, proc, log_file))
            print(f"grid: run {r.index}, {r.label}: evaluating final.pt, {a.evaluate} episodes", flush=True)
        time.sleep(0.2)
        for item in [x for x in running if x[1].poll() is not None]:
            running.remove(item)
            r, proc, log_file = item
            with open(log_file, errors="replace") as f:
                result = [line.strip() for line in f if line.startswith("return: ")]
            if proc.returncode == 0 and result:
                done += 1
                print(f"grid: run {r.index}, {r.label}: {result[-1]} ({os.path.join(r.run_dir, EVAL_CSV)})")
            else:
                failed.append(r)
                print(f"grid: run {r.index}, {r.label}: evaluation FAILED (exit {proc.returncode}): "
                      f"{last_line(log_file)}")  # fmt: skip
    print(f"grid: {done} evaluated, {len(failed)} failed" + "".join(f"\nfailed evaluation: run {r.index}, "
          f"{r.label}, log {eval_log_path(r, a.root)}" for r in failed))  # fmt: skip
    return 1 if failed else 0


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    passthrough = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1 :]
    usage = ("%(prog)s --root ROOT --envs ENV.. --seeds SEED.. --method NAME:SCRIPT[:FLAGS]..\n"
             "            [options] [-- FLAGS]")  # fmt: skip
    p = Parser(prog=PROG, usage=usage, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--root", required=True, help="where the run directories and logs/ go (each run's --run-dir)")
    p.add_argument("--envs", nargs="+", required=True, help="env ids")
    p.add_argument("--seeds", nargs="+", type=int, required=True, help="seeds")
    p.add_argument("--method", action="append", required=True, metavar="NAME:SCRIPT[:FLAGS]", help="repeatable")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of each run (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print each run's status and command, run nothing")
    p.add_argument("--index", type=int, help="run only the run with this number (0-based, as --dry-run shows)")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the runs (default: this one)")
    p.add_argument(
        "--evaluate",
        type=int,
        metavar="N",
        help=f"then evaluate each complete run's final.pt with N episodes into RUN/{EVAL_CSV}",
    )
    a = p.parse_args(argv)
    a.passthrough = passthrough
    own = {o for action in p._actions for o in action.option_strings if o.startswith("--")} - {"--help"}
    for token in passthrough:
        if token.split("=", 1)[0] in own:
            p.error(f"{token} after -- would go to the scripts; grid options go before --")
    if a.jobs < 1 or a.threads < 1:
        p.error("--jobs and --threads must be at least 1")
    if a.evaluate is not None and a.evaluate < 1:
        p.error(f"--evaluate {a.evaluate}: give 1 or more episodes")
    return a


def build(a: argparse.Namespace) -> list[Run]:
    methods = [parse_method(spec) for spec in a.method]
    names = [m.name for m in methods]
    if len(set(names)) < len(names):
        raise UsageError(f"two methods share a name: {' '.join(names)}")
    for name, _ in flag_items(a.passthrough) + [item for m in methods for item in flag_items(m.flags)]:
        if name in GRID_FLAGS:
            raise UsageError(f"{name} is set by the grid (see --root, --envs, --seeds, --method, --threads)")
    runs = []
    for seed in a.seeds:
        for env in a.envs:
            for m in methods:
                runs.append(Run(len(runs), env, seed, m, substitute([*m.flags, *a.passthrough], a.root, env, seed)))
    for r in runs:
        update_status(r, a.root)
    return runs


def main(argv: list[str] | None = None) -> int:
    try:
        a = parse_args(sys.argv[1:] if argv is None else argv)
        runs = build(a)
        if a.index is not None and not 0 <= a.index < len(runs):
            raise UsageError(f"--index {a.index}: the grid has runs 0 to {len(runs) - 1}")
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    chosen = runs if a.index is None else [runs[a.index]]
    if a.dry_run:
        for r in chosen:
            if r.status == "complete":
                print(f"{r.index} complete {r.label}: {r.run_dir}")
                if a.evaluate and needs_evaluation(r.run_dir, a.evaluate):
                    print(f"{r.index} evaluate {shlex.join(evaluate_command(r, a))}")
            elif r.needs:
                print(f"{r.index} waiting {r.label}: needs {r.needs}")
            else:
                env = f"OMP_NUM_THREADS={a.threads} MKL_NUM_THREADS={a.threads}"
                print(f"{r.index} {r.status} {env} {shlex.join(command(r, a))} >> {log_path(r, a.root)} 2>&1")
        counts = {s: sum(r.shown == s for r in chosen) for s in ("complete", "resume", "fresh", "waiting")}
        waiting = f", {counts['waiting']} waiting" if counts["waiting"] else ""
        print(f"{len(chosen)} runs: {counts['complete']} complete, {counts['resume']} to resume, "
              f"{counts['fresh']} to start{waiting}")  # fmt: skip
        return 0
    if a.index is not None:  # one run, in this process: a scheduler's signals reach the script itself
        r = chosen[0]
        if r.status == "complete":
            print(f"grid: run {r.index}, {r.label}: complete, {r.run_dir}")
            return evaluate_runs([r], a) if a.evaluate else 0
        if r.needs:  # exit 3 as for an interrupted run: a requeued array task tries again
            print(f"{PROG}: run {r.index}, {r.label}: waiting, needs {r.needs}", file=sys.stderr)
            return EXIT_INTERRUPTED
        cmd = command(r, a)
        print(f"grid: run {r.index}, {r.label}: {r.status}, log {log_path(r, a.root)}", flush=True)
        log = open_log(r, a, cmd)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        os.execve(a.python, cmd, child_env(a.threads))
    rc = run_grid(runs, a)
    if a.evaluate:  # the complete runs, whatever happened to the others
        evaluated = evaluate_runs(runs, a)
        rc = rc or evaluated
    return rc


if __name__ == "__main__":
    sys.exit(main())
