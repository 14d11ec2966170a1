"""End-to-end runs of td3_accel_mujoco.py: checkpoints, TensorBoard logs, fine-tuning from a stage-1 checkpoint, bad
input, divergence and determinism. Every run is tiny (a few hundred steps, small transformer) and goes through cli(),
what `python td3_accel_mujoco.py` runs, in this process (run_cli); one test starts the real process for its exit
code."""

import glob
import hashlib
import importlib.util
import os
import re
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import (  # noqa: E402
    TINY_ACCEL,
    load_events,
    run_cli,
    run_dirs,
    run_script,
    scalars,
    single_run_dir,
    text_summary,
)

import td3_accel_mujoco as m  # noqa: E402

SCRIPT = "td3_accel_mujoco.py"
ENV_ID = "Hopper-v5"  # continuous returns, so evaluations tell different weights apart
ACCEL_STEPS, FINETUNE_STEPS = 600, 100
FULL_RUN = [
    "--env-id", ENV_ID, "--accel-steps", ACCEL_STEPS, "--learning-starts", 200, "--finetune-steps", FINETUNE_STEPS,
    "--bc-frequency", 100, "--eval-frequency", 300, "--log-frequency", 50, "--critic-ascent", *TINY_ACCEL,
]  # fmt: skip
LINE = re.compile(r"^td3_accel_mujoco\.py: error: .+$")


def checked(proc, rc=0):
    assert proc.returncode == rc, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def rebuild_transformer(ckpt: dict, seed: int = 123) -> m.TransformerActor:
    """A TransformerActor built from the checkpoint's own args (fresh random init), then loaded strictly."""
    torch.manual_seed(seed)
    args = m.Args(**ckpt["args"])
    env = m.make_env(args.env_id, 0)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    env.close()
    net = m.make_transformer(ckpt["obs_dim"], low, high, args)
    net.load_state_dict(ckpt["transformer"], strict=True)
    return net.eval()


def rebuild_actor(ckpt: dict) -> m.Actor:
    env = m.make_env(ckpt["args"]["env_id"], 0)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    env.close()
    net = m.Actor(ckpt["obs_dim"], low, high)
    net.load_state_dict(ckpt["actor"], strict=True)
    return net.eval()


