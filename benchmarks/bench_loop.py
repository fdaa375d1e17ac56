"""Event loop core benchmark: the loop's hot paths on asyncio's loop, uvloop, rloop and uvcore's
loop, all in one run.

Workloads (default counts; --scale multiplies them):
  call_soon          200,000 loop.call_soon(cb) scheduled from one callback, then drained
  call_soon_3args    the same with loop.call_soon(cb, 1, 2, 3)
  call_soon_threadsafe  200,000 loop.call_soon_threadsafe(cb) from a worker thread while the
                     loop runs; done when the loop ran them all
  timer_cancel       200,000 loop.call_later(30, cb).cancel() inside a coroutine
  sleep0             200,000 `await asyncio.sleep(0)` in one coroutine
  future             100,000 times: f = loop.create_future(); loop.call_soon(f.set_result, None);
                     await f
  getaddrinfo        20,000 `await loop.getaddrinfo("127.0.0.1", 80)` (a numeric host)
  echo_1KiB          20,000 round trips of a 1 KiB message between a client and a server
                     Protocol on one loop over loopback TCP
  stream_64KiB       4,096 writes of 64 KiB (256 MiB) through asyncio streams with
                     `await writer.drain()` (flow control), read by a server on the same loop
  timers             100,000 loop.call_later() with deadlines spread over 0-10 ms in scrambled
                     order, all fired
  tasks              20,000 tasks (loop.create_task) of 10 `await asyncio.sleep(0)` each, gathered

Every measurement runs in a fresh process (imports, allocator and GC state are the same for
every loop), which first runs the workload once at a tenth of its size as a warm-up and then
reports the CPU time (time.process_time: all threads of the process, not time the OS gave to
other processes) of one full run. Rounds are interleaved (asyncio, uvloop, rloop, uvcore,
asyncio, ...) so drift in machine load hits all loops alike. The table shows operations per
CPU-second (median of the rounds) and uvcore's speed-up over each other loop. Results are
merged into benchmarks/results.json under "loop".

    python benchmarks/bench_loop.py [--rounds 5] [--scale 1.0] [--quick] [--only call_soon,...]
"""
import argparse
import asyncio
import gc
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _loops import new_loop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
LOOPS = ("asyncio", "uvloop", "rloop", "uvcore")


def available_loops():
    loops = ["asyncio"]
    for name in ("uvloop", "rloop"):
        try:
            __import__(name)
        except ImportError:
            continue
        loops.append(name)
    loops.append("uvcore")
    return loops


# ---- workloads: each runs n operations on `loop` and returns its CPU seconds ----------------


def _drain(loop, schedule):
    """Run `schedule` as the loop's first callback, then until the ready queue drained."""
    state = {}

    def start():
        schedule()
        loop.call_soon(loop.stop)  # FIFO: runs after every callback scheduled above

    t0 = time.process_time()
    loop.call_soon(start)
    loop.run_forever()
    return time.process_time() - t0, state


def bench_call_soon(loop, n):
    ran = itertools.count()
    cb = ran.__next__  # a C callable: the loop's own cost is what this row measures
    call_soon = loop.call_soon

    def schedule():
        for _ in range(n):
            call_soon(cb)

    dt, _ = _drain(loop, schedule)
    if next(ran) != n:
        raise RuntimeError("call_soon: not every callback ran")
    return dt


def bench_call_soon_3args(loop, n):
    seen = []
    cb = seen.append  # one argument passed through, to check the arguments arrive
    call_soon = loop.call_soon

    def cb3(a, b, c):
        pass

    def schedule():
        for i in range(n):
            call_soon(cb3, i, 2, 3)
        call_soon(cb, n)

    dt, _ = _drain(loop, schedule)
    if seen != [n]:
        raise RuntimeError("call_soon_3args: the callbacks did not run")
    return dt


def bench_call_soon_threadsafe(loop, n):
    ran = itertools.count()
    cb = ran.__next__

    def worker():
        cst = loop.call_soon_threadsafe
        for _ in range(n):
            cst(cb)
        cst(loop.stop)

    thread = threading.Thread(target=worker)
    t0 = time.process_time()
    loop.call_soon(thread.start)
    loop.run_forever()
    dt = time.process_time() - t0
    thread.join()
    if next(ran) != n:
        raise RuntimeError("call_soon_threadsafe: not every callback ran")
    return dt


