"""tools/plot_runs.py on synthetic TensorBoard runs written with torch's SummaryWriter, and tools/grid.py with a fake
training script (the real scripts' flags, run directories, final.pt/resume.pt and exit codes, in a few lines) plus
one short real run of td3_accel_mujoco.py."""

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest
from accel_helpers import REPO_ROOT, TINY_ACCEL, subprocess_env

from tools import plot_runs

# ---------------------------------------------------------------------------------------------------------- plot_runs
STEPS = [100, 200, 300, 400, 500]
OFFSET = {"EnvA-v0": 0.0, "EnvB-v0": 1000.0}


def transformer_value(env: str, seed: int, step: int) -> float:
    """Rising with the step, with a peak at step 200 that is each seed's best (and not its final) value."""
    return OFFSET[env] + 10 * seed + step / 100 + (7 * seed if step == 200 else 0)


def mlp_value(env: str, seed: int, step: int) -> float:
    return OFFSET[env] + 5 * seed + step / 50


def write_events(path: str, scalars: dict, hparams: dict | None = None, purge_step: int | None = None) -> None:
    """One event file in `path`, written by TensorBoard's writer (in a folder of its own, then moved, so that the
    files of a resumed run sort in the order they were written whatever the writer's counter)."""
    from torch.utils.tensorboard import SummaryWriter

    tmp = path + ".writing"
    writer = SummaryWriter(tmp, purge_step=purge_step)
    if hparams is not None:
        rows = "\n".join(f"|{k}|{v}|" for k, v in hparams.items())
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + rows)  # as the scripts log it
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()
    os.makedirs(path, exist_ok=True)
    (name,) = os.listdir(tmp)
    order = len([f for f in os.listdir(path) if f.startswith("events.out")])
    shutil.move(os.path.join(tmp, name), os.path.join(path, f"events.out.tfevents.{1000 + order}.host.1.{order}"))
    os.rmdir(tmp)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Two envs x two methods x seeds 1-3 under root/study, and a ManiSkill-like run under root/other:
    - accel on EnvA, seed 3 is shorter (stops at step 300);
    - accel on EnvB, seed 1 was resumed: its first process logged junk after step 300, purged by the second's
      purge_step 301;
    - mlp on EnvB, seed 2 has not evaluated yet (no eval/return);
    - mlp on EnvA, seed 1 has an older, abandoned run directory with other values (the newest counts)."""
    root = tmp_path_factory.mktemp("runs")
    study = os.path.join(root, "study")
    for env in OFFSET:
        for seed in (1, 2, 3):
            steps = STEPS[:3] if (env, seed) == ("EnvA-v0", 3) else STEPS
            name = os.path.join(study, f"{env}__accel__{seed}__{1700000000 + seed}")
            curve = {"eval/transformer_return": [(s, transformer_value(env, seed, s)) for s in steps],
                     "eval/accelerator_return": [(s, -transformer_value(env, seed, s)) for s in steps[:2]]}  # fmt: skip
            hp = {"exp_name": "accel", "seed": seed, "buffer_size": 64}
            if (env, seed) == ("EnvB-v0", 1):
                junk = {tag: [(s, v + 500) if s > 300 else (s, v) for s, v in points] for tag, points in curve.items()}
                write_events(name, junk, hp)
                write_events(name, {"eval/transformer_return": curve["eval/transformer_return"][3:]}, purge_step=301)
            else:
                write_events(name, curve, hp)
            name = os.path.join(study, f"{env}__mlp__{seed}__{1700000000 + seed}")
            if (env, seed) == ("EnvB-v0", 2):
                write_events(name, {"charts/episodic_return": [(50, 1.0)]}, {"exp_name": "mlp", "buffer_size": 99})
            else:
                write_events(name, {"eval/return": [(s, mlp_value(env, seed, s)) for s in STEPS]}, {"buffer_size": 99})
    write_events(os.path.join(study, "EnvA-v0__mlp__1__1600000000"), {"eval/return": [(s, 9999.0) for s in STEPS]})
    other = os.path.join(root, "other", "PushCube-v1__accel__1__1700000000")
    write_events(other, {"eval/transformer_success_once": [(100, 0.25), (200, 0.5)],
                         "eval/transformer_return": [(100, 3.0), (200, 4.0)]})  # fmt: skip
    os.makedirs(os.path.join(root, "empty"))
    return str(root)


def table_rows(text: str) -> dict:
    """The first table: {(env, method, curve): (seeds, step, final mean, final std, best mean, best std, all mean,
    all std, *the other columns)}; "n/a" (the sample std of one seed) reads as nan."""
    rows = {}
    for line in text.strip().split("\n\n")[0].splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        numbers = [float("nan") if x == "n/a" else float(x) for x in cells[5:11]]
        rows[tuple(cells[:3])] = (int(cells[3]), int(cells[4]), *numbers, *cells[11:])
    return rows


def sample_std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def expected(series: list[list[float]]) -> tuple:
    """Seeds x steps values -> (seeds, final mean, final std, best mean, best std, all mean, all std), std over seeds
    the sample std (ddof=1)."""
    finals, bests, alls = [s[-1] for s in series], [max(s) for s in series], [statistics.mean(s) for s in series]
    return len(series), *(f(v) for v in (finals, bests, alls) for f in (statistics.mean, sample_std))


def run_plot(capsys, *argv) -> tuple[int, str, str]:
    """plot_runs in this process; 200 bootstrap resamples unless --reps is given (the intervals' own tests give it)."""
    argv = [str(a) for a in argv]
    rc = plot_runs.main(argv if "--reps" in argv else [*argv, "--reps", "200"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_equals_hand_computed_stats_and_png_is_written(runs_root, capsys, tmp_path):
    png = tmp_path / "figures" / "curves.png"  # a folder that does not exist yet
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 6, "--out", png)
    assert rc == 0, err
    rows = table_rows(out)
    want = {
        # EnvA accel: seed 3 stops at 300, so the curve ends there for all three (common steps)
        ("EnvA-v0", "accel", "transformer_return"): (300, [[transformer_value("EnvA-v0", s, t) for t in STEPS[:3]]
                                                           for s in (1, 2, 3)]),
        ("EnvA-v0", "accel", "accelerator_return"): (200, [[-transformer_value("EnvA-v0", s, t) for t in STEPS[:2]]
                                                           for s in (1, 2, 3)]),
        # EnvB accel: seed 1's values after step 300 are its second process's, not the purged junk
        ("EnvB-v0", "accel", "transformer_return"): (500, [[transformer_value("EnvB-v0", s, t) for t in STEPS]
                                                           for s in (1, 2, 3)]),
        # EnvA mlp: seed 1 from its newest run directory, not the abandoned one with 9999
        ("EnvA-v0", "mlp", "return"): (500, [[mlp_value("EnvA-v0", s, t) for t in STEPS] for s in (1, 2, 3)]),
        # EnvB mlp: seed 2 has no eval/return, the curve is seeds 1 and 3
        ("EnvB-v0", "mlp", "return"): (500, [[mlp_value("EnvB-v0", s, t) for t in STEPS] for s in (1, 3)]),
        # ManiSkill-like env: success rate, not return, where the runs log it
        ("PushCube-v1", "accel", "transformer_success_once"): (200, [[0.25, 0.5]]),
    }  # fmt: skip
    for key, (step, series) in want.items():
        seeds, *stats = expected(series)
        got = rows.pop(key)
        assert got[:2] == (seeds, step), key
        assert got[2:] == pytest.approx(stats, abs=1e-5, nan_ok=True), key
    assert rows.keys() == {("EnvB-v0", "accel", "accelerator_return")}  # the one left, nothing else
    assert ("PushCube-v1", "accel", "transformer_return") not in rows
    # the peak at step 200 is each transformer seed's best, not its final value
    assert table_rows(out)[("EnvB-v0", "accel", "transformer_return")][4] > 1000 + 20 + 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures" / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    notes = err.strip().splitlines()
    assert all(line.startswith("plot_runs: ") for line in notes)
    assert any("EnvB-v0__mlp__2__" in line and "no eval/return" in line for line in notes)
    assert any("seeds end at steps 300 to 500" in line for line in notes)
    assert any("replaces the older" in line and "1600000000" in line for line in notes)
    assert "wrote" in notes[-1]


def test_method_from_root_and_hyperparameter_filters_and_tags(runs_root, capsys):
    rc, out, _ = run_plot(capsys, runs_root, "--table", "--method-from", "root,exp_name,buffer_size",
                          "--envs", "EnvA*", "--tags", "eval/return")  # fmt: skip
    assert rc == 0
    rows = table_rows(out)
    # the abandoned run logged no hyperparameters: a method of its own
    assert set(rows) == {
        ("EnvA-v0", "study/mlp/buffer_size=99", "return"),
        ("EnvA-v0", "study/mlp/buffer_size=?", "return"),
    }
    assert rows[("EnvA-v0", "study/mlp/buffer_size=99", "return")][0] == 3
    rc, out, _ = run_plot(capsys, runs_root, "--table", "--methods", "acc*", "--metric", "return")
    assert rc == 0
    assert {key[:2] for key in table_rows(out)} == {("EnvA-v0", "accel"), ("EnvB-v0", "accel"),
                                                     ("PushCube-v1", "accel")}  # fmt: skip
    assert ("PushCube-v1", "accel", "transformer_return") in table_rows(out)


def test_interpolation_aligns_seeds_evaluated_at_different_steps(tmp_path, capsys):
    write_events(str(tmp_path / "EnvC-v0__x__1__1"), {"eval/return": [(0, 0.0), (100, 10.0), (200, 20.0)]})
    write_events(str(tmp_path / "EnvC-v0__x__2__1"), {"eval/return": [(50, 5.0), (150, 35.0), (250, 45.0)]})
    rc, _, err = run_plot(capsys, tmp_path, "--table")
    assert rc == 2 and "share no step; try --align interp" in err
    rc, out, _ = run_plot(capsys, tmp_path, "--table", "--align", "interp", "--digits", 6)
    assert rc == 0
    # union of the steps within [50, 200]: 50, 100, 150, 200; seed 2 at 100 and 200 is interpolated
    seed1, seed2 = [5.0, 10.0, 15.0, 20.0], [5.0, 20.0, 35.0, 40.0]
    seeds, *stats = expected([seed1, seed2])
    got = table_rows(out)[("EnvC-v0", "x", "return")]
    assert got[:2] == (seeds, 200)
    assert got[2:] == pytest.approx(stats)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing"], "missing: no such folder"),
        (["empty"], "no run directories"),
        (["study", "--tags", "eval/nope"], "unknown tag eval/nope: the runs log eval/accelerator_return"),
        (["study", "--method-from", "exp_name,nope"], "--method-from nope: not a logged hyperparameter"),
        (["study", "--envs", "Nope*"], "--envs Nope* matches none"),
        (["study", "--methods", "nope"], "--methods nope matches no method"),
        (["study", "--align", "sideways"], "invalid choice"),
        (["study", "--last", "0"], "--last 0: give 1 or more evaluations"),
        (["study", "--seeds", "7"], "--seeds 7 matches none of the runs' seeds"),
        (["study", "--min-step", "300", "--max-step", "200"], "--min-step 300 is above --max-step 200"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs_root, capsys, tmp_path, argv, message):
    argv = [os.path.join(runs_root, argv[0]), *argv[1:]]
    rc, out, err = run_plot(capsys, *argv, "--out", tmp_path / "x.png")
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("plot_runs: error: ") and message in err
    assert not (tmp_path / "x.png").exists()


def test_last_k_averages_each_seeds_last_evaluations(runs_root, capsys):
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 6, "--last", 2, "--methods", "mlp")
    assert rc == 0 and "| last 2 evals mean | last 2 evals sample std |" in out
    per_seed = [statistics.mean(mlp_value("EnvA-v0", s, t) for t in STEPS[-2:]) for s in (1, 2, 3)]
    got = table_rows(out)[("EnvA-v0", "mlp", "return")]
    assert got[2:4] == pytest.approx((statistics.mean(per_seed), statistics.stdev(per_seed)), abs=1e-5)
    # the convention of the tables before issue 23, on request
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 6, "--last", 2, "--methods", "mlp", "--std",
                            "population")  # fmt: skip
    assert rc == 0 and "| last 2 evals mean | last 2 evals population std |" in out
    got = table_rows(out)[("EnvA-v0", "mlp", "return")]
    assert got[2:4] == pytest.approx((statistics.mean(per_seed), statistics.pstdev(per_seed)), abs=1e-5)
    assert got[4] == pytest.approx(statistics.mean(mlp_value("EnvA-v0", s, 500) for s in (1, 2, 3)), abs=1e-5)


