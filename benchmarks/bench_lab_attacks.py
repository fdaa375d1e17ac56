"""The lab as a hostile client sees it: each attack of the "public chat server" review, run
against a fresh lab server process, with a well-behaved client measuring how long the
server stopped answering meanwhile and psutil sampling the server's memory.

For each attack and front end it reports: the longest time a probe request (GET /stats,
sent every 20 ms from a thread on its own connection) waited for its answer, the server's
peak RSS growth over its idle RSS, and what the attacker saw (status, close code, ...).

Run: .venv/bin/python benchmarks/bench_lab_attacks.py [--attacks a,b] [--servers fastapi,aiohttp]
     [--json out.json]   (the lab's limits are at their defaults: this measures what a user runs)
Not part of `make test`: several attacks take tens of seconds each.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples.lab.harness import LabServer, free_port  # noqa: E402

WS_PROTOCOL = "graphql-transport-ws"


class Probe:
    """A well-behaved client: GET /stats in a loop on a keep-alive connection (own thread),
    and a sampler of the server's RSS. `worst` is the longest wait for one answer."""

    def __init__(self, lab: LabServer) -> None:
        self.lab = lab
        self.proc = psutil.Process(lab.proc.pid)
        self.base_rss = self.proc.memory_info().rss
        self.peak_rss = self.base_rss
        self.worst = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, daemon=True), threading.Thread(target=self._sample, daemon=True)]

    def __enter__(self) -> "Probe":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _poll(self) -> None:
        conn = http.client.HTTPConnection(self.lab.host, self.lab.port, timeout=120)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                conn.request("GET", "/stats")
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection(self.lab.host, self.lab.port, timeout=120)
            self.worst = max(self.worst, time.monotonic() - started)
            self._stop.wait(0.02)
        conn.close()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def result(self) -> Dict[str, Any]:
        return {
            "blocked_s": round(self.worst, 3),
            "rss_growth_mb": round((self.peak_rss - self.base_rss) / 2**20, 1),
            "probe_failures": self.failures,
        }


def alias_query(count: int) -> str:
    return "{" + " ".join(f"a{n}:rooms" for n in range(count)) + "}"


def alias_count_for(size: int) -> int:
    count = size // 12
    while len(alias_query(count)) > size:
        count -= 100
    return count


async def ws_connect(lab: LabServer, **kwargs: Any) -> Any:
    import websockets

    ws = await websockets.connect(lab.ws_url, subprotocols=[WS_PROTOCOL], max_size=None, **kwargs)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def http_post(lab: LabServer, body: bytes, timeout: float = 120) -> Dict[str, Any]:
    reader, writer = await asyncio.open_connection(lab.host, lab.port)
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {lab.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    try:
        writer.write(head)
        for offset in range(0, len(body), 1 << 20):
            writer.write(body[offset : offset + (1 << 20)])
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the server answered (and closed) before taking the whole body: read its answer
    try:
        answer = await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionError, OSError) as exc:
        return {"status": f"connection error: {exc.__class__.__name__}", "s": round(time.monotonic() - started, 2)}
    finally:
        writer.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    body_text = answer.split(b"\r\n\r\n", 1)[-1][:200].decode(errors="replace")
    return {"status": status, "answer": body_text, "s": round(time.monotonic() - started, 2)}


# -- the attacks ---------------------------------------------------------------------------


async def attack_http_aliases(lab: LabServer, server: str) -> Dict[str, Any]:
    """A query with 100,000 aliases (1.4 MB) over HTTP; 968 kB on aiohttp (its 1 MB cap)."""
    size = 1_400_000 if server == "fastapi" else 968_000
    query = alias_query(alias_count_for(size))
    body = json.dumps({"query": query}).encode()
    result = await http_post(lab, body)
    result["query_bytes"] = len(query)
    return result


async def attack_ws_big_query(lab: LabServer, server: str) -> Dict[str, Any]:
    """A 3.6 MB query in one graphql-transport-ws subscribe message."""
    import websockets

    query = alias_query(alias_count_for(3_600_000))
    ws = await ws_connect(lab)
    started = time.monotonic()
    try:
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        answer = await asyncio.wait_for(ws.recv(), 120)
        outcome = f"answer {len(answer)} bytes: {answer[:80]!r}"
    except websockets.ConnectionClosed as exc:
        outcome = f"closed {exc.rcvd.code if exc.rcvd else None} {exc.rcvd.reason if exc.rcvd else ''}"
    finally:
        await ws.close()
    return {"outcome": outcome, "s": round(time.monotonic() - started, 2), "query_bytes": len(query)}


PER_ROOM = 200  # --per-room


