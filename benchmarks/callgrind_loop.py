"""Instructions per operation of bench_loop.py's workloads, counted by valgrind's callgrind.

Instruction counts do not depend on what else the machine runs, so this is the measurement to
trust on a busy shared machine. Each (workload, loop) runs bench_loop.py's child under
callgrind twice, at n and 2n operations; the difference divided by the extra operations
(1.1 n: the child's warm-up is a tenth of the run) is the cost of one operation, with the
interpreter's start-up and the loop's creation cancelled out. --breakdown splits uvcore's count by shared object: what runs in uvcore and libuv is the
loop's own cost; the interpreter, asyncio's C module and libc (malloc, memcpy) are the floor
the same Python-level work costs on any loop.

    python benchmarks/callgrind_loop.py [--only call_soon,...] [--loops uvcore,uvloop] [--n 20000]
    python benchmarks/callgrind_loop.py --breakdown --loops uvcore   # where each row's instructions go
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench_loop.py")
sys.path.insert(0, HERE)
import bench_loop  # noqa: E402

# Sizes small enough for callgrind (~50x slower than native).
DEFAULT_N = {
    "echo_1KiB": 4_000,
    "stream_64KiB": 512,
    "getaddrinfo": 4_000,
    "tasks": 2_000,
    "timers": 20_000,
}


def _by_object(out):
    """Self instructions per shared object (uvcore, libuv, libpython, _asyncio, libc...)."""
    proc = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", out],
                          capture_output=True, text=True, check=True)
    totals = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S.*?(?:\[(\S+)\])?\s*$", line)
        if m is None or "PROGRAM TOTALS" in line:
            continue
        obj = os.path.basename(m.group(2) or "?")
        if obj.startswith("_uvcore"):
            obj = "uvcore"
        elif obj.startswith("libuv"):
            obj = "libuv"
        elif obj.startswith("libpython") or obj == "?":
            obj = "interpreter"
        elif obj.startswith("_asyncio"):
            obj = "asyncio C"
        elif obj.startswith("libc"):
            obj = "libc"
        else:
            obj = "other"
        totals[obj] = totals.get(obj, 0) + int(m.group(1).replace(",", ""))
    return totals


def instructions(workload, loop, n, objects=False):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, BENCH,
             "--child", workload, loop, str(n)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{workload} on {loop} failed:\n{proc.stderr[-3000:]}")
        m = re.search(r"Collected : (\d+)", proc.stderr)
        if m is None:
            raise RuntimeError("callgrind printed no instruction count:\n" + proc.stderr[-3000:])
        if objects:
            return int(m.group(1)), _by_object(out)
        return int(m.group(1))


def per_op(workload, loop, n):
    a = instructions(workload, loop, n)
    b = instructions(workload, loop, 2 * n)
    return (b - a) / (1.1 * n)


def breakdown(workload, loop, n):
    """Instructions per operation, split by where they run."""
    a, oa = instructions(workload, loop, n, objects=True)
    b, ob = instructions(workload, loop, 2 * n, objects=True)
    per = {k: (ob.get(k, 0) - oa.get(k, 0)) / (1.1 * n) for k in set(oa) | set(ob)}
    return (b - a) / (1.1 * n), per


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated workloads")
    p.add_argument("--loops", default=",".join(bench_loop.available_loops()))
    p.add_argument("--n", type=int, default=20_000, help="operations (per-workload defaults are smaller for slow ones)")
    p.add_argument("--breakdown", action="store_true",
                   help="one loop: split each row by where the instructions run (uvcore, libuv, "
                        "the interpreter, asyncio's C module, libc)")
    args = p.parse_args(argv)
    if args.breakdown:
        names = args.only.split(",") if args.only else list(bench_loop.WORKLOADS)
        loop = args.loops.split(",")[0]
        cols = ["uvcore", "libuv", "interpreter", "asyncio C", "libc", "other"]
        print(f"| workload ({loop}) | total | " + " | ".join(cols) + " |")
        print("|---" + "|---:" * (len(cols) + 1) + "|")
        for name in names:
            n = min(args.n, DEFAULT_N.get(name, args.n))
            total, per = breakdown(name, loop, n)
            print(f"| {name} | {total:,.0f} | " + " | ".join(f"{per.get(c, 0):,.0f}" for c in cols) + " |",
                  flush=True)
        return
    names = args.only.split(",") if args.only else list(bench_loop.WORKLOADS)
    loops = args.loops.split(",")
    print("| workload | " + " | ".join(f"{ln} (instr/op)" for ln in loops) + " |")
    print("|---" + "|---:" * len(loops) + "|")
    for name in names:
        n = min(args.n, DEFAULT_N.get(name, args.n))
        row = [f"{per_op(name, ln, n):,.0f}" for ln in loops]
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
