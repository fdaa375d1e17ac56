"""Instructions per operation of bench_loop.py's workloads, counted by valgrind's callgrind.

Instruction counts do not depend on what else the machine runs, so this is the measurement to
trust on a busy shared machine. Each (workload, loop) runs bench_loop.py's child under
callgrind twice, at n and 2n operations; the difference divided by the extra operations
(1.1 n: the child's warm-up is a tenth of the run) is the cost of one operation, with the
interpreter's start-up and the loop's creation cancelled out. The "floor" pseudo-loop runs the
same Python-level code with every loop call replaced by the cheapest stand-in (see
bench_loop.py): what the interpreter itself costs for the workload.

    python benchmarks/callgrind_loop.py [--only call_soon,...] [--loops uvcore,uvloop] [--n 20000]
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


def instructions(workload, loop, n):
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
        return int(m.group(1))


def per_op(workload, loop, n):
    a = instructions(workload, loop, n)
    b = instructions(workload, loop, 2 * n)
    return (b - a) / (1.1 * n)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated workloads")
    p.add_argument("--loops", default=",".join(bench_loop.available_loops()))
    p.add_argument("--n", type=int, default=20_000, help="operations (per-workload defaults are smaller for slow ones)")
    args = p.parse_args(argv)
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