def _run_coro(loop, coro):
    t0 = time.process_time()
    loop.run_until_complete(coro)
    return time.process_time() - t0


def bench_timer_cancel(loop, n):
    def cb():
        raise RuntimeError("a cancelled timer ran")

    async def main():
        call_later = loop.call_later
        for _ in range(n):
            call_later(30, cb).cancel()

    return _run_coro(loop, main())


def bench_sleep0(loop, n):
    async def main():
        sleep = asyncio.sleep
        for _ in range(n):
            await sleep(0)

    return _run_coro(loop, main())


def bench_future(loop, n):
    async def main():
        create_future = loop.create_future
        call_soon = loop.call_soon
        total = 0
        for i in range(n):
            f = create_future()
            call_soon(f.set_result, i)
            total += await f
        if total != n * (n - 1) // 2:
            raise RuntimeError("future: wrong results")

    return _run_coro(loop, main())


def bench_getaddrinfo(loop, n):
    expected = socket.getaddrinfo("127.0.0.1", 80)
    loop_is_uvcore = type(loop).__module__.startswith("uvcore")

    async def main():
        gai = loop.getaddrinfo
        for _ in range(n):
            infos = await gai("127.0.0.1", 80)
        if loop_is_uvcore and infos != expected:
            raise RuntimeError(f"getaddrinfo: {infos!r} != socket's {expected!r}")

    return _run_coro(loop, main())


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _EchoClient(asyncio.Protocol):
    def __init__(self, n, size, done):
        self.left = n
        self.msg = b"x" * size
        self.size = size
        self.got = 0
        self.done = done

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.msg)

    def data_received(self, data):
        self.got += len(data)
        if self.got < self.size:
            return
        self.got -= self.size
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
        else:
            self.transport.write(self.msg)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError("echo connection lost"))