async def attack_rooms(lab: LabServer, server: str, rooms: int = 1000) -> Dict[str, Any]:
    """1,000 rooms x 200 messages (--per-room) of 2,000 characters, pipelined over 20 WebSockets."""
    per_room = PER_ROOM
    text = "x" * 2000
    mutation = 'mutation($r: String!, $t: String!) { sendMessage(room: $r, author: "a", text: $t) { id } }'
    connections = 20
    sockets = [await ws_connect(lab, ping_interval=None) for _ in range(connections)]
    jobs = [(f"r{r}", n) for n in range(per_room) for r in range(rooms)]
    errors = 0

    async def worker(ws: Any, mine: List[Any]) -> None:
        nonlocal errors
        window = 50
        sent = done = 0
        while done < len(mine):
            while sent < len(mine) and sent - done < window:
                room, _ = mine[sent]
                sent += 1
                await ws.send(json.dumps({"id": str(sent), "type": "subscribe",
                                          "payload": {"query": mutation, "variables": {"r": room, "t": text}}}))
            message = json.loads(await ws.recv())
            if message["type"] == "complete":
                done += 1
            elif message["type"] == "error" or message.get("payload", {}).get("errors"):
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(ws, jobs[i::connections]) for i, ws in enumerate(sockets)))
    elapsed = time.monotonic() - started
    for ws in sockets:
        await ws.close()
    body = json.dumps({"query": "{ rooms }"}).encode()
    conn = http.client.HTTPConnection(lab.host, lab.port, timeout=60)
    conn.request("POST", "/graphql", body=body, headers={"Content-Type": "application/json"})
    listed = len(json.loads(conn.getresponse().read())["data"]["rooms"])
    conn.close()
    return {"messages": len(jobs), "s": round(elapsed, 1), "errors": errors, "rooms_listed": listed,
            "stats": {k: v for k, v in lab.stats().items() if k not in ("pubsub",)}}


async def attack_big_bodies(lab: LabServer, server: str) -> Dict[str, Any]:
    """Three concurrent 100 MB POSTs."""
    body = b'{"query": "' + b"a" * (100 * 2**20) + b'"}'
    results = await asyncio.gather(*(http_post(lab, body) for _ in range(3)))
    return {"answers": [r["status"] for r in results], "s": max(r["s"] for r in results)}


