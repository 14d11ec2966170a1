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
