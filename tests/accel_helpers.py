"""Helpers for tests/test_accel_*.py (subprocess runs of td3_accel_mujoco.py, TensorBoard event files). A plain
module rather than conftest.py so that it cannot clash with other test files' fixtures."""

import glob
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Flags that keep an end-to-end run of td3_accel_mujoco.py small (a few seconds on one core).
TINY_ACCEL = [
    "--batch-size", "32", "--buffer-size", "64", "--accel-buffer-size", "1000", "--dim-model", "32",
    "--dim-feedforward", "64", "--num-heads", "2", "--eval-episodes", "1", "--num-threads", "1",
    "--critic-warmup", "20",
]  # fmt: skip


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    # gymnasium's "v4 is out of date" DeprecationWarning would add lines to stderr that are not the script's
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def run_script(script: str, args: list[str], timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run a repo script; `cwd` (default: the repo root) matters for files MuJoCo writes, e.g. MUJOCO_LOG.TXT."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)],
        cwd=REPO_ROOT if cwd is None else str(cwd),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_script(script: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, *map(str, args)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_dirs(run_dir) -> list[str]:
    """The run directories (one per run) created under `run_dir`."""
    return sorted(d for d in glob.glob(os.path.join(str(run_dir), "*")) if os.path.isdir(d))


def single_run_dir(run_dir) -> str:
    dirs = run_dirs(run_dir)
    assert len(dirs) == 1, f"expected exactly one run directory under {run_dir}, found {dirs}"
    return dirs[0]


def load_events(run_path: str):
    """EventAccumulator over the single TensorBoard event file of a run (all scalars and text kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(os.path.join(run_path, "events.out.tfevents.*"))
    assert len(files) == 1, f"expected one event file in {run_path}, found {files}"
    ea = EventAccumulator(files[0], size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def scalars(ea, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def text_summary(ea, tag: str = "hyperparameters") -> str:
    events = ea.Tensors(f"{tag}/text_summary")
    assert events, f"no text summary {tag}"
    return b"".join(events[0].tensor_proto.string_val).decode()
