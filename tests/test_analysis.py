"""analysis/summarize_runs.py groups runs by env and method and reports each seed's last evaluation."""

import os
import subprocess
import sys

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
    assert png.stat().st_size > 1000


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
