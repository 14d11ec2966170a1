"""--num-threads' default in all nine scripts: OMP_NUM_THREADS when set, else 1 (runs side by side on a 2-core machine
crawled with the old default of 2; BENCHMARKS.md, "Runs side by side"), and a resumed run takes its threads from its
own command line or environment, not from the interrupted run's saved flags."""

import dataclasses
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accel_helpers import REPO_ROOT, load_script, run_cli  # noqa: E402

SCRIPTS = ["td3_accel_mujoco.py", "td3_accel_lstm_pomdp.py", "td3_accel_maniskill.py"] + [
    f"baselines/td3_{arch}_{family}.py" for arch in ("mlp", "lstm", "transformer") for family in ("mujoco", "maniskill")
]


def module(script: str):
    return load_script(os.path.join(REPO_ROOT, script), "_threads_" + script.replace("/", "_")[:-3])


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("omp", "expected"), [(None, 1), ("3", 3), ("1", 1), ("0", 1), ("", 1), ("4,2", 1)])
def test_default_threads_follow_omp_num_threads(script, omp, expected, monkeypatch):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert module(script).Args().num_threads == expected


@pytest.mark.parametrize("script", SCRIPTS)
def test_resumed_run_takes_threads_from_its_own_command_line(script, tmp_path, monkeypatch):
    """The interrupted run asked for 2 threads; the resumed one gets the default of its environment (or its flag),
    while every other saved flag (the seed here) is kept."""
    m = module(script)
    saved = dataclasses.asdict(m.Args(num_threads=2, seed=7))
    torch.save({"script": os.path.basename(script), "args": saved}, tmp_path / m.RESUME_FILE)
    seen = []
    monkeypatch.setattr(m, "main", lambda args, *a, **k: seen.append(args))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_cli(m, ["--resume", tmp_path]).returncode == 0
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert run_cli(m, ["--resume", tmp_path, "--num-threads", "3"]).returncode == 0
    assert [(a.num_threads, a.seed, a.resume) for a in seen] == [(1, 7, str(tmp_path)), (3, 7, str(tmp_path))]