def eval_like_script(ckpt: dict, step: int, act_of) -> float:
    """Repeat the script's evaluation at `step` (same eval seed and episode count) with the reloaded weights."""
    args = m.Args(**ckpt["args"])
    env = m.make_env(args.env_id, args.seed + 1)
    try:
        return m.evaluate(env, act_of, args.eval_episodes, args.seed + 10_000 + step, args.context_len, step)
    finally:
        env.close()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Stage 1 (600 steps, critic ascent on) then stage 2 (100 steps) in one run."""
    run_dir = tmp_path_factory.mktemp("full_run")
    proc = checked(run_cli(m, [*FULL_RUN, "--run-dir", run_dir]))
    path = single_run_dir(run_dir)
    return {"proc": proc, "path": path, "events": load_events(path)}


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
def test_full_run_writes_both_checkpoints(full_run):
    path = full_run["path"]
    assert sorted(f for f in os.listdir(path) if not f.startswith("events.out.tfevents")) == [
        "accelerated.pt",
        "final.pt",
    ]  # and no temporary file of the atomic save left behind
    accel, final = load(os.path.join(path, "accelerated.pt")), load(os.path.join(path, "final.pt"))
    assert (accel["stage"], accel["global_step"]) == (1, ACCEL_STEPS)
    assert (final["stage"], final["global_step"]) == (2, ACCEL_STEPS + FINETUNE_STEPS)
    assert accel["args"]["env_id"] == final["args"]["env_id"] == ENV_ID
    assert set(final["versions"]) >= {"torch", "gymnasium", "mujoco"}
    # stage 2 trained the transformer and the critics further
    for name in ("transformer", "qf1"):
        assert any(not torch.equal(v, accel[name][k]) for k, v in final[name].items()), name


def test_final_checkpoint_reloads_into_the_same_transformer(full_run):
    final = load(os.path.join(full_run["path"], "final.pt"))
    a, b = rebuild_transformer(final, seed=1), rebuild_transformer(final, seed=2)
    g = torch.Generator().manual_seed(0)
    window = torch.randn(32, final["args"]["context_len"], final["obs_dim"], generator=g)
    valid = torch.rand(32, final["args"]["context_len"], generator=g) > 0.3
    valid[:, -1] = True
    window = window * valid[..., None]
    with torch.no_grad():
        out_a, out_b = a(window, valid), b(window, valid)
        torch.manual_seed(7)
        low, high = (a.action_bias - a.action_scale).numpy(), (a.action_bias + a.action_scale).numpy()
        fresh = m.make_transformer(final["obs_dim"], low, high, m.Args(**final["args"])).eval()(window, valid)
    assert torch.equal(out_a, out_b)  # the saved weights fully determine the actions
    assert not torch.allclose(out_a, fresh)  # and they are not what a fresh initialisation gives
    for k, v in final["transformer"].items():
        assert torch.equal(a.state_dict()[k], v)


def test_checkpoints_reproduce_logged_evaluations(full_run):
    """The weights in each checkpoint are those the script evaluated last: re-running that evaluation with the
    reloaded networks gives the logged returns."""
    ea, path = full_run["events"], full_run["path"]
    accel, final = load(os.path.join(path, "accelerated.pt")), load(os.path.join(path, "final.pt"))
    logged_t = dict(scalars(ea, "eval/transformer_return"))
    logged_a = dict(scalars(ea, "eval/accelerator_return"))
    total = ACCEL_STEPS + FINETUNE_STEPS

    tr = rebuild_transformer(final)
    ret = eval_like_script(final, total, lambda w: m.transformer_act(tr, w, "cpu"))
    assert ret == pytest.approx(logged_t[total], rel=1e-5, abs=1e-4)

    tr1 = rebuild_transformer(accel)
    ret = eval_like_script(accel, ACCEL_STEPS, lambda w: m.transformer_act(tr1, w, "cpu"))
    assert ret == pytest.approx(logged_t[ACCEL_STEPS], rel=1e-5, abs=1e-4)
    actor = rebuild_actor(accel)
    ret = eval_like_script(accel, ACCEL_STEPS, lambda w: m.mlp_act(actor, w.obs[-1], "cpu"))
    assert ret == pytest.approx(logged_a[ACCEL_STEPS], rel=1e-5, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# TensorBoard
REQUIRED_TAGS = [
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/stage", "eval/accelerator_return",
    "eval/transformer_return", "losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss", "losses/bc_loss",
    "losses/critic_ascent_q",
]  # fmt: skip


def test_event_file_has_required_scalars(full_run):
    ea = full_run["events"]
    missing = sorted(set(REQUIRED_TAGS) - set(ea.Tags()["scalars"]))
    assert not missing, f"missing scalar tags: {missing}"
    for tag in REQUIRED_TAGS:
        assert all(np.isfinite(v) for _, v in scalars(ea, tag)), tag
    total = ACCEL_STEPS + FINETUNE_STEPS
    assert [s for s, _ in scalars(ea, "eval/transformer_return")] == [300, 600, total]
    assert [s for s, _ in scalars(ea, "eval/accelerator_return")] == [300, 600]  # no accelerator in stage 2
    # the transformer is trained on T only in stage 1, at multiples of --bc-frequency after learning starts
    assert [s for s, _ in scalars(ea, "losses/bc_loss")] == [300, 400, 500, 600]
    assert [s for s, _ in scalars(ea, "losses/critic_ascent_q")] == [300, 400, 500, 600]
    lengths = [v for _, v in scalars(ea, "charts/episodic_length")]
    returns = scalars(ea, "charts/episodic_return")
    assert len(lengths) == len(returns) > 0 and all(1 <= v <= 1000 for v in lengths)


def test_global_step_continues_across_stages(full_run):
    ea = full_run["events"]
    total = ACCEL_STEPS + FINETUNE_STEPS
    stage = scalars(ea, "charts/stage")
    assert [s for s, _ in stage] == list(range(50, total + 1, 50))
    assert all(v == (1 if s <= ACCEL_STEPS else 2) for s, v in stage), stage
    qf1_steps = [s for s, _ in scalars(ea, "losses/qf1_loss")]
    assert qf1_steps == list(range(250, total + 1, 50))  # critic losses logged in both stages
    assert max(s for s, _ in scalars(ea, "losses/actor_loss")) == total  # the transformer's TD3 actor loss
    episode_steps = [s for s, _ in scalars(ea, "charts/episodic_return")]
    assert max(episode_steps) <= total


def test_progress_line_per_evaluation_with_eta(full_run):
    lines = [x for x in full_run["proc"].stdout.splitlines() if x.startswith("step=")]
    pattern = re.compile(
        r"^step=(\d+) stage=([12]) SPS=\d+ eta=(measuring|>?(?:\d+s|\d+m\d\ds|\d+h\d\dm)) episodes=\d+ (.*)$"
    )
    parsed = [pattern.match(x) for x in lines]
    assert all(parsed), lines
    assert [(int(p[1]), int(p[2])) for p in parsed] == [(300, 1), (600, 1), (700, 2)]
    assert parsed[-1][3] == "0s"  # nothing left at the end
    assert "accelerator_return=" in parsed[0][4] and "accelerator_return=" not in parsed[-1][4]


def test_hyperparameters_text_mentions_versions(full_run):
    import gymnasium
    import mujoco

    text = text_summary(full_run["events"], "hyperparameters")
    assert f"|version/torch|{torch.__version__}|" in text
    assert f"|version/gymnasium|{gymnasium.__version__}|" in text
    assert f"|version/mujoco|{mujoco.__version__}|" in text
    assert f"|env_id|{ENV_ID}|" in text and "|critic_ascent|True|" in text


# ---------------------------------------------------------------------------------------------------------------
# Stage 2 from a stage-1 checkpoint
def finetune_args(full_run, run_dir, *extra, ckpt=None):
    ckpt = ckpt or os.path.join(full_run["path"], "accelerated.pt")
    return ["--env-id", ENV_ID, "--accelerated-checkpoint", ckpt, "--finetune-steps", FINETUNE_STEPS,
            "--eval-frequency", 300, "--log-frequency", 50, *TINY_ACCEL, "--run-dir", run_dir, *extra]  # fmt: skip


def test_finetune_from_checkpoint_runs_stage_2_only(full_run, tmp_path):
    ckpt = os.path.join(full_run["path"], "accelerated.pt")
    before = sha256(ckpt)
    checked(run_cli(m, finetune_args(full_run, tmp_path)))
    total = ACCEL_STEPS + FINETUNE_STEPS
    path = single_run_dir(tmp_path)
    assert os.path.isfile(os.path.join(path, "final.pt"))
    assert not os.path.exists(os.path.join(path, "accelerated.pt"))
    assert sha256(ckpt) == before
    final = load(os.path.join(path, "final.pt"))
    assert (final["stage"], final["global_step"]) == (2, total)
    ea = load_events(path)
    stage = scalars(ea, "charts/stage")
    assert stage and all(v == 2 for _, v in stage) and min(s for s, _ in stage) > ACCEL_STEPS
    assert min(s for s, _ in scalars(ea, "losses/qf1_loss")) > ACCEL_STEPS
    assert [s for s, _ in scalars(ea, "eval/transformer_return")] == [total]
    assert "eval/accelerator_return" not in ea.Tags()["scalars"]
    assert "losses/bc_loss" not in ea.Tags()["scalars"]


def test_old_checkpoint_fine_tunes_with_no_prefill(full_run, tmp_path):
    old = bad_checkpoint(full_run, tmp_path, "old")  # no stored transitions: stage 2 starts from an empty buffer
    checked(run_cli(m, finetune_args(full_run, tmp_path / "runs", "--no-prefill", ckpt=old)))
    final = load(os.path.join(single_run_dir(tmp_path / "runs"), "final.pt"))
    assert (final["stage"], final["global_step"]) == (2, ACCEL_STEPS + FINETUNE_STEPS)


def test_critic_warmup_trains_only_the_critics(full_run, tmp_path):
    # warm-up as long as stage 2: the critics and their targets learn, the transformer and its target stay put
    checked(run_cli(m, finetune_args(full_run, tmp_path, "--critic-warmup", FINETUNE_STEPS)))
    accel = load(os.path.join(full_run["path"], "accelerated.pt"))
    path = single_run_dir(tmp_path)
    final = load(os.path.join(path, "final.pt"))
    for name in ("transformer", "transformer_target"):
        for k, v in accel[name].items():
            assert torch.equal(final[name][k], v), f"{name}.{k} changed during the critic warm-up"
    for name in ("qf1", "qf2", "qf1_target", "qf2_target"):
        assert any(not torch.equal(v, accel[name][k]) for k, v in final[name].items()), name
    assert "losses/actor_loss" not in load_events(path).Tags()["scalars"]


@pytest.fixture(scope="module")
def finetune_lr0(full_run, tmp_path_factory):
    """Fine-tuning with --learning-rate 0: no network may change, only the target networks (soft updates)."""
    run_dir = tmp_path_factory.mktemp("finetune_lr0")
    checked(run_cli(m, finetune_args(full_run, run_dir, "--learning-rate", 0)))
    accel = load(os.path.join(full_run["path"], "accelerated.pt"))
    final = load(os.path.join(single_run_dir(run_dir), "final.pt"))
    return accel, final


def test_finetune_starts_from_checkpoint_transformer(finetune_lr0):
    accel, final = finetune_lr0
    for k, v in accel["transformer"].items():
        assert torch.equal(final["transformer"][k], v), k


def test_finetune_learning_rate_applies_to_critics(finetune_lr0):
    accel, final = finetune_lr0
    for name in ("qf1", "qf2"):
        for k, v in accel[name].items():
            assert torch.equal(final[name][k], v), f"{name}.{k} changed although --learning-rate is 0"


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line on stderr, no run directory
def bad_checkpoint(full_run, tmp_path, kind):
    if kind == "garbage":
        path = tmp_path / "garbage.pt"
        path.write_bytes(b"\x00\x01 this is not a checkpoint \xff" * 50)
        return str(path)
    if kind == "old":  # written before checkpoints kept the accelerator's latest transitions
        ckpt = load(os.path.join(full_run["path"], "accelerated.pt"))
        del ckpt["recent_transitions"]
        torch.save(ckpt, tmp_path / "old.pt")
        return str(tmp_path / "old.pt")
    return os.path.join(full_run["path"], "final.pt" if kind == "final" else "accelerated.pt")


BAD_INPUT = {
    "unknown env": (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    "discrete actions": (["--env-id", "CartPole-v1"], "not continuous"),
    "buffer < batch": (["--env-id", ENV_ID, "--buffer-size", 16, "--batch-size", 32], "--buffer-size (16)"),
    "accel buffer < batch": (["--env-id", ENV_ID, "--accel-buffer-size", 8, "--batch-size", 32], "--accel-buffer-size"),
    "context 0": (["--env-id", ENV_ID, "--context-len", 0], "--context-len must be positive"),
    "CleanRL's steps flag": (
        ["--env-id", ENV_ID, "--total-timesteps", 1000],
        "--total-timesteps: this script runs two "
        "stages, give their lengths: --accel-steps (stage 1) and --finetune-steps (stage 2)",
    ),
    # Adam's first step lr / (1 - beta1) would overflow float32 (it used to end in a traceback)
    "huge learning rate": (["--env-id", ENV_ID, "--learning-rate", 1e38], "--learning-rate must be finite and at most"),
    "negative accel steps": (["--env-id", ENV_ID, "--accel-steps", -5], "--accel-steps must be >= 0"),
    "heads do not divide": (["--env-id", ENV_ID, "--dim-model", 30, "--num-heads", 4], "divisible"),
    "missing checkpoint": (
        ["--env-id", ENV_ID, "--accelerated-checkpoint", "/nonexistent/accelerated.pt"],
        "no such file",
    ),  # fmt: skip
    "checkpoint of another env": (
        ["--env-id", "Walker2d-v5", "--accelerated-checkpoint", "CKPT"],
        f"was made for {ENV_ID}, not Walker2d-v5",
    ),  # fmt: skip
    "checkpoint of another shape": (
        ["--env-id", ENV_ID, "--dim-model", 64, "--accelerated-checkpoint", "CKPT"],
        "--dim-model 32, this run asks for 64",
    ),  # fmt: skip
    "garbage checkpoint": (["--env-id", ENV_ID, "--accelerated-checkpoint", "GARBAGE"], "not a readable checkpoint"),
    "final.pt as a stage-1 checkpoint": (
        ["--env-id", ENV_ID, "--accelerated-checkpoint", "FINAL"],
        "was written after stage 2; give the accelerated.pt",
    ),  # fmt: skip
    "checkpoint without transitions to prefill with": (
        ["--env-id", ENV_ID, "--accelerated-checkpoint", "OLD"],
        "holds no transitions to prefill stage 2's buffer with",
    ),  # fmt: skip
    "checkpoint and no fine-tuning": (
        ["--env-id", ENV_ID, "--accelerated-checkpoint", "CKPT", "--finetune-steps", 0],
        "--finetune-steps 0 leaves nothing to run",
    ),  # fmt: skip
}
if importlib.util.find_spec("wandb") is None:
    BAD_INPUT["--track without wandb"] = (["--env-id", ENV_ID, "--track"], "--track needs wandb: pip install wandb")


def bad_argv(full_run, tmp_path, case):
    argv, fragment = BAD_INPUT[case]
    argv = [bad_checkpoint(full_run, tmp_path, "garbage") if a == "GARBAGE" else a for a in argv]
    argv = [bad_checkpoint(full_run, tmp_path, "real") if a == "CKPT" else a for a in argv]
    argv = [bad_checkpoint(full_run, tmp_path, a.lower()) if a in ("FINAL", "OLD") else a for a in argv]
    run_dir = tmp_path / "runs"
    # tiny sizes keep a run short should the script wrongly accept the input; the case's flags come last and win
    return [*TINY_ACCEL, "--accel-steps", 50, "--finetune-steps", 10, "--run-dir", run_dir, *argv], fragment, run_dir


def check_one_error_line(case, rc, stderr, fragment, run_dir):
    assert rc == 2, f"{case}: exit code {rc}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]), f"{case}: expected one error line, got:\n{stderr}"
    assert fragment in lines[0], lines[0]
    assert run_dirs(run_dir) == [], "no run directory may be created for bad input"


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line(full_run, tmp_path, case):
    argv, fragment, run_dir = bad_argv(full_run, tmp_path, case)
    proc = run_cli(m, argv)
    check_one_error_line(case, proc.returncode, proc.stderr, fragment, run_dir)


@pytest.mark.parametrize("case", ["checkpoint of another env"])  # the process exit code, once; cli() covers the rest
def test_bad_input_exits_2_with_one_line_as_script(full_run, tmp_path, case):
    argv, fragment, run_dir = bad_argv(full_run, tmp_path, case)
    proc = run_script(SCRIPT, argv, timeout=120)
    check_one_error_line(case, proc.returncode, proc.stderr, fragment, run_dir)


# ---------------------------------------------------------------------------------------------------------------
# Divergence: exit code 1, the loss and the step named, checkpoints already written intact
DIVERGED = re.compile(r"^td3_accel_mujoco\.py: diverged: (losses/\w+) is (nan|inf|-inf) at global step (\d+)")


def diverged(proc):
    assert proc.returncode == 1, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    match = DIVERGED.match(lines[0])
    assert match, lines[0]
    return match.group(1), int(match.group(3))


STAGE1_DIVERGE = ["--env-id", ENV_ID, "--accel-steps", 400, "--learning-starts", 200, "--finetune-steps", 50,
                  "--bc-frequency", 100, "--eval-frequency", 1000, *TINY_ACCEL]  # fmt: skip


def test_divergence_in_stage_1_names_loss_and_step(tmp_path):
    proc = run_cli(m, [*STAGE1_DIVERGE, "--learning-rate", 1e30, "--run-dir", tmp_path / "runs"], cwd=tmp_path)
    loss, step = diverged(proc)
    assert loss in ("losses/qf1_loss", "losses/qf2_loss")
    assert 200 < step <= 210  # within a few updates of --learning-starts
    assert glob.glob(str(tmp_path / "runs" / "*" / "*.pt")) == []


@pytest.fixture(scope="module")
def finetune_diverged(full_run, tmp_path_factory):
    """Fine-tuning from the full run's accelerated.pt with a learning rate that makes the transformer diverge."""
    ckpt = os.path.join(full_run["path"], "accelerated.pt")
    before = (sha256(ckpt), os.stat(ckpt).st_mtime_ns)
    cwd = tmp_path_factory.mktemp("finetune_diverged")
    run_dir = cwd / "runs"
    argv = finetune_args(full_run, run_dir, "--learning-rate", 1e30, "--finetune-steps", 300)
    proc = run_cli(m, argv, cwd=cwd)
    return {"proc": proc, "ckpt": ckpt, "before": before, "run_dir": run_dir, "cwd": cwd}


