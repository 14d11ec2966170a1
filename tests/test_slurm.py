"""The Slurm recipes on a real Slurm (issue 26): examples/slurm/grid_array.sh (a tools/grid.py grid as a job array)
and examples/slurm_resume.sh (a self-requeueing run) on a one-node cluster on this machine
(examples/slurm/local_cluster.sh: Debian's slurm-wlm 22.05 and munge, slurmctld and slurmd on localhost).

- slurm_resume.sh with a real time limit (--time=1 --signal=B:USR1@30): warned by Slurm's timer, it writes resume.pt,
  requeues itself and resumes; a plain scancel then leaves it cancelled with resume.pt written.
- A tiny grid (Pendulum-v1, 200-step episodes, 2 methods x 2 seeds, 1000 steps, resume.pt every 200 steps) as an
  array sized from --dry-run: every task ends with final.pt, plot_runs --table sees every run, and submitted again
  every task finds its run complete.
- Single tasks of the same grid, each compared with the array's run of the same method and seed:
  `scancel --batch --signal=USR1` (what --signal=B:USR1@N sends): the task requeues itself and resumes;
  `scontrol requeue` (SIGTERM to every process of the task): one SIGTERM reaches the run, Slurm requeues;
  `scancel --signal=KILL` (a cancel on Slurm 22.05: SIGTERM first): resume.pt where it stopped, resumes when submitted
  again; SIGKILL to the run itself: it resumes from the last periodic resume.pt (an episode boundary) and ends with
  the uninterrupted run's evaluations and final weights.
- slurm_resume.sh under plain scancel: not requeued, resumes and finishes when submitted again.
Each resumed run: one run directory, resumed from resume.pt at the step it was written, all its steps, every step
once as TensorBoard reads the run, the evaluations up to the resume equal the uninterrupted run's (all of them, and
the final weights, where the resume was at an episode boundary).

Runs only where Slurm is installed (`apt-get install slurm-wlm munge`, as .ci/run does) and the local cluster is
running or can be started (as root); it is stopped again if this test started it. About 5 minutes on 2 cores."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import REPO_ROOT, assert_each_step_once, assert_identical, load_pt, load_run_events, scalars  # noqa: E402

pytestmark = pytest.mark.slow

CLUSTER = os.path.join(REPO_ROOT, "examples", "slurm", "local_cluster.sh")
ARRAY = os.path.join(REPO_ROOT, "examples", "slurm", "grid_array.sh")
RESUME = os.path.join(REPO_ROOT, "examples", "slurm_resume.sh")
CONF, MARKER = "/etc/slurm/slurm.conf", "# written by examples/slurm/local_cluster.sh"
ENV, STEPS, EPISODE = "Pendulum-v1", 1000, 200
ACCEL = ("--accel-steps 600 --finetune-steps 400 --batch-size 32 --buffer-size 64 --accel-buffer-size 1000 "
         "--dim-model 32 --dim-feedforward 64 --num-heads 2 --critic-warmup 20")  # fmt: skip
MLP = "--total-timesteps 1000 --batch-size 32 --buffer-size 1000"
COMMON = ["--learning-starts", "100", "--eval-frequency", "200", "--eval-episodes", "1", "--log-frequency", "100",
          "--checkpoint-frequency", "200"]  # fmt: skip
METHODS = ["--method", f"accel:td3_accel_mujoco.py:{ACCEL}", "--method", f"mlp:baselines/td3_mlp_mujoco.py:{MLP}"]
RUNS = {0: ("accel", 1), 1: ("mlp", 1), 2: ("accel", 2), 3: ("mlp", 2)}  # the grid's numbering (--dry-run)
EVALS = list(range(200, STEPS + 1, 200))  # every --eval-frequency; stage 1 (accelerator) ends at step 600
EVAL_STEPS = {"accel": {"eval/accelerator_return": EVALS[:3], "eval/transformer_return": EVALS},
              "mlp": {"eval/return": EVALS}}  # fmt: skip
STATE_KEYS = ["actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target", "transformer", "transformer_target",
              "q_optimizer", "actor_optimizer", "transformer_optimizer"]  # fmt: skip
RESUMED = re.compile(r"^resumed (\S+) at step (\d+)", re.M)
LONG = 300  # seconds a tiny job may take on a loaded 2-core machine, requeue delays included


def grid_args(root) -> list[str]:
    return ["--root", str(root), "--envs", ENV, "--seeds", "1", "2", *METHODS, "--", *COMMON]


def why_no_cluster() -> str | None:
    if not (shutil.which("sbatch") and shutil.which("slurmctld") and shutil.which("munged")):
        return "Slurm is not installed (apt-get install slurm-wlm munge, as .ci/run does)"
    if os.path.isfile(CONF) and MARKER not in open(CONF).read():
        return f"{CONF} is another cluster's: test jobs go only to examples/slurm/local_cluster.sh's"
    if not cluster_up() and os.geteuid() != 0:
        return "the local Slurm is not running and starting it needs root (examples/slurm/local_cluster.sh)"
    return None


def cluster_up() -> bool:
    if not (os.path.isfile(CONF) and MARKER in open(CONF).read()):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "is UP" in ping.stdout


@pytest.fixture(scope="module")
def cluster():
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    started = not cluster_up()
    if started:
        proc = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"local_cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}"
    yield
    if started:
        proc = subprocess.run([CLUSTER, "stop"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"local_cluster.sh stop failed:\n{proc.stdout}\n{proc.stderr}"


def job_env(**extra) -> dict:
    """The jobs' environment (sbatch exports it): this interpreter first on PATH, one thread."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def sbatch(*args, env=None) -> str:
    proc = subprocess.run(["sbatch", "--parsable", *map(str, args)], cwd=REPO_ROOT, env=env or job_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def jobs(job_id: str) -> list[dict]:
    """scontrol's record of a job, or of each task of an array job: {field: value}."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in proc.stdout.splitlines() if line.strip()]


def queued(job_id: str) -> bool:
    proc = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30)
    return bool(proc.stdout.strip())


def wait_for(predicate, what: str, timeout: float = LONG, job_id: str | None = None):
    start = time.time()
    while time.time() - start < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    if job_id:
        subprocess.run(["scancel", job_id], timeout=30)
    raise AssertionError(f"{what}: not after {timeout:.0f} s")


def wait_done(job_id: str, timeout: float = LONG) -> list[dict]:
    wait_for(lambda: not queued(job_id), f"job {job_id} to leave the queue", timeout, job_id)
    return jobs(job_id)


def read(path) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def logged(path, pattern: str):
    """A predicate: the file has a line matching pattern."""
    return lambda: re.search(pattern, read(path), re.M)


def run_dir(root, name: str, seed: int) -> str:
    dirs = [d for d in os.listdir(root) if d.startswith(f"{ENV}__{name}__{seed}__")]
    assert len(dirs) == 1, f"one run directory for {name} seed {seed} under {root}: {dirs}"
    return os.path.join(root, dirs[0])


def grid_log(root, name: str, seed: int) -> str:
    return os.path.join(root, "logs", f"{ENV}__{name}__{seed}.log")


def evals(run) -> dict:
    ea = load_run_events(run)
    return {tag: scalars(ea, tag) for tag in ea.Tags()["scalars"] if tag.startswith("eval/")}


def check_resumed(run, log_text: str, reference: str, name: str, resumes: int = 1) -> list[int]:
    """The run resumed `resumes` times from its resume.pt, finished, logged each step once (as TensorBoard reads the
    run), and equals the uninterrupted reference up to its (first) resume, or all through where every resume was at
    an episode boundary. Returns the resume steps."""
    found = RESUMED.findall(log_text)
    assert len(found) == resumes and all(path == run for path, _ in found), f"{found}\n{log_text}"
    steps = [int(step) for _, step in found]
    assert all(0 < step < STEPS for step in steps), steps
    assert not os.path.exists(os.path.join(run, "resume.pt")), "a finished run leaves no resume.pt"
    assert load_pt(os.path.join(run, "final.pt"))["global_step"] == STEPS
    assert len([f for f in os.listdir(run) if f.startswith("events.out.tfevents")]) == resumes + 1
    assert_each_step_once(load_run_events(run))
    got, want = evals(run), evals(reference)
    assert {tag: [s for s, _ in values] for tag, values in got.items()} == EVAL_STEPS[name]
    boundary = "resumed mid-episode" not in log_text
    assert boundary == all(step % EPISODE == 0 for step in steps), log_text
    if boundary:  # exact resume: the same evaluations and final weights as the run never interrupted
        assert got == want
        final, ref = load_pt(os.path.join(run, "final.pt")), load_pt(os.path.join(reference, "final.pt"))
        for key in [k for k in STATE_KEYS if k in ref]:
            assert_identical(final[key], ref[key], key)
    else:  # a fresh episode after the resume: what was logged before it is the reference's
        for tag in want:
            assert [v for v in got[tag] if v[0] <= steps[0]] == [v for v in want[tag] if v[0] <= steps[0]], tag
    print(f"{run}: resumed at step(s) {steps}, {'an episode boundary' if boundary else 'mid-episode'}")
    return steps


def first_table(text: str) -> dict:
    """plot_runs --table's first table: {(method, curve): (seeds, step)}."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| env | method | curve |"))
    header = [c.strip() for c in lines[at].strip("|").split("|")]
    rows = {}
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        row = dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True))
        rows[row["method"], row["curve"]] = (row["seeds"], row["step"])
    return rows


# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def time_limit_job(cluster, tmp_path_factory):
    """slurm_resume.sh with a one-minute limit and a run far longer than that: about 30 s after each start Slurm
    sends the warning (--signal=B:USR1@30)."""
    tmp = tmp_path_factory.mktemp("time_limit")
    flags = [*ACCEL.split(), *COMMON]
    for flag, value in [("--accel-steps", 100_000), ("--checkpoint-frequency", 1000)]:
        flags[flags.index(flag) + 1] = str(value)
    env = job_env(ENV_ID=ENV, SEED="1", EXP_NAME="limit", RUN_DIR=str(tmp / "runs"))
    out = tmp / "slurm.out"
    job = sbatch("--time=1", "--signal=B:USR1@30", "--cpus-per-task=1", "--mem=1G", f"--output={out}", RESUME,
                 *flags, env=env)  # fmt: skip
    return job, tmp / "runs", out


@pytest.fixture(scope="module")
def array_job(cluster, tmp_path_factory):
    """The tiny grid as an array job, sized from --dry-run (submitted, not waited for)."""
    tmp = tmp_path_factory.mktemp("array")
    root = tmp / "runs"
    args = grid_args(root)
    at = args.index("--")
    dry = subprocess.run([sys.executable, "tools/grid.py", *args[:at], "--dry-run", *args[at:]], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    n = int(re.search(r"^(\d+) runs: ", dry.stdout, re.M)[1])
    assert n == len(RUNS)
    job = sbatch(f"--array=0-{n - 1}", f"--output={tmp}/slurm-%A_%a.out", ARRAY, *args)
    return {"job": job, "root": root, "tmp": tmp}


@pytest.fixture(scope="module")
def reference(array_job):
    """The array's runs, done: {"runs": {run index: run directory}, "records": scontrol's records, ...}."""
    records = wait_done(array_job["job"])
    runs = {i: run_dir(array_job["root"], name, seed) for i, (name, seed) in RUNS.items()}
    return {**array_job, "records": records, "runs": runs}


def test_slurm_resume_time_limit_warns_requeues_and_resumes(time_limit_job, array_job):
    """A real time limit: warned by Slurm's timer, the run writes resume.pt, the job requeues itself and resumes
    from it; then a plain scancel: resume.pt written again, and the job stays cancelled (before issue 26 it requeued
    itself, so it could not be cancelled). The array runs meanwhile on the other CPU."""
    job, root, out = time_limit_job
    after_resume = lambda: re.search(r"^resumed \S+ at step \d+.*^step=\d+ ", read(out), re.M | re.S)
    wait_for(after_resume, "an evaluation after the first resume after a time-limit warning", job_id=job)
    subprocess.run(["scancel", job], check=True, timeout=30)
    [record] = wait_done(job)
    text = read(out)
    assert record["JobState"] == "CANCELLED" and int(record["Restarts"]) >= 1, f"{record}\n{text}"
    assert "DUE TO TIME LIMIT" not in text, text  # each start ended at the warning, before the limit
    [run] = [os.path.join(root, d) for d in os.listdir(root)]
    interrupted = [int(s) for s in re.findall(r"SIGTERM at step (\d+): resume.pt written", text)]
    resumed = [int(s) for path, s in RESUMED.findall(text) if path == run]
    # each resume.pt written was resumed from; Slurm may warn up to 60 s early, during a start-up (exit 143, the
    # run had nothing new to save), and that start is requeued too and resumes from the same resume.pt
    assert resumed and sorted(set(resumed)) == interrupted[:-1], text
    requeued = re.findall(r"^run interrupted \(exit code (3|143)\): requeueing job", text, re.M)
    assert len(requeued) == int(record["Restarts"]) and requeued.count("3") == len(interrupted) - 1, text
    assert text.rstrip().endswith("run interrupted as Slurm ended the job: resume.pt written; submit again to resume "
                                  "(a requeue does itself)"), text  # fmt: skip
    assert load_pt(os.path.join(run, "resume.pt"))["global_step"] == interrupted[-1]
    assert_each_step_once(load_run_events(run))
    print(f"{run}: {record['Restarts']} time-limit warning(s), resume.pt written at steps {interrupted}")


def test_array_runs_the_grid(reference):
    records, root = reference["records"], reference["root"]
    assert sorted(int(r["ArrayTaskId"]) for r in records) == list(RUNS)
    for r in records:
        assert (r["JobState"], r["ExitCode"], r["Restarts"]) == ("COMPLETED", "0:0", "0"), r
    for i, (name, seed) in RUNS.items():
        run = reference["runs"][i]
        assert os.path.isfile(os.path.join(run, "final.pt")) and not os.path.exists(os.path.join(run, "resume.pt"))
        assert {tag: [s for s, _ in v] for tag, v in evals(run).items()} == EVAL_STEPS[name]
        out = read(f"{reference['tmp']}/slurm-{reference['job']}_{i}.out")
        assert f"grid: run {i}, {ENV} {name} seed {seed}: fresh" in out, out
    table = subprocess.run([sys.executable, "tools/plot_runs.py", str(root), "--table"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert first_table(table.stdout) == {("accel", "transformer_return"): ("2", "1000"),
                                         ("accel", "accelerator_return"): ("2", "600"),
                                         ("mlp", "return"): ("2", "1000")}, table.stdout  # fmt: skip
    print(table.stdout)


def test_array_submitted_again_finds_every_run_complete(reference):
    tmp = reference["tmp"]
    job = sbatch(f"--array=0-{len(RUNS) - 1}", f"--output={tmp}/again-%A_%a.out", ARRAY, *grid_args(reference["root"]))
    for r in wait_done(job, 120):
        assert (r["JobState"], r["ExitCode"]) == ("COMPLETED", "0:0"), r
        i = int(r["ArrayTaskId"])
        out = read(f"{tmp}/again-{job}_{i}.out")
        assert f"grid: run {i}, {ENV} {RUNS[i][0]} seed {RUNS[i][1]}: complete, {reference['runs'][i]}" in out, out


def start_task(tmp_path, index: int, pattern: str = r"^step=200 ") -> tuple[str, str, str]:
    """Run `index` of the grid alone as an array task under tmp_path, once its log matches pattern: (array job id,
    the task's own job id, the run's grid log)."""
    root = tmp_path / "runs"
    job = sbatch(f"--array={index}", f"--output={tmp_path}/slurm-%A_%a.out", ARRAY, *grid_args(root))
    name, seed = RUNS[index]
    log = grid_log(root, name, seed)
    wait_for(logged(log, pattern), f"{pattern} in {log}", job_id=job)
    return job, jobs(job)[0]["JobId"], log


def submit_again(tmp_path, index: int) -> str:
    """The same task submitted again: the run resumes; its Slurm output."""
    job = sbatch(f"--array={index}", f"--output={tmp_path}/again-%A_%a.out", ARRAY, *grid_args(tmp_path / "runs"))
    [record] = wait_done(job)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), record
    name, seed = RUNS[index]
    out = read(f"{tmp_path}/again-{job}_{index}.out")
    assert f"grid: run {index}, {ENV} {name} seed {seed}: resume, log" in out, out
    return out


def test_array_task_warned_by_hand_requeues_itself_and_resumes(reference, tmp_path):
    """`scancel --batch --signal=USR1`: the signal --signal=B:USR1@300 sends before the time limit."""
    job, task, log = start_task(tmp_path, 0)
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_0"], check=True, timeout=30)
    [record] = wait_done(job)
    assert (record["JobState"], record["ExitCode"], record["Restarts"]) == ("COMPLETED", "0:0", "1"), record
    out = read(f"{tmp_path}/slurm-{job}_0.out")
    assert f"grid_array.sh: run 0 exited 3: requeueing task {task}" in out, out
    assert out.count("grid: run 0, ") == 2 and "grid: run 0, Pendulum-v1 accel seed 1: resume, log" in out, out
    check_resumed(run_dir(tmp_path / "runs", "accel", 1), read(log), reference["runs"][0], "accel")


def test_array_task_requeued_by_slurm_resumes(reference, tmp_path):
    """`scontrol requeue`: Slurm sends SIGTERM to every process of the task and requeues it; the run (the MLP
    baseline) gets one SIGTERM, writes resume.pt, and resumes when the task starts again."""
    job, task, log = start_task(tmp_path, 1)
    subprocess.run(["scontrol", "requeue", f"{job}_1"], check=True, timeout=30)
    [record] = wait_done(job)
    assert (record["JobState"], record["ExitCode"], record["Restarts"]) == ("COMPLETED", "0:0", "1"), record
    text = read(log)
    assert text.count("SIGTERM: finishing the current step") == 1, text
    assert "requeueing" not in read(f"{tmp_path}/slurm-{job}_1.out")  # Slurm did, not the script
    check_resumed(run_dir(tmp_path / "runs", "mlp", 1), text, reference["runs"][1], "mlp")


def test_array_task_scancel_signal_kill_is_a_cancel_and_resumes_when_submitted_again(reference, tmp_path):
    """`scancel --signal=KILL` is no hard kill on Slurm 22.05: it cancels the task as plain scancel does (SIGCONT and
    SIGTERM to every process, SIGKILL only after KillWait), so the run writes resume.pt where it is; the task stays
    cancelled and resumes when submitted again."""
    job, task, log = start_task(tmp_path, 3)
    subprocess.run(["scancel", "--signal=KILL", f"{job}_3"], check=True, timeout=30)
    [record] = wait_done(job)
    assert (record["JobState"], record["Restarts"]) == ("CANCELLED", "0"), record
    assert "exited 3 as Slurm ended the task: resume.pt written" in read(f"{tmp_path}/slurm-{job}_3.out")
    run = run_dir(tmp_path / "runs", "mlp", 2)
    saved = load_pt(os.path.join(run, "resume.pt"))["global_step"]
    assert f"SIGTERM at step {saved}: resume.pt written" in read(log)
    submit_again(tmp_path, 3)
    assert check_resumed(run, read(log), reference["runs"][3], "mlp") == [saved]


def test_array_task_whose_run_is_killed_resumes_from_the_last_periodic_resume_pt(reference, tmp_path):
    """SIGKILL to the run itself (what the OOM killer or a node's crash does; Slurm's own kills come after a
    SIGTERM): the task fails, and submitted again the run resumes from its last periodic resume.pt, an episode
    boundary, so its evaluations and final weights equal the uninterrupted run's."""
    job, task, log = start_task(tmp_path, 2, r"^step=400 ")
    time.sleep(1)  # let it log past its resume.pt (written at step 400, after that evaluation)
    pids = subprocess.run(["scontrol", "listpids", task], capture_output=True, text=True, check=True, timeout=30)
    argv = {
        int(line.split()[0]): read(f"/proc/{line.split()[0]}/cmdline").split("\0")
        for line in pids.stdout.splitlines()[1:]
    }
    [pid] = [p for p, args in argv.items() if args[1:2] == ["td3_accel_mujoco.py"]]  # the run, not its shell
    os.kill(pid, 9)
    [record] = wait_done(job)
    assert (record["JobState"], record["ExitCode"], record["Restarts"]) == ("FAILED", "137:0", "0"), record
    run = run_dir(tmp_path / "runs", "accel", 2)
    saved = load_pt(os.path.join(run, "resume.pt"))["global_step"]
    assert saved >= 400 and saved % EPISODE == 0, saved
    submit_again(tmp_path, 2)
    assert check_resumed(run, read(log), reference["runs"][2], "accel") == [saved]


def test_slurm_resume_cancelled_stays_cancelled_and_resumes_when_submitted_again(reference, tmp_path):
    """slurm_resume.sh under plain `scancel`: the run writes resume.pt and the job is not requeued; submitted again it
    resumes and finishes (compared with the array's run of the same flags and seed)."""
    env = job_env(ENV_ID=ENV, SEED="1", EXP_NAME="accel", RUN_DIR=str(tmp_path / "runs"))
    out = tmp_path / "slurm.out"
    submit = ["--cpus-per-task=1", "--mem=1G", f"--output={out}", RESUME, *ACCEL.split(), *COMMON]
    job = sbatch(*submit, env=env)
    wait_for(logged(out, r"^step=200 "), "the run's first evaluation", job_id=job)
    subprocess.run(["scancel", job], check=True, timeout=30)
    [record] = wait_done(job)
    assert (record["JobState"], record["Restarts"]) == ("CANCELLED", "0"), record
    run = run_dir(tmp_path / "runs", "accel", 1)
    assert os.path.isfile(os.path.join(run, "resume.pt"))
    assert "run interrupted as Slurm ended the job: resume.pt written" in read(out), read(out)
    [record] = wait_done(sbatch(*submit, env=env))
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), record
    check_resumed(run, read(out), reference["runs"][0], "accel")


def test_array_waiting_task_requeues_itself_until_the_run_it_needs_is_done(cluster, tmp_path):
    """A run whose flags glob another run's output (RQ4's --accelerated-checkpoint) waits: grid.py --index exits 3 and
    the task requeues itself, as JOBID_TASK (the last task's own job id is the whole array's: requeueing that id
    requeued every task, the run it waits for included, over and over), until the other run has written it."""
    tiny = ACCEL.split("--batch-size", 1)[1]
    root = tmp_path / "runs"
    methods = ["--method", f"a:td3_accel_mujoco.py:--accel-steps 400 --finetune-steps 0 --batch-size{tiny}",
               "--method", f"b:td3_accel_mujoco.py:--finetune-steps 200 --batch-size{tiny} "
               "--accelerated-checkpoint '{root}/{env_id}__a__{seed}__*/accelerated.pt'"]  # fmt: skip
    args = ["--root", str(root), "--envs", ENV, "--seeds", "1", *methods, "--", *COMMON]
    job = sbatch("--array=0-1", f"--output={tmp_path}/slurm-%A_%a.out", ARRAY, *args)
    records = {int(r["ArrayTaskId"]): r for r in wait_done(job)}
    for r in records.values():
        assert (r["JobState"], r["ExitCode"]) == ("COMPLETED", "0:0"), r
    assert records[0]["Restarts"] == "0", records[0]  # the run waited for ran once
    assert records[1]["JobId"] == job and int(records[1]["Restarts"]) >= 1, records[1]
    out = read(f"{tmp_path}/slurm-{job}_1.out")
    assert "grid: run 1, Pendulum-v1 b seed 1: waiting, needs" in out and f"requeueing task {job}_1" in out, out
    assert os.path.isfile(os.path.join(run_dir(root, "a", 1), "accelerated.pt"))
    assert os.path.isfile(os.path.join(run_dir(root, "b", 1), "final.pt"))
