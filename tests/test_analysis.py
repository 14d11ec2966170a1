"""analysis/summarize_runs.py groups runs by env and method and reports each seed's last evaluation;
analysis/transfer_metrics.py's figures; both draw with tools/plot_runs.py (issue 23's figure standard)."""

import os
import subprocess
import sys

import pytest
from torch.utils.tensorboard import SummaryWriter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, name, values, tag="eval/return"):
    writer = SummaryWriter(os.path.join(root, name))
    for step, value in values:
        writer.add_scalar(tag, value, step)
    writer.close()


def test_summary_table_and_plot(tmp_path):
    write_run(tmp_path, "Hopper-v4__mlp__1__100", [(1000, 10.0), (2000, 30.0)])
    write_run(tmp_path, "Hopper-v4__mlp__2__101", [(1000, 50.0), (2000, 10.0)])
    write_run(tmp_path, "Hopper-v4__accel__1__102", [(1000, 5.0), (2000, 7.0)], tag="eval/transformer_return")
    png = tmp_path / "curves.png"
    out = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "analysis", "summarize_runs.py"), str(tmp_path), "--markdown",
         "--plot", str(png)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {line.split("|")[2].strip(): line for line in out.splitlines() if line.startswith("| Hopper-v4")}
    assert set(rows) == {"mlp", "accel"}
    mlp = [c.strip() for c in rows["mlp"].split("|")]
    # seeds, last step, final mean, final std, best mean, finals
    assert mlp[4:10] == ["2", "2000", "20.0", "10.0", "40.0", "30 10"]
    assert "eval/transformer_return" in rows["accel"] and "| 7.0 |" in rows["accel"]
    assert_issue23_figure(png, panels=1)


def assert_issue23_figure(png, panels):
    """tools/plot_runs.py's figure: a 300-dpi PNG of 3.5 inches a panel (two panels a row) and a PDF beside it."""
    from PIL import Image

    with Image.open(png) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert 0.85 * 3.5 * 300 * min(panels, 2) <= image.size[0] <= 1.15 * 3.5 * 300 * min(panels, 2), image.size
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_transfer_metrics_plot_names_methods_by_folder_and_labels_them(tmp_path):
    # two folders of the same method (e.g. round 1's "before" and "after"), two envs: one panel per env
    for root, shift in (("before", 0.0), ("after", 100.0)):
        for seed in (1, 2):
            name = f"{{}}__td3_accel_mujoco__{seed}__10{seed}"
            for env in ("Hopper-v4", "Pendulum-v1"):
                run = os.path.join(tmp_path, root, name.format(env))
                accel = [(s, shift + s / 10 + seed) for s in (1000, 2000, 3000, 4000)]
                write_run(run, "", accel, tag="eval/accelerator_return")
                write_run(run, "", [(s, v - 5) for s, v in accel] + [(5000, shift + 500.0)], "eval/transformer_return")
    png = tmp_path / "fig" / "transfer.png"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "analysis", "transfer_metrics.py"), str(tmp_path / "before"),
         str(tmp_path / "after"), "--plot", str(png), "--label", "before=the old defaults"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the tables first, then plot_runs's line: methods named root/exp_name, as in the tables
    assert "| Hopper-v4 | after/td3_accel_mujoco | 1 |" in result.stdout
    assert "(2 panels, 8 curves)" in result.stderr.splitlines()[-1]
    assert_issue23_figure(png, panels=2)
    # a bad label is plot_runs's one-line error and exit 2, after the tables
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "analysis", "transfer_metrics.py"), str(tmp_path / "after"),
         "--plot", str(png), "--label", "after"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "plot_runs: error: --label after: give NAME=WORDS"


def test_transfer_figures_from_evaluations():
    sys.path.insert(0, os.path.join(REPO_ROOT, "analysis"))
    from transfer_metrics import transfer_figures

    accel = {1000: -1200.0, 2000: -300.0, 3000: -200.0, 4000: -100.0}
    transformer = {1000: -1250.0, 2000: -900.0, 3000: -400.0, 4000: -200.0, 5000: -700.0, 6000: -500.0,
                   7000: -300.0, 8000: -100.0}  # fmt: skip
    f = transfer_figures(accel, transformer, random=-1200.0)
    # last 3 stage-1 evaluations: accelerator -200, transformer -500; accelerator - random = 1000
    assert f["accelerator"] == -200.0 and f["transformer_stage1"] == -500.0
    assert f["tracking_gap"] == 0.3
    assert f["stage2_first"] == -500.0 and f["handover_drop"] == 0.0  # stage 2 = steps after the last accel eval
    assert f["stage2_last"] == -100.0 and f["last_minus_t1"] == 400.0
