"""analysis/seed_stats.py against hand-computed values (RESULTS.md's seed statistics). Fast: no training."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "analysis" / "seed_stats.py"
_spec = importlib.util.spec_from_file_location("seed_stats", _PATH)
seed_stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_stats)

A = np.array([1.0, 2.0, 3.0])  # mean 2, sample std 1, population std sqrt(2/3)
B = np.array([4.0, 6.0, 8.0])  # mean 6, sample std 2


def test_stds_by_hand():
    assert seed_stats.sample_std(A) == pytest.approx(1.0)
    assert seed_stats.sample_std(B) == pytest.approx(2.0)
    assert seed_stats.population_std(A) == pytest.approx(math.sqrt(2 / 3))
    # RESULTS.md's accel finals: 915 / 333 / 1701, mean 983; deviations -68, -650, 718
    x = np.array([915.0, 333.0, 1701.0])
    assert seed_stats.sample_std(x) == pytest.approx(math.sqrt((68**2 + 650**2 + 718**2) / 2))


def test_welch_by_hand():
    # se^2 = 1/3 + 4/3 = 5/3; t = (2 - 6) / sqrt(5/3); df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = 50/17
    w = seed_stats.welch(A, B)
    assert w["diff"] == pytest.approx(-4.0)
    assert w["t"] == pytest.approx(-4 / math.sqrt(5 / 3))
    assert w["df"] == pytest.approx(50 / 17)
    assert 0.0 < w["p"] < 1.0
    lo, hi = w["ci"]
    assert lo < -4.0 < hi and (lo + hi) / 2 == pytest.approx(-4.0)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.706, 100.0])
def test_t_p_value_closed_forms(t):
    # df = 1 (Cauchy): P(|T| >= t) = 1 - 2 atan(t) / pi; df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert seed_stats.t_two_sided_p(t, 1.0) == pytest.approx(1 - 2 * math.atan(t) / math.pi, abs=1e-12)
    assert seed_stats.t_two_sided_p(t, 2.0) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)


def test_t_table_values():
    # textbook two-sided 5% critical values: df 1 12.706, df 2 4.303, df 4 2.776, df 30 2.042
    for df, crit in ((1, 12.706), (2, 4.303), (4, 2.776), (30, 2.042)):
        assert seed_stats.t_two_sided_p(crit, df) == pytest.approx(0.05, abs=2e-4)
        assert seed_stats.t_quantile(0.975, df) == pytest.approx(crit, abs=1e-3)


def test_against_scipy_when_installed():
    special = pytest.importorskip("scipy.special")  # lighter than scipy.stats; stdtr is Student's t CDF
    for t, df in ((0.5, 1.3), (2.1, 2.7), (10.0, 3.3), (3.0, 100.0), (1.223, 2.2536)):
        assert seed_stats.t_two_sided_p(t, df) == pytest.approx(2 * special.stdtr(df, -t), rel=1e-9)
        q = 1 - special.stdtr(df, -t)
        assert seed_stats.t_quantile(q, df) == pytest.approx(t, rel=1e-6)


def test_bootstrap_reproducible_and_contains_difference():
    ci1 = seed_stats.bootstrap_diff_ci(A, B, resamples=10_000, seed=0)
    ci2 = seed_stats.bootstrap_diff_ci(A, B, resamples=10_000, seed=0)
    assert ci1 == ci2
    assert ci1[0] <= -4.0 <= ci1[1]
    # resampled means lie between each method's min and max: the difference within [1 - 8, 3 - 4]
    assert -7.0 <= ci1[0] and ci1[1] <= -1.0


def test_summary_matches_values():
    # population std (ddof=0) summaries give the same Welch test as the values themselves
    x, y = np.array([915.0, 333.0, 1701.0]), np.array([473.0, 315.0, 661.0])
    w = seed_stats.welch(x, y)
    k = math.sqrt(3 / 2)
    ws = seed_stats.welch_from_summary(x.mean(), x.std() * k, 3, y.mean(), y.std() * k, 3)
    assert ws["t"] == pytest.approx(w["t"]) and ws["p"] == pytest.approx(w["p"])


def test_cli(capsys):
    assert seed_stats.main(["--a", "1,2,3", "--b", "4,6,8", "--names", "x,y"]) == 0
    out = capsys.readouterr().out
    assert "x: n=3 values 1 / 2 / 3  mean 2  sample std (ddof=1) 1  population std (ddof=0) 0.8165" in out
    assert "difference of means (x - y): -4" in out
    assert "10000 resamples, seed 0" in out
    assert f"t = {-4 / math.sqrt(5 / 3):.3f}, df = {50 / 17:.2f}" in out
    assert seed_stats.main(["--a", "1,2,3", "--b", "4,6,8", "--names", "x,y"]) == 0
    assert capsys.readouterr().out == out  # fixed seed: the same interval every time
    assert seed_stats.main(["--a-summary", "2,0.8165,3", "--b-summary", "6,1.633,3", "--summary-ddof", "0"]) == 0
    assert "df = 2.94" in capsys.readouterr().out
    assert seed_stats.main(["--a=-0.24,0.14,0.03"]) == 0
    assert "mean -0.02333" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        seed_stats.main(["--a", "1,x,3"])