def test_per_seed_column_and_seeds_filter(runs_root, capsys):
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 3, "--last", 2, "--per-seed", "--envs", "EnvB*",
                            "--methods", "mlp")  # fmt: skip
    assert rc == 0, err
    assert out.splitlines()[0].endswith("| all evals sample std | last 2 evals per seed | all evals per seed |")
    # EnvB mlp: seed 2 has no eval/return, so seeds 1 and 3, in seed order
    want = ", ".join(f"{s}: {statistics.mean(mlp_value('EnvB-v0', s, t) for t in STEPS[-2:]):.3f}" for s in (1, 3))
    whole = ", ".join(f"{s}: {statistics.mean(mlp_value('EnvB-v0', s, t) for t in STEPS):.3f}" for s in (1, 3))
    assert table_rows(out)[("EnvB-v0", "mlp", "return")][-2:] == (want, whole)
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 3, "--last", 2, "--per-seed", "--envs", "EnvB*",
                            "--methods", "mlp", "--seeds", 3, 2)  # fmt: skip
    assert rc == 0 and table_rows(out)[("EnvB-v0", "mlp", "return")][0] == 1  # seed 2 has no eval/return
    assert table_rows(out)[("EnvB-v0", "mlp", "return")][-2:] == (want.split(", ")[1], whole.split(", ")[1])


