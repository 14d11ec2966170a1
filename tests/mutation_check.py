"""Mutation check of the loop tests: each entry makes one mistake in a scratch copy of td3_accel_mujoco.py and runs
tests/test_accel_loop.py there; every line must report failures.

    python tests/mutation_check.py
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
        "stage, rb = 2, ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)",
        "stage = 2",
    ),
    "critic targets not carried": (
        "            stage_losses = {}\n",
        "            stage_losses = {}\n            qf1_target.load_state_dict(qf1.state_dict())\n",
    ),
    "transformer target not carried": (
        "            stage_losses = {}\n",
        "            stage_losses = {}\n            transformer_target.load_state_dict(transformer.state_dict())\n",
    ),
    "window not reset at episode end": (
        "            window.reset(obs)\n            episode_step, episode_return = 0, 0.0\n        else:",
        "            window.push(obs)\n            episode_step, episode_return = 0, 0.0\n        else:",
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
        'fill = trajectory if args.bc_source == "eval" and global_step > args.learning_starts else None',
        'fill = trajectory if args.bc_source == "eval" else None',
    ),
    "state noise not applied to T": (
        "trajectory.add(noisy, window.valid, mlp_act(actor, noisy[-1], device))",
        "trajectory.add(window.obs, window.valid, mlp_act(actor, noisy[-1], device))",
    ),
}
for name, (old, new) in M.items():
    d = os.path.join("/tmp", "td3_accel_mutation")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ROOT, d, ignore=shutil.ignore_patterns("runs", ".git"))
    src = open(f"{d}/td3_accel_mujoco.py").read()
    assert src.count(old) == 1, name
    open(f"{d}/td3_accel_mujoco.py", "w").write(src.replace(old, new))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_accel_loop.py"],
        cwd=d,
        capture_output=True,
        text=True,
    )
    last = r.stdout.strip().splitlines()[-1]
    lines = r.stdout.splitlines()
    fails = sorted({x.split("::")[1].split(" ")[0] for x in lines if x.startswith(("FAILED", "ERROR"))})
    print(f"{name}: rc={r.returncode} {last} {fails}", flush=True)
