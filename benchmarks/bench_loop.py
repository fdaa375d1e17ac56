"""Event loop core benchmark: call_soon, timers and tasks on asyncio's loop, uvloop and uvcore's
loop, all in one run.

Workloads (defaults; --scale multiplies the counts):
  call_soon  1,000,000 callbacks: 1,000 chains, each callback schedules the next of its chain
             with loop.call_soon(cb, arg), so every iteration runs a batch of 1,000
  timers     100,000 loop.call_later() with deadlines spread over 0-10 ms in scrambled order;
             the round ends when the last one fired
  tasks      100,000 tasks (loop.create_task) of 10 `await asyncio.sleep(0)` each, gathered

Times are the process's CPU time (time.process_time) for the whole workload, scheduling
included: on a shared machine this does not count time the OS gave to other processes (the
timers workload waits up to 10 ms for its deadlines; CPU time leaves that wait out, for every
loop alike). Rounds are interleaved (asyncio, uvloop, uvcore, asyncio, ...) so drift in machine
load hits all loops alike; the table shows medians and the speed-up of uvcore (time of the
other loop / time of uvcore). Results are merged into benchmarks/results.json under "loop".

    python benchmarks/bench_loop.py [--rounds 7] [--scale 1.0] [--quick] [--only call_soon,...]
"""
import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _loops import new_loop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
LOOPS = ("asyncio", "uvloop", "uvcore")

CALL_SOON_N = 1_000_000
CALL_SOON_CHAINS = 1_000
TIMERS_N = 100_000
TIMERS_SPREAD = 0.010  # seconds
TASKS_N = 100_000
TASK_AWAITS = 10


def available_loops():
    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        loops.append("uvloop")
    except ImportError:
        pass
    loops.append("uvcore")
    return loops


# ---- workloads: each returns the CPU seconds of one run on `loop` --------------------------


def bench_call_soon(loop, n):
    chains = min(CALL_SOON_CHAINS, n)
    per_chain = n // chains
    left = [per_chain] * chains
    done = [0]
    call_soon = loop.call_soon

    def cb(i):
        if left[i] > 1:
            left[i] -= 1
            call_soon(cb, i)
        else:
            done[0] += 1
            if done[0] == chains:
                loop.stop()

    t0 = time.process_time()
    for i in range(chains):
        call_soon(cb, i)
    loop.run_forever()
    dt = time.process_time() - t0
    if done[0] != chains or any(x != 1 for x in left):
        raise RuntimeError("call_soon: not every callback ran")
    return dt


def bench_timers(loop, n):
    fired = [0]
    # Scrambled deadlines (a multiplicative step modulo n) so the timer heap does real work.
    step = 7919 if n % 7919 else 7907
    delays = [((i * step) % n) * TIMERS_SPREAD / n for i in range(n)]

    def cb():
        fired[0] += 1
        if fired[0] == n:
            loop.stop()

    call_later = loop.call_later
    t0 = time.process_time()
    for d in delays:
        call_later(d, cb)
    loop.run_forever()
    dt = time.process_time() - t0
    if fired[0] != n:
        raise RuntimeError("timers: not every timer fired")
    return dt


def bench_tasks(loop, n):
    sleep = asyncio.sleep
    finished = [0]

    async def worker():
        for _ in range(TASK_AWAITS):
            await sleep(0)
        finished[0] += 1

    async def main():
        await asyncio.gather(*[loop.create_task(worker()) for _ in range(n)])

    t0 = time.process_time()
    loop.run_until_complete(main())
    dt = time.process_time() - t0
    if finished[0] != n:
        raise RuntimeError("tasks: not every task finished")
    return dt


WORKLOADS = {
    "call_soon": (bench_call_soon, CALL_SOON_N, "callbacks"),
    "timers": (bench_timers, TIMERS_N, "timers"),
    "tasks": (bench_tasks, TASKS_N, f"tasks x {TASK_AWAITS} awaits"),
}


def measure(workload, loop_name, n):
    fn = WORKLOADS[workload][0]
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    gc.collect()
    try:
        return fn(loop, n)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# ---- driver --------------------------------------------------------------------------------


def table(results, loops):
    ratios = [other for other in ("asyncio", "uvloop") if other in loops and other != "uvcore"]
    head = "| workload | " + " | ".join(f"{n} (s)" for n in loops)
    head += "".join(f" | uvcore vs {o}" for o in ratios) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, res in results.items():
        row = f"| {name} ({res['count']:,} {res['what']}) | "
        row += " | ".join(f"{res['loops'][n]['median']:.3f}" for n in loops)
        for o in ratios:
            row += f" | {res['speedup_vs_' + o]:.2f}x"
        lines.append(row + " |")
    return "\n".join(lines)


def save(path, section):
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    data["loop"] = section
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the workload sizes")
    p.add_argument("--quick", action="store_true", help="5 rounds at a tenth of the sizes")
    p.add_argument("--only", help="comma-separated workloads (" + ",".join(WORKLOADS) + ")")
    p.add_argument("--loops", help="comma-separated loops (default: all available)")
    p.add_argument("--results", default=RESULTS, help="JSON file to merge into (default %(default)s)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 5)
        args.scale *= 0.1
    loops = args.loops.split(",") if args.loops else available_loops()
    names = args.only.split(",") if args.only else list(WORKLOADS)
    for name in names:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}")

    print(f"loop benchmark: median of {args.rounds} interleaved rounds, process CPU seconds "
          f"(lower is better); speed-up = other loop's time / uvcore's; Python {sys.version.split()[0]}",
          flush=True)
    missing = [n for n in LOOPS if n not in loops]
    if missing:
        print(f"(not available, skipped: {', '.join(missing)})")
    results = {}
    for name in names:
        fn, base, what = WORKLOADS[name]
        n = max(1, int(base * args.scale))
        times = {ln: [] for ln in loops}
        measure(name, loops[0], max(1, n // 10))  # warm-up: imports, allocator, caches
        for _ in range(args.rounds):
            for ln in loops:
                times[ln].append(measure(name, ln, n))
        res = {"count": n, "what": what,
               "loops": {ln: {"median": statistics.median(t), "rounds": t} for ln, t in times.items()}}
        if "uvcore" in loops:
            for other in loops:
                if other != "uvcore":
                    res["speedup_vs_" + other] = res["loops"][other]["median"] / res["loops"]["uvcore"]["median"]
        results[name] = res
        print(f"  {name:<10} " + "  ".join(f"{ln} {res['loops'][ln]['median']:.3f}s" for ln in loops),
              file=sys.stderr, flush=True)

    print(table(results, loops))
    if not args.no_save:
        save(args.results, {
            "meta": {
                "python": sys.version.split()[0],
                "rounds": args.rounds,
                "scale": args.scale,
                "loops": loops,
                "metric": "process CPU seconds, median",
                "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
            },
            "workloads": results,
        })
    return results


if __name__ == "__main__":
    main()
