"""Run every benchmark (benchmarks/bench_*.py) in turn; `make bench` calls this.

Each benchmark runs in a process of its own, merges its own section into
benchmarks/results.json and prints its tables; their output streams as they run and all the
tables are printed again together at the end. One failing benchmark (say, no redis-server on
this machine) does not stop the others; the exit status is non-zero if any failed.

    python benchmarks/run_all.py [--quick] [--only loop,net,...] [--no-save]

--quick runs each benchmark with fewer rounds and smaller sizes (minutes instead of the better
part of an hour); the numbers are noisier but the tables have the same shape.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Arguments that make each benchmark quick. A benchmark not listed runs with its defaults.
QUICK_ARGS = {
    "loop": ["--quick"],
    "net": ["--rounds", "3", "--duration", "0.5", "--warmup", "0.2"],
    "queue": ["--items", "200000", "--rounds", "3"],
    "pubsub": ["--quick"],
    "redis": ["--quick"],
    "lab": ["--rounds", "3", "--sizes", "100,1000"],
}
# The core loop first, then the rest by name.
ORDER = ["loop", "net", "queue", "pubsub", "redis", "lab"]


def discover():
    names = [os.path.basename(p)[len("bench_"):-len(".py")] for p in glob.glob(os.path.join(HERE, "bench_*.py"))]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def run_one(name, quick, no_save):
    cmd = [sys.executable, os.path.join(HERE, f"bench_{name}.py")]
    if quick:
        cmd += QUICK_ARGS.get(name, [])
    if no_save:
        cmd.append("--no-save")
    print(f"\n===== bench_{name}: {' '.join(cmd[2:]) or '(defaults)'}", flush=True)
    t0 = time.monotonic()
    out = []
    # stdout holds the tables: echo it live and keep it for the summary; stderr (progress)
    # goes straight through.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.append(line)
        rc = proc.wait()
    return rc, time.monotonic() - t0, "".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    p.add_argument("--only", help="comma-separated benchmark names (" + ",".join(discover()) + ")")
    p.add_argument("--no-save", action="store_true", help="leave results.json alone")
    args = p.parse_args(argv)
    names = discover()
    if args.only:
        wanted = args.only.split(",")
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(names)}")
        names = [n for n in names if n in wanted]

    runs = {name: run_one(name, args.quick, args.no_save) for name in names}

    print("\n\n##### all benchmark tables" + (" (quick mode)" if args.quick else ""))
    for name, (rc, secs, out) in runs.items():
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(f"\n=== bench_{name}: {status}, {secs:.0f} s\n{out.rstrip()}")
    failed = [name for name, (rc, _, _) in runs.items() if rc != 0]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    if not args.no_save:
        print(f"\nresults merged into {os.path.join(HERE, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
