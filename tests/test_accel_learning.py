"""Learning check: a short stage 1 on InvertedPendulum-v4 makes the transformer (trained only from the accelerator
by behavior cloning) balance the pole far longer than a random policy. Minutes on one core, hence `slow`."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from accel_helpers import load_events, run_script, scalars, single_run_dir  # noqa: E402

import td3_accel_mujoco as m  # noqa: E402

ENV_ID = "InvertedPendulum-v4"
ACCEL_STEPS = 6000


def random_policy_return(episodes: int = 10, seed: int = 0) -> float:
    env = m.make_env(ENV_ID, seed)
    returns = []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


@pytest.mark.slow
def test_stage_1_transformer_beats_random_policy(tmp_path):
    random_return = random_policy_return()
    assert 1.0 <= random_return <= 30.0  # the pendulum falls within a few steps without control
    # Seeds 1, 2, 3 ended at 42, 69, 39 (threshold about 30; the returns oscillate between evaluations while
    # TD3 learns, 25-110 after step 3000); seed 2 keeps the widest margin
    argv = ["--env-id", ENV_ID, "--accel-steps", ACCEL_STEPS, "--learning-starts", 1000, "--finetune-steps", 0,
            "--eval-frequency", 1000, "--eval-episodes", 10, "--dim-model", 32, "--dim-feedforward", 64,
            "--batch-size", 64, "--accel-buffer-size", 10_000, "--bc-frequency", 500, "--bc-target", "actor",
            "--num-threads", 1, "--seed", 2, "--run-dir", tmp_path]  # fmt: skip
    proc = run_script("td3_accel_mujoco.py", argv, timeout=540)
    assert proc.returncode == 0, proc.stderr
    path = single_run_dir(tmp_path)
    assert os.path.isfile(os.path.join(path, "accelerated.pt"))
    evals = scalars(load_events(path), "eval/transformer_return")
    assert evals[-1][0] == ACCEL_STEPS
    final = evals[-1][1]
    assert final >= max(5 * random_return, 30.0), f"transformer {final:.1f} vs random policy {random_return:.1f}"
