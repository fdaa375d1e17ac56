"""Queue throughput: asyncio.Queue vs uvcore.Queue on asyncio's loop, uvloop and uvcore's loop.

Workloads (items/s, median of several rounds, all variants in one process run):
  spsc_unbounded   1 producer, 1 consumer, maxsize=0, 1M items
  spsc_bounded     1 producer, 1 consumer, maxsize=100, 1M items
  mpmc_10x10       10 producers, 10 consumers, maxsize=100, 1M items in all
Times are the process's CPU time (time.process_time): the workloads never block, so this
equals wall time on an idle machine and does not count time the OS gave to other processes.
Prints a table of medians and ratios and merges the numbers into benchmarks/results.json
under the key "queue". Run alone: python benchmarks/bench_queue.py [--items N] [--rounds R]
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import uvcore

try:
    import uvloop
except ImportError:  # uvloop is a bench dependency; the table just omits it if missing
    uvloop = None

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")

LOOPS = {"asyncio": asyncio.new_event_loop, "uvcore": uvcore.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop
QUEUES = {"asyncio.Queue": asyncio.Queue, "uvcore.Queue": uvcore.Queue}


async def _spsc(queue_cls, items, maxsize):
    q = queue_cls(maxsize)

    async def producer():
        put = q.put
        for i in range(items):
            await put(i)

    async def consumer():
        get = q.get
        for _ in range(items):
            await get()

    t0 = time.process_time()
    await asyncio.gather(consumer(), producer())
    return time.process_time() - t0


async def _mpmc(queue_cls, items, producers=10, consumers=10, maxsize=100):
    q = queue_cls(maxsize)
    per_producer = items // producers
    per_consumer = per_producer * producers // consumers

    async def producer():
        put = q.put
        for i in range(per_producer):
            await put(i)

    async def consumer():
        get = q.get
        for _ in range(per_consumer):
            await get()

    t0 = time.process_time()
    await asyncio.gather(*(consumer() for _ in range(consumers)),
                         *(producer() for _ in range(producers)))
    return time.process_time() - t0


WORKLOADS = {
    "spsc_unbounded": lambda cls, n: _spsc(cls, n, 0),
    "spsc_bounded": lambda cls, n: _spsc(cls, n, 100),
    "mpmc_10x10": lambda cls, n: _mpmc(cls, n),
}


def _measure(loop_factory, workload, queue_cls, items):
    loop = loop_factory()
    try:
        return loop.run_until_complete(workload(queue_cls, items))
    finally:
        loop.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-save", action="store_true", help="do not update results.json")
    args = ap.parse_args(argv)

    results = {}
    for wname, workload in WORKLOADS.items():
        for lname, factory in LOOPS.items():
            # Rounds interleave the two queues so drift in machine load hits both alike.
            times = {qname: [] for qname in QUEUES}
            for _ in range(args.rounds):
                for qname, qcls in QUEUES.items():
                    times[qname].append(_measure(factory, workload, qcls, args.items))
            for qname in QUEUES:
                med = statistics.median(times[qname])
                results[f"{wname}/{lname}/{qname}"] = {
                    "seconds": med,
                    "items_per_s": args.items / med,
                }
            print(f"  {wname:15} {lname:8} done", file=sys.stderr)

    header = f"{'workload':16} {'loop':8} {'asyncio.Queue':>16} {'uvcore.Queue':>16} {'ratio':>7}"
    print(f"Queue throughput, items/s (median of {args.rounds} rounds, {args.items:,} items)")
    print(header)
    print("-" * len(header))
    ratios = {}
    for wname in WORKLOADS:
        for lname in LOOPS:
            a = results[f"{wname}/{lname}/asyncio.Queue"]["items_per_s"]
            u = results[f"{wname}/{lname}/uvcore.Queue"]["items_per_s"]
            ratios[f"{wname}/{lname}"] = u / a
            print(f"{wname:16} {lname:8} {a:16,.0f} {u:16,.0f} {u / a:6.2f}x")

    if not args.no_save:
        data = {}
        if os.path.exists(RESULTS):
            with open(RESULTS) as f:
                data = json.load(f)
        data["queue"] = {
            "items": args.items,
            "rounds": args.rounds,
            "python": sys.version.split()[0],
            "results": results,
            "ratio_uvcore_vs_asyncio_queue": ratios,
        }
        with open(RESULTS + ".tmp", "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(RESULTS + ".tmp", RESULTS)
    return ratios


if __name__ == "__main__":
    main()
