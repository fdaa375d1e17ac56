"""Network benchmark: TCP echo servers (1 KiB, 10 KiB, 100 KiB messages; Protocol-based and
asyncio-streams-based) and an aiohttp `web` hello-world HTTP server, each run on asyncio's
loop, uvloop and uvcore's loop in one run.

Every server runs in a process of its own (pinned to CPU 0 when there are two or more) and is
loaded by a separate client process (pinned to CPU 1): for echo, echo_client.c (built with cc
on first use; a Python epoll client in this file otherwise) keeping one message in flight on
each of several connections; for HTTP, `wrk` (Debian package), else the Python client speaking
keep-alive HTTP/1.1. Rounds are interleaved across loops. Two tables: throughput, and the
server process's CPU time per message (robust when the machine is shared or the client is the
bottleneck). Medians and ratios are merged into benchmarks/results.json under "net".

    python benchmarks/bench_net.py [--rounds 5] [--duration 1.5] [--only echo_protocol_1KiB,...]
"""
import argparse
import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _loops import new_loop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
LOOPS = ("asyncio", "uvloop", "uvcore")
SIZES = {"1KiB": 1024, "10KiB": 10 * 1024, "100KiB": 100 * 1024}
ECHO_CONNS = 10
HTTP_CONNS = 50
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def workloads():
    """name -> (server kind, client kind, message size)"""
    w = {}
    for kind in ("protocol", "streams"):
        for label, size in SIZES.items():
            w[f"echo_{kind}_{label}"] = (f"echo-{kind}", "echo", size)
    w["http_aiohttp_hello"] = ("http", "http", 0)
    return w


# ---- servers (run in their own process: --serve KIND --loop LOOP) ---------------------------


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)


async def echo_streams(reader, writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = await reader.read(262144)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start_server(kind):
    """Start a server of `kind` on 127.0.0.1; return its port."""
    loop = asyncio.get_running_loop()
    if kind == "echo-protocol":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=1024)
        return server.sockets[0].getsockname()[1]
    if kind == "echo-streams":
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0, backlog=1024)
        return server.sockets[0].getsockname()[1]
    if kind == "http":
        from aiohttp import web

        async def hello(request):
            return web.Response(text="Hello, world!")

        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        return runner.addresses[0][1]
    raise ValueError(kind)


def serve_main(kind, loop_name):
    _pin(0)
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    port = loop.run_until_complete(start_server(kind))
    print(f"PORT {port}", flush=True)
    loop.run_forever()  # until the driver's SIGTERM


# ---- the lean client (run in its own process: --client echo|http) -----------------------------


def client_main(mode, port, size, conns, duration, warmup):
    """Drive the server; print {"count": n, "seconds": t} as JSON (messages or requests)."""
    _pin(1)
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    payload = memoryview(HTTP_REQUEST if mode == "http" else b"x" * size)
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        st = {"sock": s, "out": 0, "left": size, "buf": bytearray()}
        by_fd[s.fileno()] = st
        ep.register(s.fileno(), select.EPOLLIN)
    rbuf = bytearray(max(size, 65536))
    rview = memoryview(rbuf)
    count = total = 0
    counting = False
    cl_re = re.compile(rb"content-length:\s*(\d+)", re.I)

    def send_more(st):
        s = st["sock"]
        while st["out"] < len(payload):
            try:
                st["out"] += s.send(payload[st["out"]:])
            except BlockingIOError:
                ep.modify(s.fileno(), select.EPOLLIN | select.EPOLLOUT)
                return
        ep.modify(s.fileno(), select.EPOLLIN)

    def start_message(st):
        st["out"] = 0
        st["left"] = size
        send_more(st)

    for st in by_fd.values():
        start_message(st)
    t_start = time.perf_counter()
    t_measure = t_start + warmup
    t_end = t_measure + duration
    now = t_start
    while now < t_end:
        for fd, ev in ep.poll(0.5):
            st = by_fd[fd]
            if ev & select.EPOLLOUT:
                send_more(st)
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    n = st["sock"].recv_into(rview)
                except BlockingIOError:
                    continue
                if n == 0:
                    raise SystemExit("server closed the connection")
                done = 0
                if mode == "echo":
                    st["left"] -= n
                    if st["left"] <= 0:
                        done = 1
                else:
                    buf = st["buf"]
                    buf += rview[:n]
                    while True:
                        end = buf.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        m = cl_re.search(buf, 0, end)
                        total = end + 4 + (int(m.group(1)) if m else 0)
                        if len(buf) < total:
                            break
                        del buf[:total]
                        done += 1
                if done:
                    total += done
                    if counting:
                        count += done
                    start_message(st)
        now = time.perf_counter()
        if not counting and now >= t_measure:
            counting = True
            count = 0
            t_measure = now
    elapsed = time.perf_counter() - t_measure
    for s in socks:
        s.close()
    print(json.dumps({"count": count, "seconds": elapsed, "total": total}))


# ---- driver ----------------------------------------------------------------------------------


def _pin(cpu):
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


