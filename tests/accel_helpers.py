"""Helpers for tests/test_accel_*.py (subprocess runs of td3_accel_mujoco.py, TensorBoard event files). A plain
module rather than conftest.py so that it cannot clash with other test files' fixtures."""

import contextlib
import glob
import os
import subprocess
import sys
import tempfile

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


def run_cli(module, args: list, cwd=None) -> subprocess.CompletedProcess:
    """`python script.py args` without a new interpreter: sys.argv set, `module.cli()` called, its return code (or
    SystemExit's, for tyro's own errors) returned with stdout and stderr as a subprocess's would be. Saves the ~3 s
    start-up of a subprocess. Output is caught on file descriptors 1 and 2, so MuJoCo's C-level warnings count too;
    `cwd` matters for files MuJoCo writes (MUJOCO_LOG.TXT). Torch's thread count and determinism flag, which main()
    sets, are restored afterwards."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    argv, here = sys.argv, os.getcwd()
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
    try:
        sys.argv = [os.path.basename(module.__file__), *map(str, args)]
        os.chdir(REPO_ROOT if cwd is None else str(cwd))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = module.cli()
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        out.flush(), err.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])
        sys.argv = argv
        os.chdir(here)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read())
        f.close()
    return subprocess.CompletedProcess(sys.argv, rc, *texts)


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


def load_run_events(run_path: str):
    """EventAccumulator over a whole run directory, as TensorBoard reads it: a resumed run has one event file per
    process, and the purge marker each resumed writer left (purge_step) drops what the interrupted one logged after
    its saved step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(run_path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def checked(proc, rc=0):
    """A finished run_cli / subprocess run: the expected exit code (output shown if not) and no traceback."""
    assert proc.returncode == rc, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def load_pt(path) -> dict:
    """A checkpoint or resume.pt, whole (args, generator states and all)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(a, b, where=""):
    """Exact equality of nested state dicts (tensors bit for bit)."""
    import torch

    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a} != {b}"


def assert_each_step_once(ea) -> None:
    """Every scalar tag of a (possibly resumed) run logs each step once, in order."""
    for tag in ea.Tags()["scalars"]:
        steps = [s for s, _ in scalars(ea, tag)]
        assert steps == sorted(set(steps)), f"{tag} logged a step twice (or out of order): {steps}"


def scalars(ea, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def text_summary(ea, tag: str = "hyperparameters") -> str:
    events = ea.Tensors(f"{tag}/text_summary")
    assert events, f"no text summary {tag}"
    return b"".join(events[0].tensor_proto.string_val).decode()
