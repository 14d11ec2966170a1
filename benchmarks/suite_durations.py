"""Compare two test-suite runs made with `pytest --durations=0`: the tests present in both, summed, and per file.

    python benchmarks/suite_durations.py before.log after.log

Each test's setup, call and teardown are added up (a module fixture's setup counts to the first test using it).
Tests in only one run are listed apart, so a grown suite is not mistaken for a slower one."""

import collections
import re
import sys


def durations(path: str) -> dict:
    out = collections.defaultdict(float)
    for line in open(path):
        m = re.match(r"^([\d.]+)s (?:call|setup|teardown)\s+(\S+)", line)
        if m:
            out[m.group(2)] += float(m.group(1))
    return out


def main(before_log: str, after_log: str) -> None:
    before, after = durations(before_log), durations(after_log)
    common = sorted(set(before) & set(after))
    b, a = sum(before[k] for k in common), sum(after[k] for k in common)
    print(f"{len(common)} tests in both: before {b:.0f} s, after {a:.0f} s, after/before {a / b:.3f}")
    for name, only, run in (("after", set(after) - set(before), after), ("before", set(before) - set(after), before)):
        print(f"only {name}: {len(only)} tests, {sum(run[k] for k in only):.0f} s")
    files = collections.defaultdict(lambda: [0.0, 0.0])
    for k in common:
        files[k.split("::")[0]][0] += before[k]
        files[k.split("::")[0]][1] += after[k]
    for f, (x, y) in sorted(files.items(), key=lambda item: -item[1][0]):
        print(f"  {f:50s} {x:7.1f} {y:7.1f} {y / x if x else float('nan'):6.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/suite_durations.py BEFORE.log AFTER.log")
    main(*sys.argv[1:])