def test_max_step_cuts_every_run(runs_root, capsys):
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 6, "--max-step", 250, "--envs", "EnvA*")
    assert rc == 0, err
    rows = table_rows(out)
    assert rows[("EnvA-v0", "mlp", "return")][:3] == (3, 200, pytest.approx(statistics.mean(
        mlp_value("EnvA-v0", s, 200) for s in (1, 2, 3))))  # fmt: skip
    assert rows[("EnvA-v0", "accel", "transformer_return")][:2] == (3, 200)
    assert "seeds end at" not in err  # seed 3's shorter run no longer cuts the others


def test_min_step_drops_earlier_evaluations_from_every_column(runs_root, capsys):
    rc, out, err = run_plot(capsys, runs_root, "--table", "--digits", 6, "--min-step", 300, "--methods", "mlp",
                            "--envs", "EnvA*")  # fmt: skip
    assert rc == 0, err
    seeds, *stats = expected([[mlp_value("EnvA-v0", s, t) for t in STEPS[2:]] for s in (1, 2, 3)])
    got = table_rows(out)[("EnvA-v0", "mlp", "return")]
    assert got[:2] == (seeds, 500)
    assert got[2:] == pytest.approx(stats, abs=1e-5)  # "all evals" is over steps 300-500 only


def test_complete_only_keeps_finished_runs(tmp_path, capsys):
    """Seed 1 finished (final.pt), seed 2 is mid-run (resume.pt), seed 3 is a finished stage-1-only run
    (finetune_steps 0, accelerated.pt, no resume.pt), seed 4 has accelerated.pt but also resume.pt (interrupted)."""
    files = {1: ["final.pt"], 2: ["resume.pt"], 3: ["accelerated.pt"], 4: ["accelerated.pt", "resume.pt"]}
    for seed, names in files.items():
        path = tmp_path / f"EnvA-v0__accel__{seed}__{1700000000 + seed}"
        finetune = 0 if seed in (3, 4) else 100
        write_events(str(path), {"eval/transformer_return": [(s, 10.0 * seed + s) for s in (100, 200)]},
                     {"exp_name": "accel", "finetune_steps": finetune})  # fmt: skip
        for name in names:
            (path / name).write_bytes(b"")
    rc, out, err = run_plot(capsys, tmp_path, "--table")
    assert rc == 0 and table_rows(out)[("EnvA-v0", "accel", "transformer_return")][0] == 4
    rc, out, err = run_plot(capsys, tmp_path, "--table", "--complete-only")
    assert rc == 0
    seeds, step, final_mean, final_std, *_ = table_rows(out)[("EnvA-v0", "accel", "transformer_return")]
    assert (seeds, step, final_mean) == (2, 200, 220.0)  # seeds 1 and 3: 210 and 230
    assert final_std == pytest.approx(statistics.stdev([210.0, 230.0]), abs=0.01)
    left_out = [line for line in err.splitlines() if "left out (--complete-only)" in line]
    assert sorted(line.split("__")[2] for line in left_out) == ["2", "4"]
    for seed, name in ((1, "final.pt"), (3, "accelerated.pt")):
        (tmp_path / f"EnvA-v0__accel__{seed}__{1700000000 + seed}" / name).unlink()
    rc, out, err = run_plot(capsys, tmp_path, "--table", "--complete-only")
    assert (
        rc == 2
        and err.strip().splitlines()[-1]
        == "plot_runs: error: --complete-only: none of the 4 runs is finished (no final.pt)"
    )


