"""Start a run of one of the scripts and stop it at a given step the way SIGTERM does (the step finishes, resume.pt is
written, exit code 3), so that a run which was interrupted once can be made again to the step: its resumed
continuation (`SCRIPT --resume RUN_DIR`, or tools/grid.py) is then the run as it was. Used for the Hopper study's
accel_lstm_velocity seed 3, stopped at step 5758 in the study (RESULTS.md, RQ1).

    python analysis/interrupt_at.py STEP SCRIPT [SCRIPT'S FLAGS...]

SCRIPT is imported from its path (run it from the worktree whose code you want); the scripts' main(args, on_step)
takes the hook that stops it."""

import argparse
import importlib.util
import os
import sys


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("step", type=int, help="stop after this global step (resume.pt holds the state after it)")
    p.add_argument("script", help="one of the scripts, e.g. td3_accel_lstm_pomdp.py")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="the script's own flags")
    args = p.parse_args(argv)
    if args.step < 1:
        p.error("STEP must be at least 1")
    if not os.path.isfile(args.script):
        p.error(f"no such script: {args.script}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))  # the script's own imports, as when run
    spec = importlib.util.spec_from_file_location("script", args.script)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import tyro

    run_args = tyro.cli(script.Args, args=args.flags, prog=os.path.basename(args.script))

    def stop_at(loc):  # what the scripts' SIGTERM handler does: finish this step, then write resume.pt and stop
        stop = loc["stop"] if "stop" in loc else loc["run"].stop  # main()'s list, or its Run's (scripts since 43d54db)
        if loc["global_step"] == args.step and not stop:
            stop.append("SIGTERM")

    try:
        script.main(run_args, on_step=stop_at)
    except script.UsageError as e:
        print(f"interrupt_at.py: error: {e}", file=sys.stderr)
        return 2
    except script.Interrupted as e:
        print(f"interrupt_at.py: interrupted: {e}", flush=True)
        return 3
    print(f"interrupt_at.py: the run ended before step {args.step}; nothing was interrupted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
