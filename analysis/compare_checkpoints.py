"""Are two checkpoints the same? Every tensor, array and value, walked key by key; prints each difference.

    python analysis/compare_checkpoints.py runs/study/Hopper-v4__accel__1__*/accelerated.pt \\
        runs/rq4_stage1/Hopper-v4__rq4_stage1__1__*/accelerated.pt --ignore args/exp_name args/finetune_steps

Exit code 0 when they are equal but for the --ignore'd paths, 1 when not, 2 for a missing or unreadable file.
"""

import argparse
import sys

import numpy as np
import torch


def differences(a, b, path: str = "") -> list[tuple[str, str]]:
    """Each place where a and b differ, as (path, what)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [(f"{path}/{k}", "only in one") for k in sorted(set(a) ^ set(b), key=str)]
        for k in sorted(set(a) & set(b), key=str):
            out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [(path, f"length {len(a)} vs {len(b)}")]
        return [d for i, (u, v) in enumerate(zip(a, b, strict=True)) for d in differences(u, v, f"{path}[{i}]")]
    if torch.is_tensor(a) and torch.is_tensor(b):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [(path, f"tensor {tuple(a.shape)} differs")]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        same = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
        return [] if same else [(path, f"array {a.shape} differs")]
    if type(a) is not type(b) or a != b:
        return [(path, f"{a!r:.60} vs {b!r:.60}")]
    return []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--ignore", nargs="*", default=[], metavar="PATH", help="key paths to leave out, e.g. args/seed")
    args = p.parse_args(argv)
    loaded = []
    for f in (args.a, args.b):
        try:
            loaded.append(torch.load(f, map_location="cpu", weights_only=False))
        except Exception as e:  # noqa: BLE001 - any unreadable file is a usage error
            print(f"compare_checkpoints: {f}: cannot read ({type(e).__name__})", file=sys.stderr)
            return 2
    ignore = {"/" + i.strip("/") for i in args.ignore}
    found = [(path, what) for path, what in differences(*loaded) if path not in ignore]
    for path, what in found:
        print(f"{path}: {what}")
    print(f"{len(found)} difference(s)" + (f", {len(ignore)} path(s) ignored" if ignore else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
