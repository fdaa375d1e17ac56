"""Benchmark: the lab server's GraphQL subscriptions over WebSocket, plain vs shared.

N clients (1,000 and 5,000 by default) hold a graphql-transport-ws subscription to one room;
a mutation sends a message and we time its fan-out: deliveries/s, the latency from just
before the mutation is sent to each client's receipt (p50, p99), and the server process's
CPU time per delivery (from /proc). The server is the lab (FastAPI + uvicorn + Strawberry +
uvcore.PubSub) in two modes:

  plain   Strawberry's own router: the selection set runs and is encoded per subscriber
  shared  uvcore.strawberry cohorts: once per event for the room, each client's id spliced
          in front of the shared payload (examples/lab marks messageAdded shared); each
          message sent through the server's own WebSocket send (uvicorn's websockets)
  fanout  shared, and the messages written by uvcore.wsfanout (frames built and written in
          C on uvcore's transports, `transport.write` per frame on asyncio and uvloop)

on asyncio, uvloop and uvcore. One server per (loop, mode), all connected at once; the
rounds go to them in turn, the order rotating every round, so a change in the machine's load
hits every case alike. Each case runs 5 rounds (after a warm-up one); the table shows
medians. Messages are sent one at a time, each when every copy of the previous one arrived.

The load side is benchmarks/ws_subscriber.c (compiled here with cc): N plain WebSocket
connections on one epoll loop, far cheaper per message than the server; its own CPU time is
reported too (client CPU per delivery), and the server's busy share (server CPU time over
wall time) shows whether the server was the one setting the pace.

The server's resident memory per subscribed connection (VmRSS after all N subscribed, minus
before the first connected, over N) is reported too. A size close to 20,000 needs a raised
fd limit: the server holds one fd per subscriber (the script raises the soft limit to the
hard one; where the hard limit is 20,000, 19,500 is the most one server can take).

Run: .venv/bin/python benchmarks/bench_lab.py [--sizes 1000,5000] [--rounds 5] [--modes plain,shared,fanout]
Writes benchmarks/results.json (key "lab") and benchmarks/lab.png.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

LOOPS = ("asyncio", "uvloop", "uvcore")
# mode -> the lab server's arguments for it
MODES: Dict[str, List[str]] = {
    "plain": ["--subscriptions", "plain", "--fanout", "off"],
    "shared": ["--subscriptions", "shared", "--fanout", "off"],
    "fanout": ["--subscriptions", "shared", "--fanout", "on"],
}
# Thousands of clients connect to every server at once: on a busy machine a connection can
# wait longer than the lab's default 10 s for its request head and connection_init (and a
# server longer than 30 s to start).
SERVER_ARGS = ["--header-timeout", "300"]
ROOM = "bench"
SUBSCRIBE = 'subscription { messageAdded(room: "%s") { text } }' % ROOM
SEND = 'mutation($text: String!) { sendMessage(room: "%s", author: "bench", text: $text) { id } }' % ROOM
DELIVERIES_PER_ROUND = 20_000  # messages per round = this / N (at least 5)
KEYS = ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_delivery", "client_cpu_us_per_delivery",
        "server_busy", "server_kib_per_connection")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def subscriber_binary() -> Path:
    """benchmarks/ws_subscriber.c, compiled once into a temporary directory."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("bench_lab needs a C compiler (cc) for its load client, benchmarks/ws_subscriber.c")
    out = Path(tempfile.gettempdir()) / f"uvcore-ws-subscriber-{os.getuid()}"
    source = HERE / "ws_subscriber.c"
    if not out.exists() or out.stat().st_mtime < source.stat().st_mtime:
        subprocess.run([cc, "-O2", "-o", str(out), str(source)], check=True)
    return out


