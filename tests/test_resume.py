"""Interrupting and resuming td3_accel_mujoco.py (issue 11): SIGTERM at an episode boundary resumes exactly, mid-episode
with a fresh episode; bad --resume input exits 2 with one line; a second SIGINT quits at once; and a fault drill
(slow) kills a real process with SIGKILL at random moments and resumes it until it finishes. Runs are tiny Pendulum
runs (200-step episodes): 600 stage-1 steps, 400 stage-2 steps."""

import os
import random
import re
import shutil
import signal
import sys
import time

import pytest
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import (  # noqa: E402
    TINY_ACCEL,
    assert_identical,
    checked,
    load_pt,
    load_run_events,
    run_cli,
    scalars,
    single_run_dir,
    start_script,
)

import td3_accel_mujoco as m  # noqa: E402

SCRIPT = "td3_accel_mujoco.py"
ACCEL_STEPS, TOTAL_STEPS = 600, 1000
FLAGS = [
    "--env-id", "Pendulum-v1", "--accel-steps", ACCEL_STEPS, "--finetune-steps", TOTAL_STEPS - ACCEL_STEPS,
    "--learning-starts", 100, "--eval-frequency", 200, "--log-frequency", 100, "--checkpoint-frequency", 200,
    *TINY_ACCEL,
]  # fmt: skip
EVAL_STEPS = {"eval/accelerator_return": [200, 400, 600], "eval/transformer_return": [200, 400, 600, 800, 1000]}
STAGE_STEPS = list(range(100, TOTAL_STEPS + 1, 100))  # charts/stage, every --log-frequency
STATE_KEYS = ["actor", "actor_target", "qf1", "qf2", "qf1_target", "qf2_target", "transformer", "transformer_target",
              "q_optimizer", "actor_optimizer", "transformer_optimizer"]  # fmt: skip
ERROR = re.compile(r"^td3_accel_mujoco\.py: error: --resume .+$")
RESUMED = re.compile(r"^resumed (\S+) at step (\d+) \(stage ([12])\)$", re.M)


def evals(run) -> dict:
    ea = load_run_events(run)
    return {tag: scalars(ea, tag) for tag in EVAL_STEPS}


def assert_logged_once(run, total=TOTAL_STEPS, eval_steps=EVAL_STEPS):
    """Every expected charts/stage and evaluation step exactly once, in order: nothing lost, nothing twice."""
    ea = load_run_events(run)
    stages = scalars(ea, "charts/stage")
    assert [s for s, _ in stages] == list(range(100, total + 1, 100))
    assert all(v == (1 if s <= ACCEL_STEPS else 2) for s, v in stages), stages
    for tag, steps in eval_steps.items():
        assert [s for s, _ in scalars(ea, tag)] == steps, tag
    episodes = [s for s, _ in scalars(ea, "charts/episodic_return")]
    assert episodes == sorted(set(episodes)), episodes


def interrupted_run(run_dir, step: int) -> str:
    """A run that gets SIGTERM right after `step` (in-process main()): it writes resume.pt there and raises
    Interrupted, restoring the signal handlers it replaced."""
    args = tyro.cli(m.Args, args=[str(a) for a in [*FLAGS, "--run-dir", run_dir]])
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def on_step(v):
        if v["global_step"] == step:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(m.Interrupted, match=f"^SIGTERM at step {step}: resume.pt written; continue with:\n  python "):
        m.main(args, on_step=on_step)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    run = single_run_dir(run_dir)
    assert load_pt(os.path.join(run, m.RESUME_FILE))["global_step"] == step
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference")
    checked(run_cli(m, [*FLAGS, "--run-dir", run_dir]))
    run = single_run_dir(run_dir)
    return {"run": run, "evals": evals(run), "final": load_pt(os.path.join(run, "final.pt"))}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """stopped(step): the run directory of a run interrupted after `step`, made once per module; resume a copy."""
    runs = {}

    def get(step: int) -> str:
        if step not in runs:
            runs[step] = interrupted_run(tmp_path_factory.mktemp(f"stopped{step}"), step)
        return runs[step]

    return get


def copy_run(run, tmp_path) -> str:
    return shutil.copytree(run, os.path.join(tmp_path, os.path.basename(run)))


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM, then --resume
@pytest.mark.parametrize("step,stage", [(400, 1), (800, 2)])
def test_sigterm_at_episode_boundary_resumes_exactly(reference, stopped, tmp_path, step, stage):
    run = copy_run(stopped(step), tmp_path)
    state = load_pt(os.path.join(run, m.RESUME_FILE))
    assert (state["global_step"], state["stage"], state["episode_step"]) == (step, stage, 0)
    before = signal.getsignal(signal.SIGTERM)
    proc = checked(run_cli(m, ["--resume", run]))
    assert signal.getsignal(signal.SIGTERM) == before
    assert RESUMED.findall(proc.stdout) == [(run, str(step), str(stage))]
    assert "mid-episode" not in proc.stdout
    assert not os.path.exists(os.path.join(run, m.RESUME_FILE)), "a finished run leaves no resume.pt"
    assert evals(run) == reference["evals"]
    final = load_pt(os.path.join(run, "final.pt"))
    assert final["global_step"] == TOTAL_STEPS
    for key in STATE_KEYS:
        assert_identical(final[key], reference["final"][key], key)
    assert_logged_once(run)


