"""--help of every script reads cleanly at 100 columns (issue 27): no line is wider, no help text is broken
mid-sentence (tyro keeps a docstring's line breaks, so long help texts are one string), and the accel scripts'
description lists the paper's flags on their own lines."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["td3_accel_mujoco.py", "td3_accel_lstm_pomdp.py", "td3_accel_maniskill.py"] + [
    f"baselines/td3_{net}_{family}.py" for net in ("mlp", "lstm", "transformer") for family in ("mujoco", "maniskill")
]


def help_text(script, columns):
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def docstring_helps(script):
    """Args' help texts written as strings under their field, whitespace collapsed as the reader should see them."""
    tree = ast.parse((ROOT / script).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    helps = {}
    for prev, node in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            helps[prev.target.id] = " ".join(node.value.value.split())
    return helps


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_fits_100_columns_and_breaks_no_sentence(script):
    narrow = help_text(script, 100)
    too_wide = [line for line in narrow.splitlines() if len(line) > 100]
    assert not too_wide, f"{script}: {len(too_wide)} lines wider than 100 columns, e.g. {too_wide[0]!r}"

    # At 1000 columns nothing wraps, so each help text must come out on one line: a line break in it is tyro
    # keeping one from the source, mid-sentence
    wide = help_text(script, 1000).splitlines()
    helps = docstring_helps(script)
    assert len(helps) >= 3, f"{script}: expected the multi-line help texts of Args"
    for name, text in helps.items():
        assert any(text in line for line in wide), f"{script}: --{name.replace('_', '-')}'s help is broken across lines"


@pytest.mark.parametrize("script", SCRIPTS[:3])
def test_accel_description_lists_the_papers_flags_on_their_own_lines(script):
    lines = help_text(script, 100).splitlines()
    flags = [line.strip() for line in lines if line.startswith("  --bc-") or line.startswith("  --bc-state")]
    assert flags[0].startswith("--bc-frequency 1000 ") and flags[-1].endswith("--critic-warmup 0"), lines[:12]


@pytest.mark.parametrize("tool", ["tools/evaluate.py", "tools/grid.py", "tools/plot_runs.py"])
def test_tools_help_wraps_its_prose_to_the_terminal(tool):
    lines = help_text(tool, 100).splitlines()
    # only example commands, kept as written so they can be copied, may be wider
    too_wide = [line for line in lines if len(line) > 100 and not line.startswith("    ")]
    assert not too_wide, f"{tool}: {too_wide[0]!r}"
    wide = help_text(tool, 200).splitlines()
    assert max(map(len, wide)) > 120, f"{tool}: the description does not follow the terminal's width"
