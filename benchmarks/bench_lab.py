"""Benchmark: the lab server's GraphQL subscriptions over WebSocket.

N clients (100, 1,000, 5,000) hold a graphql-transport-ws subscription to one room; a
mutation sends a message and we time its fan-out: deliveries/s and the latency from just
before the mutation is sent to each client's receipt (p50, p99). The server (FastAPI +
uvicorn, uvcore.PubSub) runs on asyncio, uvloop and uvcore in turn, one child process each;
the clients run in another child process (on uvloop), so the load never shares the
server's core. Each (loop, N) pair runs >= 5 rounds; the table shows medians.

Run: .venv/bin/python benchmarks/bench_lab.py [--sizes 100,1000,5000] [--rounds 5]
Writes benchmarks/results.json (key "lab") and benchmarks/lab.png.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
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


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the load process ---------------------------------------------------------------------


async def load(url: str, n: int, messages: int, rounds: int) -> Dict[str, Any]:
    """Runs in the load child: n subscribers, then `rounds` rounds of `messages` mutations,
    each sent when the previous one has reached every subscriber."""
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
    results: Dict[str, Any] = {"rounds": []}
    # A fan-out to thousands of clients can outlast uvicorn's 5 s keep-alive: drop idle
    # connections first, so a mutation never races the server closing its connection.
    connector = aiohttp.TCPConnector(keepalive_timeout=1.0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.wait_for(ready.wait(), 300)
        # Every WebSocket subscription is registered in the broker before the first message.
        while True:
            async with http.get(url + "/stats") as response:
                if (await response.json())["pubsub"]["subscribers"] >= n:
                    break
            await asyncio.sleep(0.01)
        for round_no in range(rounds + 1):  # round 0 warms up
            latencies.clear()
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
            if round_no:
                results["rounds"].append({
                    "deliveries_per_s": n * messages / elapsed,
                    "p50_ms": percentile(latencies, 0.50) * 1e3,
                    "p99_ms": percentile(latencies, 0.99) * 1e3,
                })
    stop.set()
    for client in clients:
        client.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return results


def load_child(argv: List[str]) -> None:
    url, n, messages, rounds = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    raise_fd_limit()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(load(url, n, messages, rounds))))


# -- the parent: servers, load children, the table ----------------------------------------


def run_case(loop: str, n: int, rounds: int, messages: Optional[int] = None) -> Dict[str, Any]:
    from examples.lab.harness import LabServer

    messages = messages or max(5, DELIVERIES_PER_ROUND // n)
    with LabServer(server="fastapi", loop=loop) as server:
        proc = subprocess.run(
            [sys.executable, __file__, "--load-child", server.url, str(n), str(messages), str(rounds)],
            capture_output=True, text=True, timeout=1800, cwd=REPO,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed ({loop}, N={n}):\n{proc.stderr[-3000:]}\n{server.output()[-3000:]}")
        served_on = server.stats()["loop"]
    if not served_on.startswith(loop):
        raise RuntimeError(f"asked for the {loop} loop, the server ran on {served_on}")
    rounds_data = json.loads(proc.stdout)["rounds"]
    return {
        "n": n,
        "messages_per_round": messages,
        "rounds": len(rounds_data),
        "deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in rounds_data),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds_data),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds_data),
    }


def chart(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = [loop for loop in LOOPS if results["loops"].get(loop, {}).get("cases")]
    sizes = results["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(loops))
    for i, loop in enumerate(loops):
        cases = {c["n"]: c for c in results["loops"][loop]["cases"]}
        xs = [j + i * width for j in range(len(sizes))]
        left.bar(xs, [cases[n]["deliveries_per_s"] if n in cases else 0 for n in sizes], width, label=loop)
        right.bar(xs, [cases[n]["p99_ms"] if n in cases else 0 for n in sizes], width, label=loop)
    for ax, title in ((left, "deliveries/s (higher is better)"), (right, "p99 latency mutation -> client, ms (lower is better)")):
        ax.set_xticks([j + width * (len(loops) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels([f"{n:,} subscribers" for n in sizes])
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.suptitle("Lab server: GraphQL subscriptions over WebSocket (FastAPI + Strawberry + uvcore.PubSub)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
    args = parser.parse_args()
    raise_fd_limit()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: Dict[str, Any] = {
        "workload": "N graphql-transport-ws subscribers, one mutation at a time fanned out to all",
        "server": "fastapi+uvicorn, strawberry, uvcore.PubSub",
        "sizes": sizes,
        "loops": {},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
    }
    for loop in args.loops.split(","):
        cases = []
        for n in sizes:
            case = run_case(loop, n, args.rounds, args.messages)
            print(f"{loop:>8} N={n:>5}: {case['deliveries_per_s']:>9,.0f} deliveries/s  "
                  f"p50 {case['p50_ms']:7.1f} ms  p99 {case['p99_ms']:7.1f} ms", flush=True)
            cases.append(case)
        results["loops"][loop] = {"cases": cases}

    base = {c["n"]: c for c in results["loops"].get("asyncio", {}).get("cases", [])}
    print()
    print(f"{'loop':>8} {'N':>6} {'deliveries/s':>13} {'vs asyncio':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for loop, entry in results["loops"].items():
        for case in entry.get("cases", []):
            ratio = case["deliveries_per_s"] / base[case["n"]]["deliveries_per_s"] if case["n"] in base else float("nan")
            print(f"{loop:>8} {case['n']:>6} {case['deliveries_per_s']:>13,.0f} {ratio:>9.2f}x "
                  f"{case['p50_ms']:>8.1f} {case['p99_ms']:>8.1f}")
    if not args.no_save:
        save(results, HERE / "results.json")
        chart(results, HERE / "lab.png")
        print(f"wrote {HERE / 'results.json'} (key 'lab') and {HERE / 'lab.png'}")


if __name__ == "__main__":
    main()