async def attack_slow_consumers(lab: LabServer, server: str, sockets: int = 50, messages: int = 4000,
                                 seconds: float = 90.0) -> Dict[str, Any]:
    """50 subscribed sockets that never read; 4,000 messages of 2,000 characters (8 MB for
    each socket) sent meanwhile, 20 mutations in flight, or as many as fit in 90 s."""
    subscribers = []
    for n in range(sockets):
        reader, writer = await asyncio.open_connection(lab.host, lab.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write(
            f"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {WS_PROTOCOL}\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        for message in ({"type": "connection_init"},
                        {"id": "1", "type": "subscribe", "payload": {"query": 'subscription { messageAdded(room: "slow") { text } }'}}):
            writer.write(mask_frame(json.dumps(message).encode()))
        subscribers.append((reader, writer))
    await asyncio.to_thread(lab.wait_for_subscribers, sockets)
    text = "y" * 2000
    mutation = 'mutation($t: String!) { sendMessage(room: "slow", author: "a", text: $t) { id } }'
    sender = await ws_connect(lab, ping_interval=None)
    sent = done = 0
    started = time.monotonic()
    while done < messages and time.monotonic() - started < seconds:
        while sent < messages and sent - done < 20:
            sent += 1
            await sender.send(json.dumps({"id": str(sent), "type": "subscribe", "payload": {"query": mutation, "variables": {"t": text}}}))
        if json.loads(await sender.recv())["type"] == "complete":
            done += 1
    elapsed = time.monotonic() - started
    await sender.close()
    remaining = lab.subscribers()
    for _, writer in subscribers:
        writer.transport.abort()
    stats = lab.stats().get("limits", {})
    return {"messages_sent": done, "s": round(elapsed, 1), "subscribers_left": remaining, "sockets": sockets,
            "disconnected": stats.get("slow_consumers_disconnected")}


def mask_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client WebSocket frame (mask 0: the payload goes as is)."""
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


async def attack_slowloris(lab: LabServer, server: str, limit: float = 45.0) -> Dict[str, Any]:
    """Request headers one byte every 2 s: how long does the server keep the connection?"""
    reader, writer = await asyncio.open_connection(lab.host, lab.port)
    started = time.monotonic()
    writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
    try:
        while time.monotonic() - started < limit:
            writer.write(b"X")
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1), 2)
            except asyncio.TimeoutError:
                continue
            if not data:
                break
            break
    except (ConnectionError, OSError):
        pass
    held = time.monotonic() - started
    writer.transport.abort()
    return {"held_s": round(held, 1), "closed_by_server": held < limit}


async def attack_malformed(lab: LabServer, server: str) -> Dict[str, Any]:
    import websockets

    outcomes = {}
    for name, raw in (("array", "[]"), ("null", "null"), ("object id", json.dumps({"id": {}, "type": "subscribe", "payload": {"query": "{rooms}"}}))):
        ws = await ws_connect(lab)
        await ws.send(raw)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            outcomes[name] = "answered"
        except websockets.ConnectionClosed as exc:
            outcomes[name] = f"close {exc.rcvd.code} {exc.rcvd.reason}" if exc.rcvd else "dropped without close frame"
        except asyncio.TimeoutError:
            outcomes[name] = "no answer in 10 s"
        await ws.close()
    await asyncio.sleep(0.5)
    return {"outcomes": outcomes, "tracebacks_in_log": lab.output().count("Traceback")}


async def attack_redis_down(lab: LabServer, server: str) -> Dict[str, Any]:
    conn = http.client.HTTPConnection(lab.host, lab.port, timeout=60)
    lab.redis.stop()
    mutation = 'mutation { sendMessage(room: "down", author: "a", text: "lost?") { id } }'
    conn.request("POST", "/graphql", body=json.dumps({"query": mutation}), headers={"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    conn.request("POST", "/graphql", body=json.dumps({"query": '{ messages(room: "down") { text } }'}),
                 headers={"Content-Type": "application/json"})
    history = json.loads(conn.getresponse().read())
    conn.close()
    message = (answer.get("errors") or [{}])[0].get("message", "")
    return {"error_message": message, "leaks_url": "redis://" in message, "stored": len(history["data"]["messages"])}


async def attack_worst_allowed_query(lab: LabServer, server: str) -> Dict[str, Any]:
    """The costliest query the default limits let through, repeated 20 times: 15 aliases of
    a room's whole history (200 messages of 2,000 characters), about 6 MB of JSON each."""
    text = "z" * 2000
    mutation = 'mutation($t: String!) { sendMessage(room: "big", author: "a", text: $t) { id } }'
    ws = await ws_connect(lab)
    for n in range(200):
        await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": {"query": mutation, "variables": {"t": text}}}))
        while json.loads(await ws.recv())["type"] != "complete":
            pass
    await ws.close()
    query = "{" + " ".join(f'a{n}: messages(room: "big", limit: 200) {{ id room author text sentAt }}' for n in range(15)) + "}"
    body = json.dumps({"query": query}).encode()
    started = time.monotonic()
    sizes = []
    for _ in range(20):
        answer = await http_post(lab, body)
        sizes.append(answer["status"])
    return {"query_bytes": len(query), "answers": sorted(set(sizes)), "s_per_query": round((time.monotonic() - started) / 20, 3)}


ATTACKS: Dict[str, Callable[..., Any]] = {
    "http_aliases": attack_http_aliases,
    "ws_big_query": attack_ws_big_query,
    "rooms": attack_rooms,
    "big_bodies": attack_big_bodies,
    "slow_consumers": attack_slow_consumers,
    "slowloris": attack_slowloris,
    "malformed": attack_malformed,
    "redis_down": attack_redis_down,
    "worst_allowed_query": attack_worst_allowed_query,
}


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(self.port), "--save", "", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_one(attack: str, server: str, extra_args: List[str]) -> Dict[str, Any]:
    redis = Redis() if attack == "redis_down" else None
    args = list(extra_args) + (["--redis", f"redis://127.0.0.1:{redis.port}/0"] if redis else [])
    with LabServer(server=server, extra_args=args) as lab:
        lab.redis = redis
        time.sleep(0.5)  # let the idle RSS settle before the baseline is read
        with Probe(lab) as probe:
            outcome = asyncio.run(ATTACKS[attack](lab, server))
            time.sleep(0.3)
        result = {**probe.result(), **outcome}
        log = lab.output()
        result["log_tracebacks"] = log.count("Traceback")
    if redis and redis.proc.poll() is None:
        redis.stop()
    return result


def main() -> None:
    global PER_ROOM
    parser = argparse.ArgumentParser()
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--servers", default="fastapi,aiohttp")
    parser.add_argument("--json", default=None)
    parser.add_argument("--server-args", default="", help="extra lab options, space separated")
    parser.add_argument("--per-room", type=int, default=PER_ROOM, help="messages per room in the rooms attack")
    args = parser.parse_args()
    PER_ROOM = args.per_room
    results: Dict[str, Any] = {}
    for attack in args.attacks.split(","):
        for server in args.servers.split(","):
            result = run_one(attack, server, args.server_args.split())
            results[f"{attack}/{server}"] = result
            print(f"{attack:15} {server:8} {json.dumps(result)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
