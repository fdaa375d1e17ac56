"""Benchmark: the lab server's GraphQL subscriptions over WebSocket.

N clients (100, 1,000, 5,000) hold a graphql-transport-ws subscription to one room; a
mutation sends a message and we time its fan-out: deliveries/s and the latency from just
before the mutation is sent to each client's receipt (p50, p99). The server (FastAPI +
uvicorn, uvcore.PubSub) runs on asyncio, uvloop and uvcore: one server process per loop,
each with its own client process (on uvloop), so client work is never the server's. All
are connected at once and the rounds go to the loops in turn, so that the machine's load
changes hit every loop alike.
The server process's own CPU time per delivery (from /proc) is reported too: on a machine
with few cores the single client process can set the pace, and then CPU time is what shows
the server loop's cost. Each (loop, N) pair runs 5 rounds (after a warm-up one); the
table shows medians.

Run: .venv/bin/python benchmarks/bench_lab.py [--sizes 100,1000,5000] [--rounds 5]
Writes benchmarks/results.json (key "lab") and benchmarks/lab.png.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

LOOPS = ("asyncio", "uvloop", "uvcore")
ROOM = "bench"
SUBSCRIBE = 'subscription { messageAdded(room: "%s") { text } }' % ROOM
SEND = 'mutation($text: String!) { sendMessage(room: "%s", author: "bench", text: $text) { id } }' % ROOM
DELIVERIES_PER_ROUND = 20_000  # messages per round = this / N (at least 5)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to charge the server alone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the load process ---------------------------------------------------------------------


async def load(url: str, n: int, messages: int, server_pid: int) -> None:
    """Runs in the load child: connects n subscribers and prints "ready"; then for each "go"
    line on stdin runs one round of `messages` mutations, each sent when the previous one
    has reached every subscriber, and prints the round's figures as a JSON line. Each round
    is also charged the server process's CPU time, which the client side's own speed does
    not distort. Ends on "stop" or end of input."""
    import aiohttp
    import websockets

    ws_url = url.replace("http://", "ws://") + "/graphql"
    sent_at: Dict[str, float] = {}
    received: Dict[str, int] = {}
    complete: Dict[str, asyncio.Event] = {}
    latencies: List[float] = []
    ready = asyncio.Event()
    connected = 0
    stop = asyncio.Event()

    async def subscriber(gate: asyncio.Semaphore) -> None:
        nonlocal connected
        async with gate:
            ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], max_queue=None,
                                          ping_interval=None, open_timeout=60)
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        connected += 1
        if connected == n:
            ready.set()
        try:
            async for raw in ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                if msg["type"] == "next":
                    message_id = msg["payload"]["data"]["messageAdded"]["text"]
                    latencies.append(now - sent_at[message_id])
                    received[message_id] += 1
                    if received[message_id] == n:
                        complete[message_id].set()
                elif msg["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
        except websockets.ConnectionClosed:
            if not stop.is_set():
                raise
        finally:
            await ws.close()

    gate = asyncio.Semaphore(100)  # connections being opened at once
    clients = [asyncio.ensure_future(subscriber(gate)) for _ in range(n)]
    # A fan-out to thousands of clients can outlast uvicorn's 5 s keep-alive: drop idle
    # connections first, so a mutation never races the server closing its connection.
    connector = aiohttp.TCPConnector(keepalive_timeout=1.0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.wait_for(ready.wait(), 300)
        # Every WebSocket subscription is registered in the broker before the first message.
        while True:
            async with http.get(url + "/stats") as response:
                if (await response.json())["subscriptions"] >= n:
                    break
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        round_no = 0
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
            round_no += 1
            latencies.clear()
            cpu_start = process_cpu_seconds(server_pid)
            start = time.perf_counter()
            for i in range(messages):
                text = f"r{round_no}m{i}"
                # Messages are told apart by their text, known before the mutation is sent.
                sent_at[text] = time.perf_counter()
                received[text] = 0
                complete[text] = asyncio.Event()
                async with http.post(url + "/graphql", json={"query": SEND, "variables": {"text": text}}) as response:
                    assert (await response.json())["data"]["sendMessage"]["id"]
                await asyncio.wait_for(complete[text].wait(), 120)
            elapsed = time.perf_counter() - start
            server_cpu = process_cpu_seconds(server_pid) - cpu_start
            print(json.dumps({
                "deliveries_per_s": n * messages / elapsed,
                "p50_ms": percentile(latencies, 0.50) * 1e3,
                "p99_ms": percentile(latencies, 0.99) * 1e3,
                "server_cpu_us_per_delivery": server_cpu * 1e6 / (n * messages),
            }), flush=True)
    stop.set()
    for client in clients:
        client.cancel()
    await asyncio.gather(*clients, return_exceptions=True)


def load_child(argv: List[str]) -> None:
    url, n, messages, server_pid = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    raise_fd_limit()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(load(url, n, messages, server_pid))


# -- the parent: servers, load children, the table ----------------------------------------


class LoadProcess:
    """The load child for one server: started at once, driven round by round."""

    def __init__(self, server: Any, n: int, messages: int) -> None:
        self.server = server
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--load-child", server.url, str(n), str(messages), str(server.proc.pid)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True, cwd=REPO,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:  # the child ended: it raised (a timeout included), say why
            self.proc.wait()
            self.errors.seek(0)
            raise RuntimeError(f"load process failed:\n{self.errors.read()[-3000:]}\n{self.server.output()[-3000:]}")
        return line

    def wait_ready(self) -> None:
        assert self.line().strip() == "ready"

    def round(self) -> Dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.line())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
                self.proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.errors.close()


def run_size(loops: List[str], n: int, rounds: int, messages: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """One server per loop and one load process each, all connected at once; then rounds
    go to the loops in turn (the order rotating every round), so a change in the machine's
    load (shared cores) hits every loop alike. Idle servers and clients cost no CPU."""
    from examples.lab.harness import LabServer

    messages = messages or max(5, DELIVERIES_PER_ROUND // n)
    with contextlib.ExitStack() as stack:
        servers = {loop: stack.enter_context(LabServer(server="fastapi", loop=loop)) for loop in loops}
        for loop, server in servers.items():
            served_on = server.stats()["loop"]
            if not served_on.startswith(loop):
                raise RuntimeError(f"asked for the {loop} loop, the server ran on {served_on}")
        loads = {}
        for loop in loops:
            loads[loop] = LoadProcess(servers[loop], n, messages)
            stack.callback(loads[loop].close)
        for load_process in loads.values():
            load_process.wait_ready()
        per_loop: Dict[str, List[Dict[str, float]]] = {loop: [] for loop in loops}
        for round_no in range(rounds + 1):  # round 0 warms up
            order = loops[round_no % len(loops):] + loops[:round_no % len(loops)]
            for loop in order:
                figures = loads[loop].round()
                if round_no:
                    per_loop[loop].append(figures)
    return {
        loop: {
            "n": n,
            "messages_per_round": messages,
            "rounds": len(data),
            **{key: statistics.median(r[key] for r in data)
               for key in ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_delivery")},
        }
        for loop, data in per_loop.items()
    }


def chart(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = [loop for loop in LOOPS if results["loops"].get(loop, {}).get("cases")]
    sizes = results["sizes"]
    panels = (
        ("deliveries_per_s", "deliveries/s\n(higher is better)", False),
        ("p99_ms", "p99 latency mutation -> client, ms\n(lower is better; log scale)", True),
        ("server_cpu_us_per_delivery", "server CPU time per delivery, \u00b5s\n(lower is better)", False),
    )
    colors = {"asyncio": "#9e9e9e", "uvloop": "#4c72b0", "uvcore": "#dd8452"}
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 4.6))
    width = 0.8 / max(1, len(loops))
    for ax, (key, title, log) in zip(axes, panels):
        for i, loop in enumerate(loops):
            cases = {c["n"]: c for c in results["loops"][loop]["cases"]}
            xs = [j + i * width for j in range(len(sizes))]
            values = [cases[n].get(key, 0) if n in cases else 0 for n in sizes]
            ax.bar(xs, values, width, label=loop, color=colors.get(loop))
        if log:
            ax.set_yscale("log")
        ax.set_xticks([j + width * (len(loops) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels([f"{n:,}" for n in sizes])
        ax.set_xlabel("WebSocket subscribers")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [f"server on {label}" for label in labels], loc="lower center", ncol=len(loops))
    fig.suptitle("Lab server: Strawberry GraphQL subscriptions over WebSocket "
                 "(FastAPI + uvicorn + uvcore.PubSub), server loop compared; median of "
                 f"{results.get('rounds', 5)} rounds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)


def save(results: Dict[str, Any], path: Path) -> None:
    data: Dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data["lab"] = results
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load-child":
        load_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="subscriber counts (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per case (default %(default)s)")
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--messages", type=int, default=None,
                        help=f"messages per round (default: {DELIVERIES_PER_ROUND:,} deliveries / N, at least 5)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results.json and the chart alone")
    parser.add_argument("--chart-only", action="store_true", help="redraw lab.png from results.json, run nothing")
    args = parser.parse_args()
    if args.chart_only:
        chart(json.loads((HERE / "results.json").read_text())["lab"], HERE / "lab.png")
        return
    raise_fd_limit()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: Dict[str, Any] = {
        "workload": "N graphql-transport-ws subscribers, one mutation at a time fanned out to all",
        "server": "fastapi+uvicorn, strawberry, uvcore.PubSub",
        "sizes": sizes,
        "loops": {},
        "rounds": args.rounds,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
    }
    loops = args.loops.split(",")
    for loop in loops:
        results["loops"][loop] = {"cases": []}
    for n in sizes:
        for loop, case in run_size(loops, n, args.rounds, args.messages).items():
            print(f"{loop:>8} N={n:>5}: {case['deliveries_per_s']:>9,.0f} deliveries/s  "
                  f"p50 {case['p50_ms']:7.1f} ms  p99 {case['p99_ms']:7.1f} ms  "
                  f"server CPU {case['server_cpu_us_per_delivery']:6.1f} us/delivery", flush=True)
            results["loops"][loop]["cases"].append(case)

    base = {c["n"]: c for c in results["loops"].get("asyncio", {}).get("cases", [])}
    print()
    print(f"{'loop':>8} {'N':>6} {'deliveries/s':>13} {'vs asyncio':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'server CPU us/delivery':>23}")
    for n in sizes:
        for loop in loops:
            case = next(c for c in results["loops"][loop]["cases"] if c["n"] == n)
            ratio = case["deliveries_per_s"] / base[n]["deliveries_per_s"] if n in base else float("nan")
            print(f"{loop:>8} {n:>6} {case['deliveries_per_s']:>13,.0f} {ratio:>9.2f}x "
                  f"{case['p50_ms']:>8.1f} {case['p99_ms']:>8.1f} {case['server_cpu_us_per_delivery']:>23.1f}")
    if not args.no_save:
        save(results, HERE / "results.json")
        chart(results, HERE / "lab.png")
        print(f"wrote {HERE / 'results.json'} (key 'lab') and {HERE / 'lab.png'}")


if __name__ == "__main__":
    main()
