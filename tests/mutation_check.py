"""Mutation check of the loop tests: each entry makes one mistake in a scratch copy of td3_accel_mujoco.py and runs
tests/test_accel_loop.py (and the unit tests of store_in_T and draw_dagger) there; every line must report failures.

    python tests/mutation_check.py [NAME ...]   # all mutations, or those whose names contain a NAME
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = {
    "T filled during warm-up": (
        'if stage == 1 and args.bc_source == "train" and global_step >= args.learning_starts:',
        'if stage == 1 and args.bc_source == "train":',
    ),
    "stage-2 buffer not replaced": (
        "stage, rb = 2, ReplayBuffer(args.buffer_size, obs_dim, act_dim, device, run.on_device)",
        "stage = 2",
    ),
    "critic targets not carried": (
        "                stage_losses = {}\n",
        "                stage_losses = {}\n                qf1_target.load_state_dict(qf1.state_dict())\n",
    ),
    "transformer target not carried": (
        "                stage_losses = {}\n",
        "                stage_losses = {}\n"
        "                transformer_target.load_state_dict(transformer.state_dict())\n",
    ),
    "window not reset at episode end": (
        "                window.reset(obs)\n                episode_step, episode_return = 0, 0.0\n",
        "                window.push(obs)\n                episode_step, episode_return = 0, 0.0\n",
    ),
    "no exploration noise in stage 2": (
        "    return np.clip(action + np.random.normal(",
        "    return action if stage == 2 else np.clip(action + np.random.normal(",
    ),
    "truncation stored as termination": (
        "rb.add(obs, next_obs, action, reward, terminated, episode_step)",
        "rb.add(obs, next_obs, action, reward, terminated or truncated, episode_step)",
    ),
    "episode step off by one": (
        "rb.add(obs, next_obs, action, reward, terminated, episode_step)",
        "rb.add(obs, next_obs, action, reward, terminated, episode_step + 1)",
    ),
    "transformer never trained in stage 1": (
        "if global_step % args.bc_frequency == 0 and len(trajectory):",
        "if False:",
    ),
    "bc-source eval fills T before learning": (
        'fill = trajectory if stage == 1 and args.bc_source == "eval" and global_step > args.learning_starts else None',
        'fill = trajectory if stage == 1 and args.bc_source == "eval" else None',
    ),
    "state noise not applied to T": (
        "        obs = (obs + noise).astype(np.float32)\n",
        "",
    ),
    # issue 22's stage-1 flags
    "behavior label is the actor's on the noisy state": (
        "    trajectory.add(obs, window.valid, action)",
        "    trajectory.add(obs, window.valid, mlp_act(actor, obs[-1], device))",
    ),
    "DAgger label on the noisy state": (
        "        action = mlp_act(actor, window.obs[-1], device)",
        "        action = mlp_act(actor, obs[-1], device)",
    ),
    "actor forward pass under --bc-target actor": (
        'if dagger and args.bc_target == "behavior":',
        "if dagger:",
    ),
    "DAgger episodes with --bc-source eval": (
        'args.bc_dagger > 0 and args.bc_source == "train" and',
        "args.bc_dagger > 0 and",
    ),
    "DAgger's non-finite action blamed on the accelerator": (
        '"accelerator" if stage == 1 and not dagger else "transformer"',
        '"accelerator" if stage == 1 else "transformer"',
    ),
}
TESTS = ["tests/test_accel_loop.py", "tests/test_accel_units.py::test_dagger_only_with_bc_source_train"] + [
    f"tests/test_accel_units.py::{t}"
    for t in (
        "test_store_in_T_behavior_keeps_the_executed_action_with_or_without_state_noise",
        "test_store_in_T_behavior_in_a_dagger_episode_labels_with_the_accelerator_on_the_true_state",
        "test_store_in_T_actor_target_runs_no_forward_pass",
    )
]
ONLY = sys.argv[1:]  # names (substrings) of the mutations to run; default all
for name, (old, new) in M.items():
    if ONLY and not any(o in name for o in ONLY):
        continue
    d = os.path.join("/tmp", "td3_accel_mutation")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ROOT, d, ignore=shutil.ignore_patterns("runs", ".git"))
    src = open(f"{d}/td3_accel_mujoco.py").read()
    assert src.count(old) == 1, name
    open(f"{d}/td3_accel_mujoco.py", "w").write(src.replace(old, new))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=d,
        capture_output=True,
        text=True,
    )
    last = r.stdout.strip().splitlines()[-1]
    lines = r.stdout.splitlines()
    fails = sorted({x.split("::")[1].split(" ")[0] for x in lines if x.startswith(("FAILED", "ERROR"))})
    print(f"{name}: rc={r.returncode} {last} {fails}", flush=True)