@pytest.mark.parametrize("step,stage", [(400, 1), (800, 2)])
def test_sigterm_during_an_evaluation_stops_it_and_the_resumed_run_redoes_it(reference, tmp_path, monkeypatch, step,
                                                                            stage):  # fmt: skip
    """SIGTERM 10 policy calls into the evaluation at `step`: the evaluation stops at its next step (not at its end),
    resume.pt is written for `step` marked eval_pending, and the resumed run evaluates `step` again first, then ends
    exactly as the run never interrupted."""
    args = tyro.cli(m.Args, args=[str(a) for a in [*FLAGS, "--run-dir", tmp_path]])
    calls, sent = [], []
    real = m.transformer_act

    def counted(*a):
        calls.append(1)
        if len(calls) == 10 and not sent:  # step `step`'s own action is at most one call: this one is the evaluation's
            sent.append(len(calls))
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a)

    def arm(v):
        if v["global_step"] == step - 1:
            calls.clear()
            monkeypatch.setattr(m, "transformer_act", counted)

    with pytest.raises(m.Interrupted, match=f"^SIGTERM at step {step}: resume.pt written; continue with:\n  python "):
        m.main(args, on_step=arm)
    assert len(calls) - sent[0] <= 1, "the evaluation went on after the signal"
    monkeypatch.setattr(m, "transformer_act", real)
    run = single_run_dir(tmp_path)
    state = load_pt(os.path.join(run, m.RESUME_FILE))
    assert (state["global_step"], state["stage"], state["eval_pending"]) == (step, stage, True)
    proc = checked(run_cli(m, ["--resume", run]))
    assert f"resumed {run} at step {step} (stage {stage}); a signal stopped its evaluation, which runs again first" in (
        proc.stdout
    )
    assert evals(run) == reference["evals"]
    final = load_pt(os.path.join(run, "final.pt"))
    for key in STATE_KEYS:
        assert_identical(final[key], reference["final"][key], key)
    assert_logged_once(run)


def test_sigterm_mid_episode_resumes_with_a_fresh_episode(stopped, tmp_path):
    run = copy_run(stopped(300), tmp_path)  # 100 steps into the second episode
    assert load_pt(os.path.join(run, m.RESUME_FILE))["episode_step"] == 100
    proc = checked(run_cli(m, ["--resume", run]))
    fresh = [line for line in proc.stdout.splitlines() if "fresh" in line]
    assert len(fresh) == 1 and fresh[0].startswith("resumed mid-episode: the interrupted episode (100 steps)"), fresh
    assert load_pt(os.path.join(run, "final.pt"))["global_step"] == TOTAL_STEPS
    assert_logged_once(run)


def test_safe_flags_change_on_resume_and_are_used(stopped, tmp_path):
    run = copy_run(stopped(400), tmp_path)
    checked(run_cli(m, ["--resume", run, "--finetune-steps", 600, "--eval-frequency", 100]))
    final = load_pt(os.path.join(run, "final.pt"))
    assert final["global_step"] == 1200 and final["args"]["finetune_steps"] == 600
    assert final["args"]["eval_frequency"] == 100
    # evaluations every 200 steps up to the interruption, every 100 after it
    eval_steps = {"eval/accelerator_return": [200, 400, 500, 600],
                  "eval/transformer_return": [200, 400, *range(500, 1201, 100)]}  # fmt: skip
    assert_logged_once(run, total=1200, eval_steps=eval_steps)


# ---------------------------------------------------------------------------------------------------------------
# Bad --resume input: one line on stderr, exit code 2, the run directory untouched
def other_scripts_state(tmp_path, stopped, _reference) -> str:
    os.makedirs(path := os.path.join(tmp_path, "other"))
    torch.save({"script": "td3_mlp_mujoco.py", "args": load_pt(os.path.join(stopped(800), m.RESUME_FILE))["args"]},
               os.path.join(path, m.RESUME_FILE))  # fmt: skip
    return path


