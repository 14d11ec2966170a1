"""analysis/rerun_figures.sh reruns the Hopper study one run at a time, so it names each method's flags itself
(study_spec) instead of calling analysis/study.sh, which runs a whole part per grid call. These tests hold the copy
to the original: every method of study.sh gets the same script and flags from study_spec, the common flags match,
and rq4_stage1 is accel's command stopped after stage 1."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def study_sh_methods(tmp_path) -> tuple[dict[str, str], str]:
    """{method: "SCRIPT:FLAGS"} of every part of study.sh, and its COMMON flags: study.sh run with its grid()
    replaced by one that prints its arguments (from a copy, whose cd lands in tmp_path)."""
    text = (ROOT / "analysis/study.sh").read_text()
    text, n = re.subn(r"^grid\(\) \{.*\}$", 'grid() { printf "%s\\n" "$@"; }', text, flags=re.M)
    assert n == 1, "study.sh's grid() is no longer one line: update this test"
    (tmp_path / "analysis").mkdir()
    copy = tmp_path / "analysis/study.sh"
    copy.write_text(text + '\necho "COMMON=$COMMON"\n')
    out = subprocess.run(["bash", copy], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    lines = out.stdout.splitlines()
    methods = {}
    for flag, spec in zip(lines, lines[1:], strict=False):
        if flag == "--method":
            name, spec = spec.split(":", 1)
            methods[name] = spec
    return methods, lines[-1].removeprefix("COMMON=")


def rerun_specs(names) -> tuple[dict[str, str], str, list[str]]:
    """study_spec of each name, STUDY_COMMON and the default STUDY_ORDER's methods, from rerun_figures.sh's own
    definitions (the block from STUDY_COMMON= to STUDY_ORDER=, evaluated alone: nothing else of the script runs)."""
    text = (ROOT / "analysis/rerun_figures.sh").read_text()
    block = re.search(r"^STUDY_COMMON=.*?done; done\)\"\}\n", text, flags=re.M | re.S)
    assert block, "rerun_figures.sh's study block moved: update this test"
    script = block.group(0) + "".join(f'echo "{n}=$(study_spec {n})"\n' for n in names)
    script += 'echo "COMMON=$STUDY_COMMON"\necho "ORDER=$(echo $STUDY_ORDER)"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    values = dict(line.split("=", 1) for line in out.stdout.splitlines())
    order = values.pop("ORDER").split()
    return values, values.pop("COMMON"), sorted(set(order[::2]))


def test_study_spec_repeats_study_sh(tmp_path):
    study, common = study_sh_methods(tmp_path)
    # bc_* are stage-1 only runs of another part, rerun before (RESULTS.md); the rerun's study covers the rest
    rerun_methods = sorted(m for m in study if not m.startswith("bc_"))
    specs, rerun_common, order = rerun_specs([*rerun_methods, "rq4_stage1"])
    assert order == rerun_methods
    assert rerun_common == common
    for m in rerun_methods:
        # accel_buf*'s checkpoint flag is added per run by study_run (accel's run, or rq4_stage1's where it is missing)
        expected = re.sub(r" --accelerated-checkpoint '[^']*'", "", study[m])
        assert specs[m] == expected, m


def test_rq4_stage1_is_accels_command_stopped_after_stage_one(tmp_path):
    specs, _, _ = rerun_specs(["accel", "rq4_stage1"])
    assert specs["rq4_stage1"] == specs["accel"].replace("--finetune-steps 50000", "--finetune-steps 0")


def shell_function(name: str) -> str:
    """One function of rerun_figures.sh, as its text (from `name() {` to the `}` that opens a line)."""
    text = (ROOT / "analysis/rerun_figures.sh").read_text()
    found = re.search(rf"^{name}\(\) \{{.*?^\}}\n", text, flags=re.M | re.S)
    assert found, f"rerun_figures.sh's {name}() moved: update this test"
    return found.group(0)


def test_set_aside_moves_unfinished_runs_so_they_start_over(tmp_path):
    """The study's runs start over rather than resume (a resumed run does not repeat an uninterrupted one): with "all",
    an unfinished run of that method and seed goes to NAME.killed whether it has resume.pt or not; finished runs
    (final.pt, or a stage-1-only rq4_stage1 run's accelerated.pt) and other runs stay. Without it (older scripts),
    a run with resume.pt stays."""
    runs = {
        "study/Hopper-v4__lstm__1__10": ["resume.pt"],  # stopped: starts over
        "study/Hopper-v4__lstm__1__11": [],  # killed before its first resume.pt
        "study/Hopper-v4__lstm__1__12": ["final.pt"],
        "study/Hopper-v4__lstm__2__13": ["resume.pt"],  # another seed
        "study/Hopper-v4__mlp__1__14": [],  # another method
        "rq4_stage1/Hopper-v4__rq4_stage1__1__15": ["accelerated.pt"],  # finished (--finetune-steps 0)
        "rq4_stage1/Hopper-v4__rq4_stage1__2__16": ["accelerated.pt", "resume.pt"],
        "old/Hopper-v4__a__1__17": ["resume.pt"],
        "old/Hopper-v4__a__1__18": [],
    }
    for run, files in runs.items():
        (tmp_path / "runs" / run).mkdir(parents=True)
        for f in files:
            (tmp_path / "runs" / run / f).touch()
    script = shell_function("set_aside") + (
        'set_aside study "Hopper-v4__lstm__1__*" all\nset_aside rq4_stage1 "Hopper-v4__rq4_stage1__*" all\n'
        "set_aside old\n"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={
        "PATH": "/usr/bin:/bin", "STUDY": str(tmp_path)})  # fmt: skip
    moved = sorted(p.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").glob("*.killed/*"))
    assert moved == ["old.killed/Hopper-v4__a__1__18", "rq4_stage1.killed/Hopper-v4__rq4_stage1__2__16",
                     "study.killed/Hopper-v4__lstm__1__10", "study.killed/Hopper-v4__lstm__1__11"]  # fmt: skip
    assert out.stdout.count("moved aside (unfinished)") == 4


def test_study_grid_does_not_start_a_run_that_is_running(tmp_path):
    """A run whose script is running (another lane) is neither moved aside nor started again."""
    run = tmp_path / "runs/study/Hopper-v4__lstm__1__10"
    run.mkdir(parents=True)
    (run / "resume.pt").touch()
    script = shell_function("set_aside") + shell_function("study_grid") + 'study_spec() { echo "x.py:"; }\n'
    script += "study_grid lstm 1; echo rc=$?\n"
    fake = subprocess.Popen(["bash", "-c", 'exec -a "python x.py --seed 1 --exp-name lstm --run-dir d" sleep 60'])
    try:
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env={
            "PATH": "/usr/bin:/bin", "STUDY": str(tmp_path)})  # fmt: skip
    finally:
        fake.kill()
    assert out.stdout.splitlines() == ["running already, not started: lstm seed 1", "rc=0"]
    assert (run / "resume.pt").exists()