@pytest.mark.slow
def test_study_report_tables_and_figures_from_finished_runs_only(tmp_path):
    """analysis/study_report.sh on synthetic Hopper-v4 runs: the finished runs' curves are exported, each question's
    table holds its finished methods, the stage-1 questions stop at step 50000, and an unfinished run (no final.pt) is
    left out."""
    steps = range(10000, 100001, 10000)
    for method, seeds, finished in (("accel", (1, 2), True), ("mlp", (1,), True), ("accel_ascent", (1,), False)):
        for seed in seeds:
            path = tmp_path / "study" / f"Hopper-v4__{method}__{seed}__{1700000000 + seed}"
            curves = {"eval/return": [(t, t / 100 + seed) for t in steps]} if method == "mlp" else {
                "eval/transformer_return": [(t, t / 100 + seed) for t in steps],
                "eval/accelerator_return": [(t, t / 200) for t in steps if t <= 50000]}  # fmt: skip
            write_events(str(path), curves, {"exp_name": method, "finetune_steps": 50000})
            if finished:
                (path / "final.pt").write_bytes(b"")
    env = {**subprocess_env(), "ROOT": str(tmp_path / "study"), "OUT": str(tmp_path / "figures"), "REPS": "200",
           "CURVES": str(tmp_path / "curves")}  # fmt: skip
    result = subprocess.run(["bash", "analysis/study_report.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    exported = sorted(p.name.split("__")[1:3] for p in (tmp_path / "curves").iterdir())
    assert exported == [["accel", "1"], ["accel", "2"], ["mlp", "1"]]  # accel_ascent is unfinished
    sections = {}
    for block in result.stdout.split("## ")[1:]:
        title, _, body = block.partition("\n")
        first = body.split("\n\n| env | method | curve | value |")[0]  # the first table, not the intervals'
        rows = "\n".join(line for line in first.splitlines() if line.startswith("|"))
        sections.setdefault(title.split(":")[0], []).append(
            table_rows(rows) if "| env | method | curve |" in rows else rows
        )
    rq1 = sections["RQ1"][0]
    assert rq1[("Hopper-v4", "accel", "transformer_return")][:3] == (2, 50000, pytest.approx(400 + 1.5))
    transfer = [line.split(" | ")[1:3] for line in sections["RQ1"][1].splitlines()[2:] if line.count("|") == 12]
    assert transfer == [["curves/accel", "1"], ["curves/accel", "2"]]  # the per-run gap table: finished accel runs
    assert set(sections["RQ2"][0]) == {
        ("Hopper-v4", "accel", "transformer_return"),
        ("Hopper-v4", "accel", "accelerator_return"),
        ("Hopper-v4", "mlp", "return"),
    }
    assert sections["RQ2"][0][("Hopper-v4", "mlp", "return")][:3] == (1, 100000, pytest.approx(900 + 1))  # last 3
    assert not any(key[1] == "accel_ascent" for key in sections["RQ3"][0])  # unfinished
    for name in ("rq1", "rq2", "rq3", "rq4", "bc"):
        assert (tmp_path / "figures" / f"study_{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "figures" / f"study_{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert "| Hopper-v4 | mlp | return | all evals | 1 |" in result.stdout  # the intervals' table
    assert "| P(> accel) [95% CI] |" in result.stdout


def test_plot_runs_command_line_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "tools/plot_runs.py", str(tmp_path / "missing")], cwd=REPO_ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"plot_runs: error: {tmp_path / 'missing'}: no such folder"


def interval_rows(text: str) -> dict:
    """The second table (rliable's intervals): {(env, method, curve, value): [IQM, IQM low, IQM high, mean, low, high,
    (P, P low, P high or the cell's words)]}."""
    rows = {}
    for line in text.split("\n\n| env | method | curve | value |")[1].strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        numbers = []
        for cell in cells[5:]:
            parts = cell.replace("[", "").replace("]", "").replace(",", "").split()
            numbers += [float(x) for x in parts] if parts[0][0].isdigit() or parts[0][0] == "-" else [cell]
        rows[tuple(cells[:4])] = numbers
    return rows


def hand_bootstrap(values: list[list[float]], stat, reps: int, seed: int) -> tuple[float, float, float]:
    """stat's point value and 95% percentile interval, by hand: NumPy's global generator seeded with `seed`, each
    resample drawing each array's seeds with replacement in turn (rliable 1.2.0's draws), np.percentile's 2.5 and
    97.5."""
    np.random.seed(seed)
    arrays = [np.array(v) for v in values]
    draws = []
    for _ in range(reps):
        draws.append(stat(*[x[np.random.choice(len(x), len(x))] for x in arrays]))
    return stat(*arrays), *np.percentile(draws, [2.5, 97.5])


def iqm_by_hand(x) -> float:
    """Interquartile mean: drop the lowest and highest quarter (rounded down, as scipy's trim_mean), mean the rest."""
    x, cut = sorted(x), int(0.25 * len(x))
    return float(np.mean(x[cut : len(x) - cut]))


def improvement_by_hand(x, y) -> float:
    """P(X > Y): the share of (x, y) pairs with x > y, ties counted half."""
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y]))


FINALS = {"ref": [10.0, 14.0, 11.0, 30.0, 12.0], "other": [13.0, 9.0, 15.0, 16.0]}


@pytest.fixture(scope="module")
def interval_root(tmp_path_factory):
    """Two methods on one env: each seed's curve is (its final value - 5, its final value)."""
    root = tmp_path_factory.mktemp("intervals")
    for method, finals in FINALS.items():
        for seed, final in enumerate(finals, 1):
            write_events(str(root / f"EnvI-v0__{method}__{seed}__{1700000000 + seed}"),
                         {"eval/return": [(100, final - 5), (200, final)]}, {"exp_name": method})  # fmt: skip
    return root


def test_intervals_equal_a_hand_computed_bootstrap(interval_root, capsys):
    rc, out, err = run_plot(capsys, interval_root, "--table", "--reference", "ref", "--reps", 300, "--bootstrap-seed",
                            7, "--digits", 6)  # fmt: skip
    assert rc == 0, err
    assert "(rliable 1.2.0, percentile, 300 resamples, bootstrap seed 7)" in out
    rows = interval_rows(out)
    for method, finals in FINALS.items():
        for value, per_seed in (("final (in-run, last evaluation)", finals),
                                ("all evals", [f - 2.5 for f in finals])):  # fmt: skip
            got = rows[("EnvI-v0", method, "return", value)]
            assert got[:3] == pytest.approx(hand_bootstrap([per_seed], iqm_by_hand, 300, 7), abs=1e-6)
            assert got[3:6] == pytest.approx(hand_bootstrap([per_seed], np.mean, 300, 7), abs=1e-6)
            if method == "ref":
                assert got[6] == "reference"
            else:
                want = hand_bootstrap([per_seed, [f - 2.5 * (value == "all evals") for f in FINALS["ref"]]],
                                      improvement_by_hand, 300, 7)  # fmt: skip
                assert got[6:] == pytest.approx([round(w, 2) for w in want], abs=1e-9)
    # 5 seeds: the IQM drops the lowest (10) and the highest (30, an outlier): mean(11, 12, 14); the mean keeps both
    assert rows[("EnvI-v0", "ref", "return", "final (in-run, last evaluation)")][0] == pytest.approx(37 / 3)
    assert rows[("EnvI-v0", "ref", "return", "final (in-run, last evaluation)")][3] == pytest.approx(15.4)


def test_interval_of_three_seeds_is_their_range(tmp_path, capsys):
    """Exact, whatever the draws: of the 27 equally likely resamples of 3 seeds, the lowest mean (all three the
    lowest seed) has probability 1/27 > 2.5%, so the 95% interval of the mean runs from the lowest to the highest."""
    for seed, final in enumerate([0.0, 3.0, 6.0], 1):
        write_events(str(tmp_path / f"EnvI-v0__m__{seed}__1"), {"eval/return": [(100, final)]})
    for bootstrap_seed in (1, 2):
        rc, out, err = run_plot(capsys, tmp_path, "--table", "--reps", 5000, "--bootstrap-seed", bootstrap_seed)
        assert rc == 0, err
        assert interval_rows(out)[("EnvI-v0", "m", "return", "final (in-run, last evaluation)")][3:6] == [3, 0, 6]


def test_reference_and_rliable_errors_are_one_line(interval_root, capsys, monkeypatch):
    rc, out, err = run_plot(capsys, interval_root, "--table", "--reference", "nope")
    assert rc == 2 and err.strip() == "plot_runs: error: --reference nope: not one of the methods (other, ref)"
    monkeypatch.setitem(sys.modules, "rliable", None)  # as if not installed
    rc, out, err = run_plot(capsys, interval_root, "--table")
    assert rc == 2 and out == ""
    assert (
        err.strip() == "plot_runs: error: the intervals need rliable: pip install rliable==1.2.0 (see requirements.txt)"
    )