def truncated_state(tmp_path, stopped, _reference) -> str:
    os.makedirs(path := os.path.join(tmp_path, "corrupt"))
    with open(os.path.join(stopped(800), m.RESUME_FILE), "rb") as f:
        data = f.read()
    with open(os.path.join(path, m.RESUME_FILE), "wb") as f:
        f.write(data[: len(data) // 2])
    return path


BAD_RESUME = {  # case: (run directory, extra flags, what the line says)
    "missing directory": (lambda t, s, r: os.path.join(t, "nope"), [], "no such run directory"),
    "no resume.pt": (lambda t, s, r: str(t), [], "no resume.pt to resume from"),
    "finished run": (lambda t, s, r: r["run"], [], "the run finished: final.pt is there"),
    "truncated resume.pt": (truncated_state, [], "resume.pt is not readable"),
    "another script's state": (other_scripts_state, [], "was not written by td3_accel_mujoco.py"),
    "other env": (lambda t, s, r: s(800), ["--env-id", "InvertedPendulum-v4"], "--env-id InvertedPendulum-v4 contra"),
    "other buffer size": (lambda t, s, r: s(800), ["--buffer-size", 128], "--buffer-size 128 contradicts"),
    "other transformer": (lambda t, s, r: s(800), ["--num-layers", 2], "--num-layers 2 contradicts"),
    "stage 1 over": (lambda t, s, r: s(800), ["--accel-steps", 700], "--accel-steps cannot change, stage 1 is over"),
    "too few steps": (lambda t, s, r: s(800), ["--finetune-steps", 100], "ends the run before step 800"),
}


@pytest.mark.parametrize("case", list(BAD_RESUME))
def test_bad_resume_exits_2_with_one_line(reference, stopped, tmp_path, case):
    make_dir, flags, fragment = BAD_RESUME[case]
    run = make_dir(tmp_path, stopped, reference)
    files = {f: os.path.getmtime(os.path.join(run, f)) for f in os.listdir(run)} if os.path.isdir(run) else {}
    proc = run_cli(m, ["--resume", run, *flags])
    assert proc.returncode == 2, f"{case}: exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ERROR.match(lines[0]) and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]
    after = {f: os.path.getmtime(os.path.join(run, f)) for f in os.listdir(run)} if os.path.isdir(run) else {}
    assert after == files, "a refused --resume must leave the run directory as it was"


# ---------------------------------------------------------------------------------------------------------------
# A second SIGINT quits at once
def test_second_sigint_exits_at_once(tmp_path):
    # ten-episode evaluations every 100 steps: the first SIGINT most likely lands in one, and the step it
    # interrupts (which the script finishes before saving) lasts long enough for the second to arrive during it
    proc = start_script(SCRIPT, [*FLAGS, "--eval-frequency", 100, "--eval-episodes", 10, "--run-dir", tmp_path])
    try:
        assert proc.stdout.readline().startswith("run "), "the run did not start"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        line = proc.stderr.readline()  # the handler's line: the first SIGINT was handled
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert line.startswith("SIGINT: finishing the current step") and "again to quit at once" in line, line + err
    assert proc.returncode in (128 + signal.SIGINT, -signal.SIGINT), f"exit code {proc.returncode}\n{err}"
    assert "Traceback" not in err and "interrupted:" not in err, err


# ---------------------------------------------------------------------------------------------------------------
# Fault drill: a real process killed (SIGKILL) at random moments, then SIGTERM, resumed each time until it finishes
class Drill:
    """One run driven through kills and resumes; records what each kill left behind."""

    def __init__(self, tmp_path, rng):
        self.rng, self.run_dir = rng, tmp_path / "runs"
        self.run = None
        self.saved = []  # (global_step, episode_step, bytes of resume.pt) after every kill
        self.resumed_from = []  # (global_step, episode_step) of the resume.pt each resumed process started from
        self.moments = []  # when each SIGKILL came
        self.mid_write = 0  # kills that left a temporary checkpoint file behind

    def path(self, name=m.RESUME_FILE) -> str:
        return os.path.join(self.run, name)

    def state(self):
        return load_pt(self.path()) if os.path.exists(self.path()) else None

    def start(self, flags=()):
        """Start the script: a fresh run, or a --resume of self.run; returns the process and the state it resumes."""
        if self.run is None:
            return start_script(SCRIPT, [*FLAGS, "--run-dir", self.run_dir]), None
        state = self.state()
        self.resumed_from.append((state["global_step"], state["episode_step"]))
        return start_script(SCRIPT, ["--resume", self.run, *flags]), state

    def first_line(self, proc, resumed) -> None:
        line = proc.stdout.readline()
        if resumed is None:
            self.run = re.match(r"run (\S+): steps", line).group(1)
        else:
            match = RESUMED.match(line)
            assert match and match.group(1) == self.run, line
            assert int(match.group(2)) == resumed["global_step"], "resumed at another step than resume.pt's"

    def wait_for(self, proc, done, poll: float) -> None:
        deadline = time.time() + 120
        while not done():
            assert proc.poll() is None, "the run ended before the moment chosen to interrupt it"
            assert time.time() < deadline, "nothing happened for 120 s"
            time.sleep(poll)

    def interrupt(self, moment: str, flags=(), sig=signal.SIGKILL):
        """Start the script, send `sig` at `moment`: "start-up" (before the state is even loaded), "soon" (just after
        it resumed), "mid-write" (while a checkpoint is being written), "later" (some time after its next
        checkpoint) or "handled" (once its signal handler is set); returns the exit code and the output."""
        proc, resumed = self.start(flags)
        try:
            if moment == "start-up":
                time.sleep(self.rng.uniform(0.5, 3.0))
            else:
                self.first_line(proc, resumed)
            if moment in ("soon", "handled"):
                time.sleep(self.rng.uniform(0.0, 0.2) + 0.1 * (moment == "handled"))
            elif moment == "mid-write":
                self.wait_for(proc, lambda: any(".pt.tmp" in f for f in os.listdir(self.run)), 0.002)
            elif moment == "later":
                stat = lambda: os.stat(self.path()) if os.path.exists(self.path()) else None
                before = stat()
                self.wait_for(proc, lambda: (now := stat()) and (now.st_ino, now.st_mtime_ns) != (
                    before and (before.st_ino, before.st_mtime_ns)), 0.02)  # fmt: skip
                time.sleep(self.rng.uniform(0.0, 0.5))
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert "Traceback" not in err and "error:" not in err, err
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL, f"exit code {proc.returncode}\n{err}"
            self.moments.append(moment)
            self.check_files()
        return proc.returncode, out, err

    def check_files(self):
        """After a kill: every checkpoint loads, resume.pt never goes back."""
        self.mid_write += any(".pt.tmp" in f for f in os.listdir(self.run))
        state = self.state()
        assert state is not None, "a killed run must leave resume.pt"
        if os.path.exists(self.path("accelerated.pt")):
            assert load_pt(self.path("accelerated.pt"))["global_step"] == ACCEL_STEPS
        assert not self.saved or state["global_step"] >= self.saved[-1][0], "resume.pt went back"
        self.saved.append((state["global_step"], state["episode_step"], os.path.getsize(self.path())))


@pytest.mark.slow
def test_fault_drill_sigkill_then_sigterm(reference, tmp_path):
    rng = random.Random(20261128)
    drill = Drill(tmp_path, rng)
    drill.interrupt("later")  # the first process: after its first checkpoint, else there is nothing to resume
    # then checkpoints every 200 steps, all at episode boundaries (Pendulum: 200-step episodes), so every resume is
    # exact; then every 100 steps (--checkpoint-frequency may change on resume), some of them mid-episode
    for flags, moments in [((), ["start-up", "soon", "later"]), (("--checkpoint-frequency", 100), ["later"] * 2)]:
        for i, moment in enumerate(rng.sample(moments + ["mid-write"], len(moments) + 1)):
            if drill.saved[-1][0] >= 700:  # leave the SIGTERM below a run still going
                break
            drill.interrupt(moment, flags if i == 0 else ())
    rc, out, err = drill.interrupt("handled", sig=signal.SIGTERM)
    assert rc == m.EXIT_INTERRUPTED, f"exit code {rc}\n{err}"
    how = re.findall(r"SIGTERM at step (\d+): resume\.pt written; continue with:\n(.*)", err)  # the command alone
    assert len(how) == 1 and how[0][1] == f"  python {SCRIPT} --resume {drill.run}", err
    stopped_at = int(how[0][0])
    assert drill.state()["global_step"] == stopped_at
    proc, state = drill.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert RESUMED.findall(out) == [(drill.run, str(stopped_at), str(state["stage"]))]
    assert ("resumed mid-episode" in out) == (state["episode_step"] > 0), out

    assert load_pt(drill.path("final.pt"))["global_step"] == TOTAL_STEPS
    left = {f for f in os.listdir(drill.run) if not f.startswith("events.out.tfevents.")}
    assert left == {"accelerated.pt", "final.pt"}, "no resume.pt, no temporary files"
    assert_logged_once(drill.run)
    # evaluations up to the first resume from mid-episode are those of the uninterrupted run
    exact_until = min([step for step, episode_step in drill.resumed_from if episode_step], default=TOTAL_STEPS)
    logged = evals(drill.run)
    for tag, values in reference["evals"].items():
        compared = [(s, v) for s, v in values if s <= exact_until]
        assert compared and [(s, v) for s, v in logged[tag] if s <= exact_until] == compared, tag
    print(f"\nfault drill: SIGKILLs {drill.moments} ({drill.mid_write} left a temporary file), "
          f"{len(drill.resumed_from)} resumes, all succeeded; resume.pt after each kill (step, episode step, bytes): "
          f"{drill.saved}; SIGTERM at step {stopped_at}; evaluations identical to the uninterrupted run's up to step "
          f"{exact_until}")  # fmt: skip
