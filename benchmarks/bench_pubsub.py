"""PubSub fan-out benchmark: 1,000 messages to 1 / 100 / 1,000 / 10,000 subscribers, each
subscriber a task doing `async for`. Compares uvcore.PubSub with the lecture's asyncio.Queue
PubSubManager (benchmarks/lecture_pubsub.py) and broadcaster's memory backend, on asyncio's
loop, uvloop and uvcore's loop (when uvcore.new_event_loop exists). Two modes: "burst" (the
publisher sends all messages back to back, subscribers drain their buffers) and "paced" (the
publisher yields to the loop after each message, so every message wakes every subscriber
task; up to --paced-max-subs subscribers).

Reports deliveries/s (median of --rounds runs), and from one extra run under tracemalloc the
memory per subscriber while idle (its task waiting in `async for`, task included) and at the
peak (the publisher runs ahead, so each subscriber buffers up to 1,000 messages). Merges its results into benchmarks/results.json under "pubsub".

    python benchmarks/bench_pubsub.py [--rounds 5] [--subs 1,100,1000,10000] [--quick]
"""
import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import uvcore  # noqa: E402
from lecture_pubsub import PubSubManager  # noqa: E402

CHANNEL = "messages"


# ---------------------------------------------------------------- the three brokers
# Each driver: setup(n_subs, n_msgs, done) -> (start_publishing coroutine function, cleanup)
# Subscribers are running and registered when setup returns.

async def _all_done(counter, n_subs, done):
    counter[0] += 1
    if counter[0] == n_subs and not done.done():
        done.set_result(None)


async def setup_uvcore(n_subs, n_msgs, done, paced):
    bus = uvcore.PubSub()
    counter = [0]

    async def subscriber(sub):
        count = 0
        async for _msg in sub:
            count += 1
            if count == n_msgs:
                break
        await _all_done(counter, n_subs, done)

    tasks = [asyncio.ensure_future(subscriber(bus.subscribe(CHANNEL))) for _ in range(n_subs)]
    await asyncio.sleep(0)

    async def publish():
        for i in range(n_msgs):
            await bus.publish(CHANNEL, {"id": i, "text": "hello"})
            if paced:
                await asyncio.sleep(0)

    async def cleanup():
        await asyncio.gather(*tasks)
        await bus.aclose()

    return publish, cleanup


async def setup_lecture(n_subs, n_msgs, done, paced):
    manager = PubSubManager()
    counter = [0]

    async def subscriber():
        count = 0
        async for _msg in manager.subscribe(CHANNEL):
            count += 1
            if count == n_msgs:
                break
        await _all_done(counter, n_subs, done)

    tasks = [asyncio.ensure_future(subscriber()) for _ in range(n_subs)]
    while len(manager.subscribers.get(CHANNEL, ())) < n_subs:  # it registers lazily
        await asyncio.sleep(0)

    async def publish():
        for i in range(n_msgs):
            await manager.publish(CHANNEL, {"id": i, "text": "hello"})
            if paced:
                await asyncio.sleep(0)

    async def cleanup():
        await asyncio.gather(*tasks)

    return publish, cleanup


async def setup_broadcaster(n_subs, n_msgs, done, paced):
    from broadcaster import Broadcast

    broadcast = Broadcast("memory://")
    await broadcast.connect()
    counter = [0]
    ready = [0]

    async def subscriber():
        count = 0
        async with broadcast.subscribe(channel=CHANNEL) as sub:
            ready[0] += 1
            async for _event in sub:
                count += 1
                if count == n_msgs:
                    break
        await _all_done(counter, n_subs, done)

    tasks = [asyncio.ensure_future(subscriber()) for _ in range(n_subs)]
    while ready[0] < n_subs:
        await asyncio.sleep(0)

    async def publish():
        for i in range(n_msgs):
            await broadcast.publish(CHANNEL, {"id": i, "text": "hello"})
            if paced:
                await asyncio.sleep(0)

    async def cleanup():
        await asyncio.gather(*tasks)
        await broadcast.disconnect()

    return publish, cleanup


BROKERS = {"uvcore.PubSub": setup_uvcore, "lecture": setup_lecture, "broadcaster": setup_broadcaster}


