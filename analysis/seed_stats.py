"""Per-seed statistics for RESULTS.md: means, sample stds, a bootstrap interval and Welch's t-test.

Two methods' per-seed values (one number per seed, e.g. each seed's final return) in, and out:
- each method's mean, sample std (ddof=1) and population std (ddof=0, what tools/plot_runs.py prints);
- the difference of means (a - b) with a 95% percentile-bootstrap interval: 10,000 resamples with a fixed
  seed, each resampling the seeds of each method with replacement, within that method;
- Welch's t-test (unequal variances): t, the Welch-Satterthwaite degrees of freedom, the two-sided p-value and
  the 95% Welch interval of the difference.

    python analysis/seed_stats.py --a 915,333,1701 --b 473,315,661 --names accel,mlp
    python analysis/seed_stats.py --a=-0.24,0.14,0.03          # one method: mean and stds only
    python analysis/seed_stats.py --a-summary 534,250,3 --b-summary 355,63,3 --summary-ddof 0 --names accel,mlp

A value list that starts with a minus sign needs '=' (--a=-0.24,...). --a-summary/--b-summary take MEAN,STD,N
where only a table's summary survives (no per-seed values): Welch's test only, since a bootstrap needs the
values; --summary-ddof says which std the table gave (0: population, as tools/plot_runs.py prints).

With 3 seeds per method a percentile bootstrap can draw only 10 distinct resampled means per method and
underestimates the spread (its resamples use the population std): its interval is too narrow. The Welch
interval and p-value are the conservative figures to read. The t distribution is computed here (regularized
incomplete beta by its continued fraction), so numpy is the only dependency.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


def parse_values(text: str) -> np.ndarray:
    """'915,333,1701' -> array([915., 333., 1701.]); at least one finite number."""
    try:
        values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=float)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from e
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"need finite numbers: {text!r}")
    return values


def parse_summary(text: str) -> tuple[float, float, int]:
    """'534,250,3' -> (mean 534.0, std 250.0, n 3)."""
    parts = text.split(",")
    try:
        mean, std, n = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError) as e:
        raise argparse.ArgumentTypeError(f"need MEAN,STD,N: {text!r}") from e
    if len(parts) != 3 or n < 2 or std < 0:
        raise argparse.ArgumentTypeError(f"need MEAN,STD,N with N >= 2 and STD >= 0: {text!r}")
    return mean, std, n


def sample_std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1))


def population_std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=0))


def bootstrap_diff_ci(
    a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b): resample each method's seeds with replacement."""
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(resamples, len(a)))
    ib = rng.integers(0, len(b), size=(resamples, len(b)))
    diffs = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    lo, hi = np.percentile(diffs, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes' betacf)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df (real, > 0) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom (q > 0.5), by bisection on the tail."""
    target = 2.0 * (1.0 - q)  # two-sided tail probability at the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def welch_from_summary(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, level: float = LEVEL
) -> dict:
    """Welch's t-test from means and sample stds (ddof=1): t, df, two-sided p and the level interval of a - b."""
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    diff = mean_a - mean_b
    se = math.sqrt(va + vb)
    if se == 0.0:
        raise ValueError("both methods have zero spread: Welch's test is undefined")
    t = diff / se
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return {"diff": diff, "t": t, "df": df, "p": t_two_sided_p(t, df), "ci": (diff - half, diff + half)}


def welch(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> dict:
    return welch_from_summary(
        float(a.mean()), sample_std(a), len(a), float(b.mean()), sample_std(b), len(b), level=level
    )


def describe(name: str, x: np.ndarray) -> str:
    values = " / ".join(f"{v:g}" for v in x)
    return (
        f"{name}: n={len(x)} values {values}  mean {x.mean():.4g}  sample std (ddof=1) {sample_std(x):.4g}"
        f"  population std (ddof=0) {population_std(x):.4g}"
    )


def report_welch(w: dict, names: list[str], level: float) -> list[str]:
    pct = f"{100 * level:g}%"
    return [
        f"Welch's t-test: t = {w['t']:.3f}, df = {w['df']:.2f}, two-sided p = {w['p']:.3f}",
        f"Welch {pct} interval of {names[0]} - {names[1]}: [{w['ci'][0]:.4g}, {w['ci'][1]:.4g}]",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=parse_values, help="first method's per-seed values, comma-separated")
    p.add_argument("--b", type=parse_values, help="second method's per-seed values, comma-separated")
    p.add_argument("--a-summary", type=parse_summary, help="MEAN,STD,N of the first method (no per-seed values)")
    p.add_argument("--b-summary", type=parse_summary, help="MEAN,STD,N of the second method")
    p.add_argument("--summary-ddof", type=int, choices=(0, 1), default=1, help="the ddof of the summaries' STD")
    p.add_argument("--names", default="a,b", help="the two methods' names, comma-separated")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=SEED, help="the bootstrap's random seed")
    p.add_argument("--level", type=float, default=LEVEL, help="interval level")
    args = p.parse_args(argv)
    names = (args.names.split(",") + ["a", "b"])[:2]
    pct = f"{100 * args.level:g}%"

    summaries = args.a_summary is not None or args.b_summary is not None
    if summaries:
        if args.a is not None or args.b is not None or args.a_summary is None or args.b_summary is None:
            p.error("give --a-summary and --b-summary together, without --a/--b")
        (ma, sa, na), (mb, sb, nb) = args.a_summary, args.b_summary
        if args.summary_ddof == 0:  # population std -> sample std
            sa, sb = sa * math.sqrt(na / (na - 1)), sb * math.sqrt(nb / (nb - 1))
        print(f"from summaries (std given with ddof={args.summary_ddof}; rounded inputs give rounded outputs)")
        for name, m, s, n in ((names[0], ma, sa, na), (names[1], mb, sb, nb)):
            print(f"{name}: n={n}  mean {m:.4g}  sample std (ddof=1) {s:.4g}")
        w = welch_from_summary(ma, sa, na, mb, sb, nb, level=args.level)
        print(f"difference of means ({names[0]} - {names[1]}): {w['diff']:.4g}")
        print("\n".join(report_welch(w, names, args.level)))
        return 0

    if args.a is None:
        p.error("give --a (and --b to compare), or --a-summary and --b-summary")
    print(describe(names[0], args.a))
    if args.b is None:
        return 0
    print(describe(names[1], args.b))
    if len(args.a) < 2 or len(args.b) < 2:
        p.error("a comparison needs at least 2 values per method")
    diff = float(args.a.mean() - args.b.mean())
    lo, hi = bootstrap_diff_ci(args.a, args.b, args.resamples, args.seed, args.level)
    print(f"difference of means ({names[0]} - {names[1]}): {diff:.4g}")
    print(
        f"percentile bootstrap {pct} interval: [{lo:.4g}, {hi:.4g}] "
        f"({args.resamples} resamples, seed {args.seed}, seeds resampled within each method)"
    )
    print("\n".join(report_welch(welch(args.a, args.b, args.level), names, args.level)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