def test_divergence_while_finetuning_keeps_checkpoint_intact(finetune_diverged):
    d = finetune_diverged
    proc = d["proc"]
    assert proc.returncode == 1, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    own = [line for line in proc.stderr.splitlines() if line.startswith("td3_accel_mujoco.py:")]
    assert len(own) == 1 and own[0] == proc.stderr.strip().splitlines()[-1], proc.stderr
    match = re.search(r"diverged: .* at global step (\d+)", own[0])
    assert match, own[0]
    assert ACCEL_STEPS < int(match.group(1)) <= ACCEL_STEPS + 300
    assert (sha256(d["ckpt"]), os.stat(d["ckpt"]).st_mtime_ns) == d["before"]
    assert glob.glob(str(d["run_dir"] / "**" / "final.pt"), recursive=True) == []
    assert glob.glob(str(d["run_dir"] / "**" / "*.pt*"), recursive=True) == []  # no partial/temporary checkpoint


def test_divergence_stops_before_a_nan_action_reaches_the_env(finetune_diverged):
    d = finetune_diverged
    assert d["proc"].returncode == 1
    assert "Nan, Inf or huge value" not in d["proc"].stderr, d["proc"].stderr
    assert not os.path.exists(d["cwd"] / "MUJOCO_LOG.TXT")
    assert len(d["proc"].stderr.strip().splitlines()) == 1, d["proc"].stderr