def loop_factories():
    f = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop

        f["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    if hasattr(uvcore, "new_event_loop"):
        f["uvcore"] = uvcore.new_event_loop
    return f


# ---------------------------------------------------------------- measurement

async def one_round(setup, n_subs, n_msgs, paced, trace_memory):
    done = asyncio.get_running_loop().create_future()
    gc.collect()
    if trace_memory:
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
    publish, cleanup = await setup(n_subs, n_msgs, done, paced)
    idle = None
    if trace_memory:
        idle = tracemalloc.get_traced_memory()[0] - base
    t0 = time.perf_counter()
    await publish()
    await done
    elapsed = time.perf_counter() - t0
    peak = None
    if trace_memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak -= base
    await cleanup()
    return elapsed, (peak, idle)


def run_cases(loop_factory, setups, n_subs, n_msgs, paced, rounds):
    """Rounds interleave the brokers, so a noisy machine slows them all alike."""
    times = {name: [] for name in setups}
    memory = {}
    loop = loop_factory()
    try:
        for _ in range(rounds):
            for name, setup in setups.items():
                elapsed, _ = loop.run_until_complete(one_round(setup, n_subs, n_msgs, paced, False))
                times[name].append(elapsed)
        for name, setup in setups.items():
            _, memory[name] = loop.run_until_complete(one_round(setup, n_subs, n_msgs, paced, True))
    finally:
        loop.close()
    out = {}
    for name in setups:
        median = statistics.median(times[name])
        peak, idle = memory[name]
        out[name] = {
            "deliveries_per_s": n_subs * n_msgs / median,
            "median_s": median,
            "rounds": rounds,
            "peak_bytes_per_subscriber": peak / n_subs,
            "idle_bytes_per_subscriber": idle / n_subs,
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--subs", default="1,100,1000,10000")
    ap.add_argument("--loops", default=None, help="comma list of asyncio,uvloop,uvcore")
    ap.add_argument("--brokers", default=None, help="comma list of " + ",".join(BROKERS))
    ap.add_argument("--modes", default="burst,paced",
                    help="burst: publish all messages back to back; paced: yield to the loop after each")
    ap.add_argument("--paced-max-subs", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="3 rounds, up to 1,000 subscribers")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    subs = [int(s) for s in args.subs.split(",")]
    rounds = args.rounds
    if args.quick:
        rounds = min(rounds, 3)
        subs = [s for s in subs if s <= 1000]
    loops = loop_factories()
    if args.loops:
        loops = {k: v for k, v in loops.items() if k in args.loops.split(",")}
    brokers = BROKERS
    if args.brokers:
        brokers = {k: v for k, v in BROKERS.items() if k in args.brokers.split(",")}

    results = {}
    for mode in args.modes.split(","):
        for loop_name, factory in loops.items():
            for n in subs:
                if mode == "paced" and n > args.paced_max_subs:
                    continue
                by_broker = run_cases(factory, brokers, n, args.messages, mode == "paced", rounds)
                results.setdefault(mode, {}).setdefault(loop_name, {})[str(n)] = by_broker
                for broker_name, r in by_broker.items():
                    print(f"  {mode:5} {loop_name:8} {n:>6} subs  {broker_name:14} {r['deliveries_per_s']:>14,.0f} deliveries/s"
                          f"  {r['idle_bytes_per_subscriber']:>8,.0f} B/sub idle"
                          f"  {r['peak_bytes_per_subscriber']:>10,.0f} B/sub peak", flush=True)

    print()
    print(f"Fan-out of {args.messages:,} messages; deliveries/s (median of {rounds}), "
          "peak traced memory per subscriber, ratio = uvcore.PubSub / other")
    print("| mode | loop | subs | broker | deliveries/s | idle B/sub | peak B/sub | uvcore.PubSub speedup |")
    print("|" + "---|" * 8)
    for mode, by_loop in results.items():
        for loop_name, by_n in by_loop.items():
            for n, by_broker in by_n.items():
                ours = by_broker.get("uvcore.PubSub")
                for broker_name, r in by_broker.items():
                    ratio = ours["deliveries_per_s"] / r["deliveries_per_s"] if ours else float("nan")
                    print(f"| {mode} | {loop_name} | {int(n):,} | {broker_name} | {r['deliveries_per_s']:,.0f} | "
                          f"{r['idle_bytes_per_subscriber']:,.0f} | {r['peak_bytes_per_subscriber']:,.0f} | {ratio:.1f}x |")

    if not args.no_save:
        path = os.path.join(HERE, "results.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            data = {}
        data["pubsub"] = {
            "messages": args.messages,
            "rounds": rounds,
            "python": sys.version.split()[0],
            "results": results,
        }
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
    return results


if __name__ == "__main__":
    main()