class Case:
    """One lab server (a loop and a mode) and its load client, driven round by round."""

    def __init__(self, stack: contextlib.ExitStack, loop: str, mode: str, n: int, binary: Path) -> None:
        from examples.lab.harness import LabServer

        self.loop, self.mode, self.n = loop, mode, n
        self.server = stack.enter_context(LabServer(server="fastapi", loop=loop, extra_args=MODES[mode] + SERVER_ARGS,
                                                          start_timeout=180))
        served_on = self.server.stats()["loop"]
        if not served_on.startswith(loop):
            raise RuntimeError(f"asked for the {loop} loop, the server ran on {served_on}")
        self.errors = tempfile.TemporaryFile(mode="w+")
        stack.callback(self.errors.close)
        # The server's memory before any subscriber: what each subscribed connection adds is
        # measured against it once all are subscribed.
        self.rss_before = process_rss_bytes(self.server.proc.pid)
        self.kib_per_connection = 0.0
        query = json.dumps(SUBSCRIBE)[1:-1]  # the client pastes it into a JSON string
        self.client = subprocess.Popen(
            [str(binary), self.server.host, str(self.server.port), "/graphql", str(n), query],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
        )
        stack.callback(self.close)

    def line(self) -> str:
        assert self.client.stdout is not None
        line = self.client.stdout.readline()
        if not line:
            self.client.wait()
            self.errors.seek(0)
            raise RuntimeError(f"{self}: load client failed:\n{self.errors.read()[-3000:]}\n"
                               f"{self.server.output()[-3000:]}")
        return line

    def wait_ready(self) -> None:
        if self.line().strip() != "ready":
            raise RuntimeError(f"{self}: the load client did not report ready")
        # Every subscription is live (its cohort's broker subscription too) before the first message.
        self.server.wait_for_subscribers(self.n, timeout=300)
        grown = process_rss_bytes(self.server.proc.pid) - self.rss_before
        self.kib_per_connection = grown / self.n / 1024

    def round(self, round_no: int, messages: int) -> Dict[str, float]:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=120)
        latencies_p50: List[float] = []
        latencies_p99: List[float] = []
        cpu_start = process_cpu_seconds(self.server.proc.pid)
        client_start = process_cpu_seconds(self.client.pid)
        start = time.perf_counter()
        try:
            for i in range(messages):
                text = f"r{round_no}m{i}"
                body = json.dumps({"query": SEND, "variables": {"text": text}})
                sent_at = time.perf_counter()
                conn.request("POST", "/graphql", body, {"content-type": "application/json"})
                response = conn.getresponse()
                reply = json.loads(response.read())
                if not reply.get("data", {}).get("sendMessage"):
                    raise RuntimeError(f"{self}: mutation failed: {reply}")
                arrived = json.loads(self.line())
                if arrived["text"] != text or arrived["count"] != self.n:
                    raise RuntimeError(f"{self}: expected {self.n} copies of {text}, got {arrived}")
                latencies_p50.append(arrived["t_p50"] - sent_at)
                latencies_p99.append(arrived["t_p99"] - sent_at)
        finally:
            conn.close()
        elapsed = time.perf_counter() - start
        server_cpu = process_cpu_seconds(self.server.proc.pid) - cpu_start
        client_cpu = process_cpu_seconds(self.client.pid) - client_start
        deliveries = self.n * messages
        return {
            "deliveries_per_s": deliveries / elapsed,
            "p50_ms": statistics.median(latencies_p50) * 1e3,
            "p99_ms": max(latencies_p99) * 1e3,
            "server_cpu_us_per_delivery": server_cpu * 1e6 / deliveries,
            "client_cpu_us_per_delivery": client_cpu * 1e6 / deliveries,
            "server_busy": server_cpu / elapsed,
            "server_kib_per_connection": self.kib_per_connection,
        }

    def close(self) -> None:
        if self.client.poll() is None:
            try:
                assert self.client.stdin is not None
                self.client.stdin.write("stop\n")
                self.client.stdin.close()
                self.client.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.client.kill()
                self.client.wait()

    def __str__(self) -> str:
        return f"{self.loop}/{self.mode} N={self.n}"