# ---------------------------------------------------------------------------------------------------------------
# Determinism
def test_same_seed_gives_identical_runs(tmp_path):
    argv = ["--env-id", ENV_ID, "--accel-steps", 400, "--learning-starts", 100, "--finetune-steps", 60,
            "--bc-frequency", 100, "--eval-frequency", 100, "--log-frequency", 20, "--torch-deterministic",
            "--seed", 3, *TINY_ACCEL]  # fmt: skip
    for i in range(2):  # one after the other in one process: nothing the first run leaves may change the second
        checked(run_cli(m, [*argv, "--run-dir", tmp_path / f"r{i}"]))
    ea = [load_events(single_run_dir(tmp_path / f"r{i}")) for i in range(2)]
    for tag in ("eval/transformer_return", "eval/accelerator_return", "losses/qf1_loss", "losses/actor_loss",
                "losses/bc_loss", "charts/episodic_return"):  # fmt: skip
        a, b = scalars(ea[0], tag), scalars(ea[1], tag)
        assert a, tag
        assert a == b, f"{tag} differs between two runs with the same seed:\n{a}\n{b}"
    evals = [v for _, v in scalars(ea[0], "eval/transformer_return")]
    assert [s for s, _ in scalars(ea[0], "eval/transformer_return")] == [100, 200, 300, 400, 460]
    assert len(set(evals)) > 1  # the compared values are not a constant that any run would produce