def test_final_eval_takes_final_values_from_final_pt_episodes(interval_root, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(interval_root, root)
    for seed in (1, 2, 3, 4):
        with open(root / f"EnvI-v0__other__{seed}__{1700000000 + seed}" / plot_runs.FINAL_EVAL, "w") as f:
            f.write(
                "policy,episode,seed,return,length\n" + "".join(f"actor,{k},{k},{seed * 100 + k},9\n" for k in range(3))
            )
    rc, out, err = run_plot(capsys, root, "--table", "--methods", "other", "--digits", 3)
    assert rc == 0 and table_rows(out)[("EnvI-v0", "other", "return")][2] == pytest.approx(13.25)  # in-run
    rc, out, err = run_plot(capsys, root, "--table", "--methods", "other", "--digits", 3, "--final-eval", "--per-seed")
    assert rc == 0, err
    got = table_rows(out)[("EnvI-v0", "other", "return")]
    assert got[2] == pytest.approx(251.0) and got[8] == "1: 101.000, 2: 201.000, 3: 301.000, 4: 401.000"
    assert got[10] == "final.pt, 3 episodes"  # after the all-evals column, which stays in-run
    assert out.splitlines()[0].endswith("| final per seed | all evals per seed | final from |")
    assert ("EnvI-v0", "other", "return", "final (final.pt, 3 episodes)") in interval_rows(out)
    rc, out, err = run_plot(capsys, root, "--table", "--final-eval")  # ref's runs have no eval_final.csv
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "has no eval_final.csv of its return" in err


def test_labels_panels_and_handover(tmp_path):
    labels = {**plot_runs.LABELS, "x": "my method"}
    assert plot_runs.label("transformer_buf15k", labels) == "transformer from scratch, 15k buffer"
    assert plot_runs.label("accel_buf10k", labels) == "accelerated transformer, 10k buffer"
    assert plot_runs.label("mlp", labels) == "MLP TD3" and plot_runs.label("x", labels) == "my method"
    assert plot_runs.label("study/accel", labels) == "study, accelerated transformer"
    run = lambda name, **hp: plot_runs.Run(
        str(tmp_path / name), "E-v0", "m", 1, "1", {}, {k: str(v) for k, v in hp.items()}
    )  # noqa: E731
    stage1 = run("E-v0__accel__1__5", accel_steps=50000, finetune_steps=50000, accelerated_checkpoint=None)
    tuned = run("E-v0__accel_buf10k__1__6", accel_steps=500000, finetune_steps=50000,
                accelerated_checkpoint="runs/study/E-v0__accel__1__5/accelerated.pt")  # fmt: skip
    maniskill = run("P-v1__accel__1__7", accel_steps=1000, num_envs=3, finetune_steps=10)
    only1 = run("E-v0__accel__2__8", accel_steps=300, finetune_steps=0)
    loaded = {os.path.basename(r.path): r for r in (stage1, tuned)}
    assert plot_runs.handover_steps([tuned], loaded) == {50000}  # the step of the checkpoint it fine-tuned from
    assert plot_runs.handover_steps([tuned], {}) == set()  # that run not loaded: no mark rather than a wrong one
    assert plot_runs.handover_steps([stage1, maniskill, only1], loaded) == {50000, 1002}
    assert run("E-v0__v__1__9", pomdp="velocity").task == "E-v0 (velocity-only observations)"
    # one panel per comparison, its title naming the task and both methods in words
    curve = lambda env, method: types.SimpleNamespace(env=env, method=method)  # noqa: E731
    curves = [curve("E-v0", m) for m in ("accel", "mlp", "transformer_buf15k")] + [curve("F-v0", "mlp")]
    a = argparse.Namespace(panel=[], reference="transformer_buf15k")
    panels = plot_runs.panels(curves, a, {**plot_runs.LABELS, "mlp": "the MLP"})
    got = [(title, [c.method for c in group]) for title, group in panels]
    against = "against transformer from scratch, 15k buffer"
    assert got == [
        ("E-v0: accelerated transformer\n" + against, ["accel", "transformer_buf15k"]),
        ("E-v0: the MLP\n" + against, ["mlp", "transformer_buf15k"]),
        ("F-v0", ["mlp"]),  # no reference run in this task: one panel of what there is
    ]


def test_a_long_legend_grows_the_figure_instead_of_being_clipped(runs_root, capsys, tmp_path):
    from PIL import Image

    widths = {}
    for name, words in (("short", "the MLP"), ("long", "the MLP, " + "with a very long description " * 8)):
        rc, _, err = run_plot(capsys, runs_root, "--envs", "EnvA*", "--reference", "accel", "--label",
                              f"mlp={words}", "--out", tmp_path / f"{name}.png")  # fmt: skip
        assert rc == 0, err
        with Image.open(tmp_path / f"{name}.png") as image:
            widths[name] = image.size[0]
    assert widths["long"] > 1.5 * widths["short"], widths  # the whole legend line is in the picture


def test_figure_is_a_300_dpi_png_and_a_pdf_one_panel_per_comparison(runs_root, capsys, tmp_path):
    from PIL import Image

    rc, out, err = run_plot(capsys, runs_root, "--envs", "EnvA*", "--reference", "accel", "--label", "mlp=the MLP",
                            "--out", tmp_path / "fig.png")  # fmt: skip
    assert rc == 0, err
    assert err.strip().splitlines()[-1] == (f"plot_runs: wrote {tmp_path / 'fig.png'} and {tmp_path / 'fig.pdf'} "
                                            "(1 panels, 3 curves)")  # fmt: skip
    with Image.open(tmp_path / "fig.png") as image:
        # 3.5 inches a panel (one column of a two-column paper), give or take the tight bounding box
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert 0.85 * 3.5 * 300 <= image.size[0] <= 1.15 * 3.5 * 300, image.size
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    rc, out, err = run_plot(capsys, runs_root, "--envs", "Env*", "--panel", "acc*", "--panel", "mlp", "--out",
                            tmp_path / "fig2.pdf")  # fmt: skip
    assert rc == 0 and "(4 panels, 6 curves)" in err  # two panels per env
    with Image.open(tmp_path / "fig2.png") as image:
        assert 0.85 * 2 * 3.5 * 300 <= image.size[0] <= 1.15 * 2 * 3.5 * 300, image.size


# ---------------------------------------------------------------------------------------------------------- grid
FAKE_SCRIPT = '''
"""A stand-in for a training script: the flags the grid sets, run directories, final.pt/accelerated.pt/resume.pt and
exit codes 0 (done), 1 (crashed), 3 (interrupted, resume.pt written). Its env id says how it behaves: Crash-v0
fails, Stop-v0 is interrupted on its first start and finishes when resumed; --sleep waits, SIGTERM interrupts."""
import argparse, json, os, signal, sys, time

RESUME_SAFE = ("total_steps", "num_threads", "resume")
p = argparse.ArgumentParser()
for flag in ("--env-id", "--exp-name", "--run-dir", "--resume", "--other"):
    p.add_argument(flag)
for flag in ("--seed", "--num-threads", "--total-steps", "--finetune-steps"):
    p.add_argument(flag, type=int, default=1)
p.add_argument("--sleep", type=float, default=0.0)
a = p.parse_args()
if a.resume:
    path = a.resume
else:
    path = os.path.join(a.run_dir, f"{a.env_id}__{a.exp_name}__{a.seed}__{int(time.time())}")
    while os.path.exists(path):
        path += "_"
root = os.path.dirname(path)
call = {"argv": sys.argv[1:], "omp": os.environ.get("OMP_NUM_THREADS"), "dir": path, "start": time.time()}


def finish(rc, files):
    for name in files:
        open(os.path.join(path, name), "w").close()
    if rc == 0 and os.path.exists(os.path.join(path, "resume.pt")):
        os.remove(os.path.join(path, "resume.pt"))
    call.update(end=time.time(), rc=rc)
    with open(os.path.join(root, "calls.jsonl"), "a") as f:
        f.write(json.dumps(call) + "\\n")
    sys.exit(rc)


signal.signal(signal.SIGTERM, lambda *_: finish(3, ["resume.pt"]))
os.makedirs(path, exist_ok=True)  # after the handler: a test that sees the directory may send SIGTERM
print("fake run", path, flush=True)
time.sleep(a.sleep)
if a.env_id == "Crash-v0":
    print("boom: the fake run crashed", flush=True)
    finish(1, [])
if a.env_id == "Stop-v0" and not a.resume:
    finish(3, ["resume.pt"])
finish(0, ["accelerated.pt"] if a.finetune_steps == 0 else ["final.pt"])
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_train.py"
    path.write_text(textwrap.dedent(FAKE_SCRIPT))
    return str(path)


def grid(*argv, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/grid.py", *map(str, argv)], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def calls(root) -> list[dict]:
    path = os.path.join(root, "calls.jsonl")
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def make_run_dir(root, name: str, *files: str) -> str:
    path = os.path.join(root, name)
    os.makedirs(path)
    for f in files:
        open(os.path.join(path, f), "w").close()
    return path


def test_dry_run_shows_what_each_run_would_do_and_runs_nothing(tmp_path, fake):
    root = tmp_path / "grid"
    make_run_dir(root, "A-v0__two__1__100", "final.pt")  # complete
    make_run_dir(root, "A-v0__two__2__100", "accelerated.pt")  # stage 2 never ran: not complete, no resume.pt
    old = make_run_dir(root, "A-v0__one__2__100", "resume.pt")
    new = make_run_dir(root, "A-v0__one__2__200", "resume.pt")  # the newest resumable one
    make_run_dir(root, "A-v0__zero__1__100", "accelerated.pt")  # --finetune-steps 0: accelerated.pt is the end
    make_run_dir(root, "A-v0__zero__2__100", "accelerated.pt", "resume.pt")  # killed between the two writes
    argv = ["--root", root, "--envs", "A-v0", "--seeds", 1, 2, "--method", f"one:{fake}:--other x",
            "--method", f"two:{fake}", "--method", f"zero:{fake}:--finetune-steps 0", "--dry-run"]  # fmt: skip
    result = grid(*argv, "--", "--total-steps", 7, "--other", "y")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    statuses = ["fresh", "complete", "complete", "resume", "fresh", "resume"]
    assert [line.split()[:2] for line in lines[:-1]] == [[str(i), s] for i, s in enumerate(statuses)]
    assert lines[-1] == "6 runs: 2 complete, 2 to resume, 2 to start"
    assert f"--env-id A-v0 --seed 1 --exp-name one --run-dir {root} --num-threads 1 --other x --total-steps 7 " \
           f"--other y >> {root}/logs/A-v0__one__1.log 2>&1" in lines[0]  # fmt: skip
    assert lines[0].startswith("0 fresh OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ")
    # a resumed run gets only the flags the script lets it change (RESUME_SAFE), not --other
    assert lines[3].split(" >> ")[0].endswith(f"{fake} --resume {new} --num-threads 1 --total-steps 7")
    assert old not in result.stdout
    assert calls(root) == []
    one = grid(*argv, "--index", 3, "--", "--total-steps", 7, "--other", "y")
    assert one.stdout.splitlines() == [lines[3], "1 runs: 0 complete, 1 to resume, 0 to start"]


def test_skips_complete_runs_resumes_interrupted_ones_and_reports_failures(tmp_path, fake):
    root = tmp_path / "grid"
    done = make_run_dir(root, "Ok-v0__m__1__100", "final.pt")
    argv = ["--root", root, "--seeds", 1, 2, "--method", f"m:{fake}", "--jobs", 2]
    first = grid(*argv, "--envs", "Ok-v0", "Stop-v0", "Crash-v0")
    assert first.returncode == 1
    out = first.stdout
    assert "grid: 2/6 done (1 skipped), 0 running, 2 failed, 2 interrupted, 0 left, elapsed" in out
    assert "failed: run 2, Crash-v0 m seed 1 (exit 1), log " in out and "failed: run 5, Crash-v0 m seed 2" in out
    assert "FAILED (exit 1) after " in out and "boom: the fake run crashed" in out  # the log's last line
    assert "interrupted: run 1, Stop-v0 m seed 1" in out
    log = (root / "logs" / "Crash-v0__m__1.log").read_text()
    assert "grid run 2 (fresh)" in log and "boom" in log
    made = calls(root)
    assert len(made) == 5 and done not in {c["dir"] for c in made}  # Ok-v0 seed 1 was complete
    for c in made:
        assert c["omp"] == "1"
        assert c["argv"][:10] == ["--env-id", c["argv"][1], "--seed", c["argv"][3], "--exp-name", "m",
                                  "--run-dir", str(root), "--num-threads", "1"]  # fmt: skip
    stopped = sorted(c["dir"] for c in made if c["rc"] == 3)

    second = grid(*argv, "--envs", "Ok-v0", "Stop-v0")
    assert second.returncode == 0, second.stdout
    resumed = calls(root)[len(made) :]
    assert sorted(c["argv"][:2] for c in resumed) == [["--resume", d] for d in stopped]
    assert all(c["argv"][2:] == ["--num-threads", "1"] and c["rc"] == 0 for c in resumed)
    assert "resuming " + stopped[0] in second.stdout
    assert second.stdout.strip().splitlines()[-1].startswith("grid: 4/4 done (2 skipped), 0 running, 0 failed, 0 left")

    third = grid(*argv, "--envs", "Ok-v0", "Stop-v0")
    assert third.returncode == 0 and len(calls(root)) == len(made) + 2  # nothing left to run
    assert "4/4 done (4 skipped)" in third.stdout


def test_runs_in_parallel_with_jobs_2(tmp_path, fake):
    root = tmp_path / "grid"
    result = grid("--root", root, "--envs", "A-v0", "B-v0", "--seeds", 1, 2, "--method", f"m:{fake}:--sleep 1",
                  "--jobs", 2)  # fmt: skip
    assert result.returncode == 0, result.stdout
    spans = [(c["start"], c["end"]) for c in calls(root)]
    assert len(spans) == 4
    most = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most == 2  # two at a time, never more
    assert "2 running" in result.stdout and "3 running" not in result.stdout


def test_sigterm_asks_every_run_to_write_resume_pt(tmp_path, fake):
    root = tmp_path / "grid"
    argv = ["--root", str(root), "--envs", "A-v0", "--seeds", "1", "2", "3", "--method", f"m:{fake}:--sleep 60"]
    proc = subprocess.Popen([sys.executable, "tools/grid.py", *argv, "--jobs", "2"], cwd=REPO_ROOT, text=True,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 30
    while len([d for d in os.listdir(root) if d.startswith("A-v0")] if root.exists() else []) < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, out
    assert "grid: SIGTERM: no more runs start; 2 running asked to write resume.pt" in out
    assert sorted(c["rc"] for c in calls(root)) == [3, 3]
    assert ", 1 not started" in out and "rerun the same command" in out
    assert all(os.path.exists(os.path.join(c["dir"], "resume.pt")) for c in calls(root))


def test_index_runs_only_that_run(tmp_path, fake):
    root = tmp_path / "grid"
    argv = ["--root", root, "--envs", "A-v0", "B-v0", "--seeds", 1, "--method", f"m:{fake}"]
    result = grid(*argv, "--index", 1)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"grid: run 1, B-v0 m seed 1: fresh, log {root}/logs/B-v0__m__1.log")
    (call,) = calls(root)
    assert call["argv"][:2] == ["--env-id", "B-v0"] and call["omp"] == "1"
    assert "fake run" in (root / "logs" / "B-v0__m__1.log").read_text()
    assert grid(*argv, "--index", 1).stdout.startswith("grid: run 1, B-v0 m seed 1: complete, ")
    assert len(calls(root)) == 1


def test_placeholders_and_a_glob_resolved_per_run(tmp_path, fake):
    root = tmp_path / "grid"
    make_run_dir(root, "A-v0__base__1__100", "final.pt")
    make_run_dir(root, "A-v0__base__1__200", "final.pt")
    newest = make_run_dir(root, "A-v0__base__1__150", "final.pt")  # the newest file, not the newest name
    os.utime(os.path.join(newest, "final.pt"), (time.time() + 10, time.time() + 10))
    make_run_dir(root, "A-v0__base__2__100", "final.pt")
    flags = "--other {root}/{env_id}__base__{seed}__*/final.pt --total-steps {seed}0"
    argv = ["--root", root, "--envs", "A-v0", "--seeds", 1, 2, "--method", f"m:{fake}:{flags}"]
    dry = grid(*argv, "--dry-run", "--", "--exp-tag={env_id}:{seed}:{other}")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert f"--other {newest}/final.pt --total-steps 10 '--exp-tag=A-v0:1:{{other}}' >> " in lines[0]
    assert f"--other {root}/A-v0__base__2__100/final.pt --total-steps 20 " in lines[1]
    assert lines[2] == "2 runs: 0 complete, 0 to resume, 2 to start"
    result = grid(*argv)
    assert result.returncode == 0, result.stdout
    made = sorted(calls(root), key=lambda c: c["argv"][3])
    second = f"{root}/A-v0__base__2__100/final.pt"
    assert [c["argv"][10:] for c in made] == [["--other", f"{newest}/final.pt", "--total-steps", "10"],
                                              ["--other", second, "--total-steps", "20"]]  # fmt: skip


def test_a_run_whose_glob_matches_nothing_waits(tmp_path, fake):
    root = tmp_path / "grid"
    make_run_dir(root, "A-v0__base__1__100", "final.pt")
    make_run_dir(root, "A-v0__base__2__101", "accelerated.pt")  # no final.pt: not what the glob asks for
    old = make_run_dir(root, "A-v0__m__3__100", "resume.pt")  # resumed: keeps its own --other, needs no glob
    pattern = "{root}/{env_id}__base__{seed}__*/final.pt"
    argv = ["--root", root, "--envs", "A-v0", "--seeds", 1, 2, 3, "--method", f"m:{fake}:--other {pattern}"]
    dry = grid(*argv, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("0 fresh ") and f"--other {root}/A-v0__base__1__100/final.pt " in lines[0]
    assert lines[1] == f"1 waiting A-v0 m seed 2: needs {root}/A-v0__base__2__*/final.pt"
    assert lines[2].startswith("2 resume ") and lines[2].split(" >> ")[0].endswith(f"--resume {old} --num-threads 1")
    assert lines[3] == "3 runs: 0 complete, 1 to resume, 1 to start, 1 waiting"
    assert calls(root) == []

    result = grid(*argv, "--jobs", 2)
    assert result.returncode == 3, result.stdout
    out = result.stdout.splitlines()
    assert "grid: 0/3 done (0 skipped), 0 running, 0 failed, 1 waiting, 2 left, elapsed 0:00:00" in out
    assert out[-3].startswith("grid: 2/3 done (0 skipped), 0 running, 0 failed, 1 waiting, 0 left, elapsed ")
    assert "not started" not in out[-3]
    assert out[-2:] == [f"waiting: run 1, A-v0 m seed 2, needs {root}/A-v0__base__2__*/final.pt",
                        "rerun the same command to resume or start what is left"]  # fmt: skip
    assert sorted(c["argv"][:2] for c in calls(root)) == [["--env-id", "A-v0"], ["--resume", old]]
    assert not os.path.exists(root / "logs" / "A-v0__m__2.log")

    one = grid(*argv, "--index", 1)
    assert one.returncode == 3 and one.stdout == ""
    assert one.stderr.splitlines() == [f"grid: run 1, A-v0 m seed 2: waiting, needs {root}/A-v0__base__2__*/final.pt"]
    assert len(calls(root)) == 2


def test_a_waiting_run_starts_once_the_run_it_needs_is_done(tmp_path, fake):
    """RQ4's shape: accel_buf fine-tunes from accel's stage-1 checkpoint of the same env and seed, in one grid call."""
    root = tmp_path / "grid"
    need = "{root}/{env_id}__accel__{seed}__*/accelerated.pt"
    argv = ["--root", root, "--envs", "A-v0", "--seeds", 1, 2, "--jobs", 2, "--method", f"accel:{fake}:--sleep 1",
            "--method", f"accel_buf:{fake}:--other '{need}'"]  # fmt: skip
    result = grid(*argv, "--", "--finetune-steps", 0)
    assert result.returncode == 0, result.stdout
    assert "0 failed, 2 waiting, 2 left" in result.stdout
    made = calls(root)
    assert [c["argv"][5] for c in made[:2]] == ["accel", "accel"]  # both accel runs first, the two others wait
    for seed in "12":
        (accel,) = [c for c in made if c["argv"][3] == seed and c["argv"][5] == "accel"]
        (buf,) = [c for c in made if c["argv"][3] == seed and c["argv"][5] == "accel_buf"]
        assert buf["argv"][buf["argv"].index("--other") + 1] == os.path.join(accel["dir"], "accelerated.pt")
        assert buf["start"] >= accel["end"]
    assert result.stdout.strip().splitlines()[-1].startswith("grid: 4/4 done (0 skipped), 0 running, 0 failed, 0 left")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "m:nope.py"], "no such script nope.py"),
        (["--method", "m"], "expected NAME:SCRIPT[:FLAGS]"),
        (["--method", "a__b:{fake}"], "without '__'"),
        (["--method", "m:{fake}", "--method", "m:{fake}"], "two methods share a name"),
        (["--method", "m:{fake}:--seed 3"], "--seed is set by the grid"),
        (["--method", "m:{fake}", "--", "--run-dir", "x"], "--run-dir is set by the grid"),
        (["--method", "m:{fake}", "--", "--jobs", "2"], "--jobs after -- would go to the scripts"),
        (["--method", "m:{fake}:oops --x 1"], "'oops' comes before any --flag"),
        (["--method", "m:{fake}", "--index", "5"], "--index 5: the grid has runs 0 to 1"),
        (["--method", "m:{fake}", "--jobs", "0"], "--jobs and --threads must be at least 1"),
    ],
)
def test_grid_bad_input_is_one_line_and_exit_2(tmp_path, fake, argv, message):
    argv = [a.replace("{fake}", fake) for a in argv]
    at = argv.index("--") if "--" in argv else len(argv)
    result = grid("--root", tmp_path / "g", "--envs", "A-v0", "--seeds", 1, 2, *argv[:at], "--dry-run", *argv[at:])
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("grid: error: ")
    assert message in result.stderr
    assert not (tmp_path / "g").exists()


def test_real_run_then_skip_then_plot(tmp_path, capsys):
    """td3_accel_mujoco.py through the grid (a few seconds), rerun (skipped), then plotted."""
    root = tmp_path / "grid"
    at = TINY_ACCEL.index("--num-threads")  # the grid sets it
    flags = TINY_ACCEL[:at] + TINY_ACCEL[at + 2 :]
    tiny = " ".join([*flags, "--accel-steps", "250", "--finetune-steps", "50", "--learning-starts", "200"])
    argv = ["--root", root, "--envs", "Pendulum-v1", "--seeds", 1, "--method", f"accel:td3_accel_mujoco.py:{tiny}",
            "--", "--eval-frequency", 250, "--bc-frequency", 50]  # fmt: skip
    first = grid(*argv, timeout=120)
    assert first.returncode == 0, first.stdout + (root / "logs" / "Pendulum-v1__accel__1.log").read_text()
    (run_dir,) = [d for d in os.listdir(root) if d.startswith("Pendulum-v1__accel__1__")]
    assert os.path.exists(root / run_dir / "final.pt")
    second = grid(*argv[:-5], "--evaluate", 3, *argv[-5:], timeout=120)
    assert second.returncode == 0 and "1/1 done (1 skipped)" in second.stdout, second.stdout
    assert "Pendulum-v1 accel seed 1: evaluating final.pt, 3 episodes" in second.stdout
    assert "Pendulum-v1 accel seed 1: return: mean " in second.stdout and "1 evaluated, 0 failed" in second.stdout
    with open(root / run_dir / "eval_final.csv") as f:
        episodes = list(csv.DictReader(f))
    assert [int(e["episode"]) for e in episodes] == [0, 1, 2] and {e["policy"] for e in episodes} == {"transformer"}
    rc, out, _ = run_plot(capsys, root, "--table")
    assert rc == 0
    rows = table_rows(out)
    assert rows[("Pendulum-v1", "accel", "transformer_return")][:2] == (1, 300)
    assert rows[("Pendulum-v1", "accel", "accelerator_return")][:2] == (1, 250)
    rc, out, _ = run_plot(capsys, root, "--table", "--final-eval")
    rows = table_rows(out)
    final = statistics.mean(float(e["return"]) for e in episodes)
    assert rows[("Pendulum-v1", "accel", "transformer_return")][2] == pytest.approx(final, abs=0.01)
    assert rows[("Pendulum-v1", "accel", "transformer_return")][-1] == "final.pt, 3 episodes"
    assert rows[("Pendulum-v1", "accel", "accelerator_return")][-1] == "in-run, last evaluation"
    # up to date: nothing to evaluate; another episode count: evaluated again
    assert "evaluate" not in grid(*argv[:-5], "--evaluate", 3, "--dry-run", *argv[-5:]).stdout.split("runs:")[0]
    dry = grid(*argv[:-5], "--evaluate", 4, "--dry-run", *argv[-5:]).stdout
    assert f"0 evaluate {sys.executable} " in dry and f"--episodes 4 --csv {root / run_dir / 'eval_final.csv'}" in dry


def test_evaluate_reports_a_failed_evaluation(tmp_path, fake):
    root = tmp_path / "grid"
    make_run_dir(root, "A-v0__m__1__100", "final.pt")  # the fake's final.pt: empty, not a checkpoint
    result = grid("--root", root, "--envs", "A-v0", "--seeds", 1, "--method", f"m:{fake}", "--evaluate", 2)
    assert result.returncode == 1, result.stdout
    assert "run 0, A-v0 m seed 1: evaluation FAILED (exit 2): evaluate: error: " in result.stdout
    assert "final.pt: not a whole checkpoint" in result.stdout and "0 evaluated, 1 failed" in result.stdout
    assert (root / "logs" / "A-v0__m__1.eval.log").exists() and not (
        root / "A-v0__m__1__100" / "eval_final.csv"
    ).exists()
