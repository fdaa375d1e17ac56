"""Redis fan-out benchmark: 1 publisher process -> 2 server processes with 1, 100 and 1,000
local subscribers each (each subscriber a task iterating its messages as a dict), through a
real redis-server. Compares three ways of building the servers' subscribers:

  uvcore.PubSub.from_url  one Redis SUBSCRIBE per process, C fan-out of one decoded message
  broadcaster (Redis)     one Redis SUBSCRIBE per process, an asyncio.Queue per subscriber
                          (each subscriber decodes its JSON string)
  redis-py pubsub         naive code: one redis-py PubSub (its own connection and Redis
                          subscription) per subscriber, each decoding its message

The publisher is the same for all three (PUBLISH commands packed in advance and written in
one go, so it outruns every receiving side): only the receiving side differs. Deliveries/s = 2 x subscribers x messages / (last delivery in either server - first
publish), median of --rounds rounds. Merges its results into benchmarks/results.json ("redis").

    python benchmarks/bench_redis.py [--rounds 5] [--subs 1,100,1000] [--loops asyncio,uvloop] [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("uvcore", "broadcaster", "redis-py")
LABELS = {"uvcore": "uvcore.PubSub.from_url", "broadcaster": "broadcaster (Redis)", "redis-py": "redis-py pubsub"}
# Messages per round, by subscribers per server: about 100-200k deliveries per server.
MESSAGES = {1: 20000, 100: 2000, 1000: 200}
PAYLOAD = {"room": "lobby", "author": "ada", "text": "hello from the publisher", "sent_at": 0.0}


# ------------------------------------------------------------------------ server processes


def loop_factory(name):
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "uvcore":
        import uvcore

        return uvcore.new_event_loop
    return asyncio.new_event_loop


async def serve(variant, url, channel, n_subs):
    """Run n_subs subscribers; on "arm M" count deliveries, answer "done <t>" at the last."""
    loop = asyncio.get_running_loop()
    state = {"target": None, "count": 0, "done": None}

    def delivered():
        state["count"] += 1
        if state["count"] == state["target"]:
            state["done"].set_result(time.monotonic())

    tasks, cleanup = [], None
    if variant == "uvcore":
        import uvcore

        bus = uvcore.PubSub.from_url(url)
        await bus.connect()

        async def sub_uvcore(sub):
            async for _msg in sub:  # already a dict, decoded once for all subscribers
                delivered()

        tasks = [loop.create_task(sub_uvcore(bus.subscribe(channel, maxsize=0))) for _ in range(n_subs)]
        await bus.sync()
        cleanup = bus.aclose
    elif variant == "broadcaster":
        from broadcaster import Broadcast

        broadcast = Broadcast(url)
        await broadcast.connect()
        started = 0

        async def sub_broadcaster():
            nonlocal started
            async with broadcast.subscribe(channel=channel) as subscriber:
                started += 1
                async for event in subscriber:
                    json.loads(event.message)
                    delivered()

        # One at a time, as clients arrive: broadcaster 0.3.1 races when several subscribers
        # of a channel start together (each thinks it is the first and replaces the others).
        for i in range(n_subs):
            tasks.append(loop.create_task(sub_broadcaster()))
            while started <= i:
                await asyncio.sleep(0)
        # broadcaster 0.3.1's Redis listener checks redis-py's `subscribed` before the first
        # SUBSCRIBE is recorded, stops, and waits for a wake-up that never comes (redis-py 8):
        # wake it again now that the subscription exists.
        ready = getattr(getattr(broadcast, "_backend", None), "_ready", None)
        if ready is not None:
            ready.set()
        cleanup = broadcast.disconnect
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, max_connections=n_subs + 10)

        async def sub_redis_py(pubsub):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    json.loads(message["data"])
                    delivered()

        pubsubs = []
        for _ in range(n_subs):
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
            pubsubs.append(pubsub)
        tasks = [loop.create_task(sub_redis_py(p)) for p in pubsubs]

        async def cleanup():
            for p in pubsubs:
                await p.aclose()
            await client.aclose()

    print("up", flush=True)
    while True:
        # Control lines (never timed) are read in a thread: any loop can do that.
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        state.update(target=int(line[1]) * n_subs, count=0, done=loop.create_future())
        print("armed", flush=True)
        t_last = await state["done"]
        print(f"done {t_last!r}", flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await cleanup()


async def publish(url):
    """The publisher: on "pub CHANNEL M", prints the start time and sends M messages.

    The PUBLISH commands are packed before the clock starts and written in one go on a plain
    connection (replies read with hiredis), so the publisher outruns every receiving side
    and the figures measure the servers."""
    import hiredis

    parts = url.split("//", 1)[1].split("/", 1)[0]
    host, port = parts.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    replies = hiredis.Reader()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = (await stdin.readline()).decode().split()
        if not line or line[0] == "quit":
            break
        channel, n = line[1].encode(), int(line[2])
        commands = []
        for i in range(n):
            data = json.dumps(dict(PAYLOAD, i=i)).encode()
            commands.append(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                            % (len(channel), channel, len(data), data))
        blob = b"".join(commands)
        t0 = time.monotonic()
        writer.write(blob)
        got = 0
        while got < n:
            replies.feed(await reader.read(1 << 20))
            while replies.gets() is not False:
                got += 1
        print(f"sent {t0!r} {time.monotonic()!r}", flush=True)
    writer.close()


# ------------------------------------------------------------------------ the orchestrator


class Child:
    def __init__(self, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, word):
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"child said {line!r}, expected {word!r} (exit code {self.proc.poll()})")
        return line.split()[1:]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (make deps installs it)")
    port, tmp = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp, "--client-output-buffer-limit", "pubsub 0 0 0", "--maxclients", "10000"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("redis-server did not start")
        time.sleep(0.01)
    return proc, port, tmp


def numsub(port, channel):
    import redis

    client = redis.Redis(port=port)
    try:
        return client.pubsub_numsub(channel)[0][1]
    finally:
        client.close()


def run_case(port, publisher, variant, loop_name, n_subs, n_msgs, rounds):
    url = f"redis://127.0.0.1:{port}/0"
    channel = f"bench.{variant}.{loop_name}.{n_subs}"
    servers = [Child("--role", "server", "--variant", variant, "--url", url, "--channel", channel,
                     "--subs", str(n_subs), "--loop", loop_name) for _ in range(2)]
    try:
        for s in servers:
            s.expect("up")
        expected = 2 * (n_subs if variant == "redis-py" else 1)
        deadline = time.monotonic() + 30
        while numsub(port, channel) != expected:  # every server subscribed at Redis
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant}: Redis has {numsub(port, channel)} subscriptions, expected {expected}")
            time.sleep(0.01)
        rates = []
        for r in range(rounds + 1):  # round 0 warms up (first messages, lazy imports)
            for s in servers:
                s.send(f"arm {n_msgs}")
            for s in servers:
                s.expect("armed")
            publisher.send(f"pub {channel} {n_msgs}")
            t0 = float(publisher.expect("sent")[0])
            t_last = max(float(s.expect("done")[0]) for s in servers)
            if r:
                rates.append(2 * n_subs * n_msgs / (t_last - t0))
        return {"deliveries_per_s": statistics.median(rates), "rounds": rates, "messages": n_msgs}
    finally:
        for s in servers:
            s.close()


def uvcore_loop_can_serve():
    try:
        import uvcore

        loop = uvcore.new_event_loop()
    except Exception:  # noqa: BLE001
        return False
    try:
        async def probe():
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            _, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            w.close()
            server.close()

        loop.run_until_complete(asyncio.wait_for(probe(), 5))
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        loop.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--subs", default="1,100,1000", help="local subscribers per server process")
    ap.add_argument("--loops", default=None, help="loops of the server processes (default asyncio,uvloop"
                                                  " and uvcore once its loop has TCP)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--messages", type=int, default=None, help="messages per round (default: by subscriber count)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, a tenth of the messages")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--role", choices=("server", "publisher"), help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--channel", help=argparse.SUPPRESS)
    ap.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.role == "server":
        loop = loop_factory(args.loop)()
        try:
            loop.run_until_complete(serve(args.variant, args.url, args.channel, int(args.subs)))
        finally:
            loop.close()
        return None
    if args.role == "publisher":
        asyncio.run(publish(args.url))
        return None

    rounds = min(args.rounds, 3) if args.quick else args.rounds
    subs = [int(s) for s in args.subs.split(",")]
    loops = args.loops.split(",") if args.loops else ["asyncio", "uvloop"] + (["uvcore"] if uvcore_loop_can_serve() else [])
    variants = args.variants.split(",")
    redis_proc, port, tmp = start_redis()
    publisher = Child("--role", "publisher", "--url", f"redis://127.0.0.1:{port}/0")
    results = {}
    try:
        for loop_name in loops:
            for n in subs:
                n_msgs = args.messages or MESSAGES.get(n, max(200, 200000 // n))
                if args.quick and not args.messages:
                    n_msgs = max(20, n_msgs // 10)
                for variant in variants:
                    r = run_case(port, publisher, variant, loop_name, n, n_msgs, rounds)
                    results.setdefault(loop_name, {}).setdefault(str(n), {})[variant] = r
                    print(f"  {loop_name:8} {n:>5} subs/server  {LABELS[variant]:24} "
                          f"{r['deliveries_per_s']:>12,.0f} deliveries/s", flush=True)
    finally:
        publisher.close()
        redis_proc.terminate()
        redis_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"1 publisher -> 2 server processes through redis-server; deliveries/s (median of {rounds});"
          " speedup = uvcore.PubSub.from_url / other")
    print("| server loop | subscribers per server | messages | receiving side | deliveries/s | uvcore speedup |")
    print("|" + "---|" * 6)
    for loop_name, by_n in results.items():
        for n, by_variant in by_n.items():
            ours = by_variant.get("uvcore")
            for variant, r in by_variant.items():
                ratio = f"{ours['deliveries_per_s'] / r['deliveries_per_s']:.1f}x" if ours else "-"
                print(f"| {loop_name} | {int(n):,} | {r['messages']:,} | {LABELS[variant]} | "
                      f"{r['deliveries_per_s']:,.0f} | {ratio} |")

    if not args.no_save:
        path = os.path.join(HERE, "results.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            data = {}
        data["redis"] = {"rounds": rounds, "python": sys.version.split()[0], "servers": 2, "results": results}
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
    return results


if __name__ == "__main__":
    main()