class ServerProcess:
    def __init__(self, kind, loop_name):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", kind, "--loop", loop_name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"{kind} server on {loop_name} did not start: {line!r} {err[-2000:]}")
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _cpu_seconds(pid):
    """User + system CPU time of process pid so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def c_echo_client():
    """Path of the compiled C echo client (built on first use), or None without a compiler."""
    src = os.path.join(HERE, "echo_client.c")
    exe = os.path.join(HERE, os.pardir, "build", "bench", "echo_client")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
        return exe
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    res = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
    return exe if res.returncode == 0 else None


def run_client(client, server, size, duration, warmup):
    """One measurement against `server`: (messages or requests per second, server CPU
    microseconds per message over the whole client run)."""
    port = server.port
    cpu0 = _cpu_seconds(server.proc.pid)
    if client == "http" and shutil.which("wrk"):
        cmd = ["wrk", "-t1", f"-c{HTTP_CONNS}", f"-d{max(1, round(duration + warmup))}s",
               f"http://127.0.0.1:{port}/"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: _pin(1)).stdout
        m = re.search(r"Requests/sec:\s*([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        if not m or not total or "Non-2xx" in out:
            raise RuntimeError(f"wrk failed:\n{out}")
        rate, total = float(m.group(1)), int(total.group(1))
    else:
        exe = c_echo_client() if client == "echo" else None
        if exe is not None:
            cmd = [exe, str(port), str(size), str(ECHO_CONNS), str(duration), str(warmup)]
        else:
            conns = HTTP_CONNS if client == "http" else ECHO_CONNS
            cmd = [sys.executable, os.path.abspath(__file__), "--client", client, "--port", str(port),
                   "--size", str(size), "--conns", str(conns), "--duration", str(duration),
                   "--warmup", str(warmup)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: _pin(1))
        if out.returncode != 0:
            raise RuntimeError(f"client failed: {out.stderr[-2000:]}")
        r = json.loads(out.stdout)
        rate, total = r["count"] / r["seconds"], r["total"]
    cpu = _cpu_seconds(server.proc.pid) - cpu0
    return rate, cpu / max(total, 1) * 1e6


def available_loops():
    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        loops.append("uvloop")
    except ImportError:
        pass
    import uvcore

    if uvcore.Loop.create_server is not asyncio.AbstractEventLoop.create_server:
        loops.append("uvcore")
    return loops


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=1.5, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--only", help="comma-separated workload names")
    p.add_argument("--loops", help="comma-separated loops (default: all available)")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--loop", help=argparse.SUPPRESS)
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--conns", type=int, default=ECHO_CONNS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve_main(args.serve, args.loop)
    if args.client:
        return client_main(args.client, args.port, args.size, args.conns, args.duration, args.warmup)

    loops = args.loops.split(",") if args.loops else available_loops()
    missing = [name for name in LOOPS if name not in loops]
    chosen = workloads()
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    http_client = "wrk -t1 -c%d" % HTTP_CONNS if shutil.which("wrk") else f"Python epoll client, {HTTP_CONNS} conns"
    echo_client = "C epoll client" if c_echo_client() else "Python epoll client"
    print(f"net benchmark: {args.rounds} rounds x {args.duration}s per server; echo: {echo_client}, "
          f"{ECHO_CONNS} connections, 1 message in flight each; HTTP: {http_client}; "
          "(us) = server CPU per message", flush=True)
    if missing:
        print(f"(not available, skipped: {', '.join(missing)})")

    results = {}
    for name, (kind, client, size) in chosen.items():
        servers = {}
        try:
            for loop_name in loops:
                servers[loop_name] = ServerProcess(kind, loop_name)
            runs = {loop_name: [] for loop_name in loops}
            cpu = {loop_name: [] for loop_name in loops}
            for _ in range(args.rounds):
                for loop_name in loops:
                    rate, us = run_client(client, servers[loop_name], size, args.duration, args.warmup)
                    runs[loop_name].append(rate)
                    cpu[loop_name].append(us)
        finally:
            for server in servers.values():
                server.stop()
        unit = "req/s" if client == "http" else "msg/s"
        results[name] = {
            loop_name: {"median": statistics.median(r), "rounds": r, "unit": unit,
                        "server_cpu_us_per_msg": statistics.median(cpu[loop_name]),
                        **({"MiB_per_s": statistics.median(r) * size / 2**20} if size else {})}
            for loop_name, r in runs.items()
        }
        print(_row(name, results[name], loops), flush=True)

    print()
    print(tables(results, loops))
    if not args.no_save:
        _save(results, args, loops)


def _row(name, res, loops):
    cells = "  ".join(
        f"{n} {res[n]['median']:>9,.0f} ({res[n]['server_cpu_us_per_msg']:5.1f} us)" for n in loops
    )
    return f"{name:<22} {cells}"


def _table(results, loops, key, title, fmt, higher_is_better):
    head = f"| {title} | " + " | ".join(loops)
    ratios = [other for other in ("asyncio", "uvloop") if other in loops and "uvcore" in loops]
    head += "".join(f" | uvcore vs {other}" for other in ratios) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, res in results.items():
        row = f"| {name} | " + " | ".join(fmt.format(res[n][key]) for n in loops)
        for other in ratios:
            ours, theirs = res["uvcore"][key], res[other][key]
            ratio = ours / theirs if higher_is_better else theirs / ours
            row += f" | {ratio:.2f}x"
        lines.append(row + " |")
    return "\n".join(lines)


def tables(results, loops):
    return (
        _table(results, loops, "median", "throughput (msg/s; req/s for HTTP)", "{:,.0f}", True)
        + "\n\n"
        + _table(results, loops, "server_cpu_us_per_msg", "server CPU per message (us)", "{:.1f}", False)
    )


def _save(results, args, loops):
    try:
        with open(RESULTS) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    data["net"] = {
        "meta": {
            "python": sys.version.split()[0],
            "rounds": args.rounds,
            "duration_s": args.duration,
            "loops": loops,
            "echo_connections": ECHO_CONNS,
            "echo_client": "c" if c_echo_client() else "python",
            "http_client": "wrk" if shutil.which("wrk") else "python",
            "http_connections": HTTP_CONNS,
            "cpus": os.cpu_count(),
        },
        "workloads": results,
    }
    with open(RESULTS, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