def run_size(loops: List[str], modes: List[str], n: int, rounds: int, messages: Optional[int] = None
             ) -> Dict[Tuple[str, str], Dict[str, Any]]:
    messages = messages or max(5, DELIVERIES_PER_ROUND // n)
    binary = subscriber_binary()
    with contextlib.ExitStack() as stack:
        cases = [Case(stack, loop, mode, n, binary) for mode in modes for loop in loops]
        for case in cases:
            case.wait_ready()
        figures: Dict[Tuple[str, str], List[Dict[str, float]]] = {(c.loop, c.mode): [] for c in cases}
        for round_no in range(rounds + 1):  # round 0 warms up
            shift = round_no % len(cases)
            for case in cases[shift:] + cases[:shift]:
                result = case.round(round_no, messages)
                if round_no:
                    figures[(case.loop, case.mode)].append(result)
    return {
        key: {"n": n, "messages_per_round": messages, "rounds": len(data),
              **{k: statistics.median(r[k] for r in data) for k in KEYS}}
        for key, data in figures.items()
    }


COLORS = {"asyncio": "#9e9e9e", "uvloop": "#4c72b0", "uvcore": "#dd8452"}


def chart(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    series = [(loop, mode) for mode in results["modes"] for loop in LOOPS
              if results["cases"].get(f"{loop}/{mode}")]
    panels = (
        ("deliveries_per_s", "deliveries/s\n(higher is better; log scale)", True),
        ("p99_ms", "p99 latency mutation -> client, ms\n(lower is better; log scale)", True),
        ("server_cpu_us_per_delivery", "server CPU time per delivery, \u00b5s\n(lower is better; log scale)", True),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 5))
    width = 0.8 / max(1, len(series))
    hatches = {"plain": "", "shared": "//", "fanout": "xx"}
    for ax, (key, title, log) in zip(axes, panels):
        for i, (loop, mode) in enumerate(series):
            cases = {c["n"]: c for c in results["cases"][f"{loop}/{mode}"]}
            xs = [j + i * width for j in range(len(sizes))]
            values = [cases[n][key] if n in cases else 0 for n in sizes]
            ax.bar(xs, values, width, label=f"{mode}, {loop}", color=COLORS.get(loop),
                   hatch=hatches.get(mode, ".."), edgecolor="white" if mode == "plain" else "black", linewidth=0.4)
        if log:
            ax.set_yscale("log")
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels([f"{n:,}" for n in sizes])
        ax.set_xlabel("WebSocket subscribers in one room")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(series))
    fig.suptitle("Lab server (FastAPI + uvicorn + Strawberry + uvcore.PubSub): plain (Strawberry), shared "
                 "(uvcore.strawberry cohorts), shared + C fan-out (uvcore.wsfanout), per server loop; "
                 f"median of {results.get('rounds', 5)} rounds", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="subscriber counts (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per case (default %(default)s)")
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--modes", default=",".join(MODES), help="subscription modes (default %(default)s)")
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
    loops = args.loops.split(",")
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    results: Dict[str, Any] = {
        "workload": "N graphql-transport-ws subscribers in one room, one mutation at a time fanned out to all",
        "server": "fastapi+uvicorn, strawberry, uvcore.PubSub; load: benchmarks/ws_subscriber.c",
        "sizes": sizes,
        "modes": modes,
        "cases": {},
        "rounds": args.rounds,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }
    for n in sizes:
        for (loop, mode), case in run_size(loops, modes, n, args.rounds, args.messages).items():
            print(f"{mode:>7} {loop:>8} N={n:>5}: {case['deliveries_per_s']:>9,.0f} deliveries/s  "
                  f"p50 {case['p50_ms']:7.1f} ms  p99 {case['p99_ms']:7.1f} ms  "
                  f"server CPU {case['server_cpu_us_per_delivery']:6.1f} us/delivery "
                  f"(busy {case['server_busy']:.0%}), client {case['client_cpu_us_per_delivery']:.1f} us",
                  flush=True)
            results["cases"].setdefault(f"{loop}/{mode}", []).append(case)

    print()
    print(f"{'mode':>7} {'loop':>8} {'N':>6} {'deliveries/s':>13} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'server us/delivery':>19} {'vs plain':>9} {'server busy':>12} {'client us/delivery':>19}")
    for n in sizes:
        for mode in modes:
            for loop in loops:
                case = next(c for c in results["cases"][f"{loop}/{mode}"] if c["n"] == n)
                plain = next((c for c in results["cases"].get(f"{loop}/plain", []) if c["n"] == n), None)
                ratio = (plain["server_cpu_us_per_delivery"] / case["server_cpu_us_per_delivery"]) if plain else float("nan")
                print(f"{mode:>7} {loop:>8} {n:>6} {case['deliveries_per_s']:>13,.0f} {case['p50_ms']:>8.1f} "
                      f"{case['p99_ms']:>8.1f} {case['server_cpu_us_per_delivery']:>19.1f} {ratio:>8.1f}x "
                      f"{case['server_busy']:>11.0%} {case['client_cpu_us_per_delivery']:>19.2f}")
    print()
    for n in sizes:
        for mode in modes:
            for loop in loops:
                case = next(c for c in results["cases"][f"{loop}/{mode}"] if c["n"] == n)
                print(f"server memory per subscribed connection, {mode}/{loop} N={n}: "
                      f"{case['server_kib_per_connection']:.1f} KiB")
        # The fan-out's own yardstick: shared + C fan-out on uvcore against stock Strawberry
        # (plain) on uvloop, same run.
        fast = next((c for c in results["cases"].get("uvcore/fanout", []) if c["n"] == n), None)
        stock = next((c for c in results["cases"].get("uvloop/plain", []) if c["n"] == n), None)
        if fast and stock:
            print(f"N={n}: uvcore shared + C fan-out vs stock Strawberry on uvloop: "
                  f"{fast['deliveries_per_s'] / stock['deliveries_per_s']:.1f}x deliveries/s, "
                  f"{stock['server_cpu_us_per_delivery'] / fast['server_cpu_us_per_delivery']:.1f}x less server CPU "
                  f"per delivery")
    if not args.no_save:
        save(results, HERE / "results.json")
        chart(results, HERE / "lab.png")
        print(f"wrote {HERE / 'results.json'} (key 'lab') and {HERE / 'lab.png'}")


if __name__ == "__main__":
    main()