def bench_echo_1KiB(loop, n):
    async def main():
        server = await loop.create_server(_EchoServer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        done = loop.create_future()
        t0 = time.process_time()
        transport, _ = await loop.create_connection(lambda: _EchoClient(n, 1024, done), "127.0.0.1", port)
        await done
        dt = time.process_time() - t0
        transport.close()
        server.close()
        await server.wait_closed()
        return dt

    return loop.run_until_complete(main())


STREAM_CHUNK = 64 * 1024


def bench_stream_64KiB(loop, n):
    total = n * STREAM_CHUNK
    received = [0]
    done = loop.create_future()

    async def handle(reader, writer):
        while received[0] < total:
            data = await reader.read(256 * 1024)
            if not data:
                break
            received[0] += len(data)
        if not done.done():
            done.set_result(None)
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        chunk = b"x" * STREAM_CHUNK
        t0 = time.process_time()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(chunk)
            await writer.drain()
        await done  # the server read every byte
        dt = time.process_time() - t0
        writer.close()
        server.close()
        return dt

    dt = loop.run_until_complete(main())
    if received[0] != total:
        raise RuntimeError(f"stream: {received[0]} bytes received, {total} sent")
    return dt


TIMERS_SPREAD = 0.010  # seconds


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


TASK_AWAITS = 10


def bench_tasks(loop, n):
    sleep = asyncio.sleep
    finished = [0]

    async def worker():
        for _ in range(TASK_AWAITS):
            await sleep(0)
        finished[0] += 1

    async def main():
        await asyncio.gather(*[loop.create_task(worker()) for _ in range(n)])

    dt = _run_coro(loop, main())
    if finished[0] != n:
        raise RuntimeError("tasks: not every task finished")
    return dt


# name -> (function, default count, what one operation is)
WORKLOADS = {
    "call_soon": (bench_call_soon, 200_000, "call_soon(cb), scheduled then drained"),
    "call_soon_3args": (bench_call_soon_3args, 200_000, "call_soon(cb, 1, 2, 3)"),
    "call_soon_threadsafe": (bench_call_soon_threadsafe, 200_000, "call_soon_threadsafe(cb) from a thread"),
    "timer_cancel": (bench_timer_cancel, 200_000, "call_later(30, cb).cancel()"),
    "sleep0": (bench_sleep0, 200_000, "await asyncio.sleep(0)"),
    "future": (bench_future, 100_000, "create_future + call_soon(set_result) + await"),
    "getaddrinfo": (bench_getaddrinfo, 20_000, 'await getaddrinfo("127.0.0.1", 80)'),
    "echo_1KiB": (bench_echo_1KiB, 20_000, "1 KiB protocol echo round trips, one loop"),
    "stream_64KiB": (bench_stream_64KiB, 4_096, "64 KiB stream writes + drain()"),
    "timers": (bench_timers, 100_000, "call_later timers fired (0-10 ms)"),
    "tasks": (bench_tasks, 20_000, f"tasks of {TASK_AWAITS} sleep(0)"),
}


def child_main(workload, loop_name, n):
    """One measurement in this fresh process: a warm-up at n/10, then the timed run."""
    fn = WORKLOADS[workload][0]
    for size in (max(1, n // 10), n):
        loop = new_loop(loop_name)
        asyncio.set_event_loop(loop)
        gc.collect()
        try:
            dt = fn(loop, size)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    print(json.dumps({"cpu": dt}))


def measure(workload, loop_name, n):
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", workload, loop_name, str(n)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{workload} on {loop_name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["cpu"]


# ---- driver --------------------------------------------------------------------------------


def _fmt_rate(r):
    if r >= 1e6:
        return f"{r / 1e6:.2f} M/s"
    return f"{r / 1e3:.0f} k/s"


def table(results, loops):
    others = [o for o in loops if o != "uvcore"]
    head = "| workload | " + " | ".join(loops)
    if "uvcore" in loops:
        head += "".join(f" | uvcore / {o}" for o in others)
    head += " |"
    lines = [head, "|---" + "|---:" * (head.count("|") - 2) + "|"]
    for name, res in results.items():
        row = f"| {name} ({res['count']:,} x {res['what']}) | "
        row += " | ".join(_fmt_rate(res["loops"][n]["ops_per_cpu_s"]) for n in loops)
        if "uvcore" in loops:
            for o in others:
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2], int(argv[3]))
        return None
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the workload sizes")
    p.add_argument("--quick", action="store_true", help="1 round at a twentieth of the sizes")
    p.add_argument("--only", help="comma-separated workloads (" + ",".join(WORKLOADS) + ")")
    p.add_argument("--loops", help="comma-separated loops (default: all available)")
    p.add_argument("--results", default=RESULTS, help="JSON file to merge into (default %(default)s)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.scale *= 0.05
    loops = args.loops.split(",") if args.loops else available_loops()
    names = args.only.split(",") if args.only else list(WORKLOADS)
    for name in names:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}")

    print(f"loop benchmark: median of {args.rounds} interleaved rounds, each a fresh process; "
          f"operations per CPU-second (higher is better); speed-up = uvcore's rate / the other "
          f"loop's; Python {sys.version.split()[0]}", flush=True)
    missing = [n for n in LOOPS if n not in loops]
    if missing:
        print(f"(not available, skipped: {', '.join(missing)})")
    results = {}
    for name in names:
        fn, base, what = WORKLOADS[name]
        n = max(1, int(base * args.scale))
        times = {ln: [] for ln in loops}
        for _ in range(args.rounds):
            for ln in loops:
                times[ln].append(measure(name, ln, n))
        res = {"count": n, "what": what, "loops": {}}
        for ln, t in times.items():
            med = statistics.median(t)
            res["loops"][ln] = {"median_cpu_s": med, "ops_per_cpu_s": n / med, "rounds_cpu_s": t}
        if "uvcore" in loops:
            for other in loops:
                if other != "uvcore":
                    res["speedup_vs_" + other] = (res["loops"]["uvcore"]["ops_per_cpu_s"]
                                                  / res["loops"][other]["ops_per_cpu_s"])
        results[name] = res
        print(f"  {name:<22} " + "  ".join(f"{ln} {_fmt_rate(res['loops'][ln]['ops_per_cpu_s'])}"
                                           for ln in loops), file=sys.stderr, flush=True)

    print(table(results, loops))
    if not args.no_save:
        save(args.results, {
            "meta": {
                "python": sys.version.split()[0],
                "rounds": args.rounds,
                "scale": args.scale,
                "loops": loops,
                "metric": "operations per process CPU-second, median; each measurement a fresh process",
                "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
            },
            "workloads": results,
        })
    return results


if __name__ == "__main__":
    main()
