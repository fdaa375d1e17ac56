"""The lab's limits (examples/lab/limits.py) against hostile clients, on both front ends.

Each test starts or shares a real lab server (small limits through its command line, so
that every attack is cheap), attacks it with real clients (gql, the websockets library,
raw sockets for malformed frames and slowloris) and checks that the attack is refused or
bounded, that /stats counts it, and that a well-behaved client on the same server - a
subscriber receiving a message every 50 ms - got each of its messages within 1 s meanwhile.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import re
import os
import socket
import sys
import time
import urllib.request
from typing import Any, Dict, List

import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError

sys.path.insert(0, os.path.dirname(__file__))
from test_lab_support import lab_server  # noqa: E402

from examples.lab.limits import Limits, is_limit_error, protocol_problem  # noqa: E402
from examples.lab.schema import Chat, make_schema  # noqa: E402
from examples.lab.server import parse_args  # noqa: E402

WS = "graphql-transport-ws"
SMALL = {
    "--max-query-bytes": 3000,
    "--max-aliases": 5,
    "--max-tokens": 300,
    "--max-body-bytes": 8192,
    "--max-rooms": 5,
    "--max-history": 30,
    "--max-outbound-bytes": 65536,
    "--header-timeout": 1.5,
    "--idle-timeout": 3,
}
SEND = 'mutation($r: String!, $t: String!) { sendMessage(room: $r, author: "t", text: $t) { id } }'


def small_args(**overrides: Any) -> List[str]:
    options = dict(SMALL, **{f"--{k.replace('_', '-')}": v for k, v in overrides.items()})
    return [str(x) for pair in options.items() for x in pair]


@pytest.fixture(scope="module", params=["fastapi", "aiohttp"])
def lab(request):
    with lab_server(server=request.param, extra_args=small_args()) as server:
        yield server


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def counters(lab) -> Dict[str, int]:
    return lab.stats()["limits"]


async def ws_session(lab, **kwargs: Any) -> Any:
    ws = await websockets.connect(lab.ws_url, subprotocols=[WS], max_size=None, **kwargs)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


class Calm:
    """The well-behaved client: a subscriber to its own room, and a sender that posts a
    message every 50 ms and waits (at most 1 s) for the subscriber to get it."""

    def __init__(self, lab, room: str = "calm") -> None:
        self.lab = lab
        self.room = room
        self.delivered = 0
        self.late: List[str] = []

    async def __aenter__(self) -> "Calm":
        subscribers = self.lab.subscribers()
        self.listener = await ws_session(self.lab)
        query = 'subscription($r: String) { messageAdded(room: $r) { text } }'
        await self.listener.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query, "variables": {"r": self.room}}}))
        await asyncio.to_thread(self.lab.wait_for_subscribers, subscribers + 1)
        self.sender = await ws_session(self.lab)
        self.task = asyncio.ensure_future(self._talk())
        await self.wait_for_deliveries(2)
        return self

    async def _talk(self) -> None:
        n = 0
        while True:
            n += 1
            text = f"calm {n}"
            await self.sender.send(json.dumps({"id": str(n), "type": "subscribe",
                                               "payload": {"query": SEND, "variables": {"r": self.room, "t": text}}}))
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(self.listener.recv(), 1.0))
                    if message["type"] == "next" and message["payload"]["data"]["messageAdded"]["text"] == text:
                        break
            except asyncio.TimeoutError:
                self.late.append(text)
                return
            self.delivered += 1
            while json.loads(await self.sender.recv())["type"] != "complete":
                pass
            await asyncio.sleep(0.05)

    async def wait_for_deliveries(self, count: int) -> None:
        target = self.delivered + count
        while self.delivered < target:
            if self.task.done():
                self.task.result()
                raise AssertionError(f"the well-behaved client stopped: late {self.late}")
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                await self.wait_for_deliveries(3)  # still served after the attack
        finally:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            await self.listener.close()
            await self.sender.close()
        assert not self.late, f"messages of the well-behaved client took over 1 s: {self.late}"


LONG_QUERY = '{ messages(room: "%s") { id } }' % ("r" * 3000)  # gql reprints queries: no padding


def alias_query(count: int) -> str:
    return "{" + " ".join(f"a{n}: rooms" for n in range(count)) + "}"


async def raw_post(lab, body: bytes, *, chunked: bool = False, stop_after: int = 0) -> bytes:
    """POSTs body with `Expect: 100-continue`, as curl does with large bodies: the body (or
    only its first stop_after bytes) goes once the server asks for it, so that a server that
    refuses from the headers alone never has unread data that turns its close into a reset."""
    reader, writer = await asyncio.open_connection(lab.host, lab.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = f"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\nExpect: 100-continue\r\n\r\n"
    writer.write(head.encode())
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not answer.startswith(b"HTTP/1.1 100"):
            return answer
        sent = body[:stop_after] if stop_after else body
        if chunked:
            for offset in range(0, len(sent), 4096):
                part = sent[offset : offset + 4096]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            if not stop_after:
                writer.write(b"0\r\n\r\n")
        else:
            writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.transport.abort()


# -- query cost ---------------------------------------------------------------------------


def test_query_size_alias_and_token_limits_refuse_over_http_and_websocket(lab):
    before = counters(lab)["rejected_queries"]

    async def scenario():
        async with Calm(lab):
            async with Client(transport=AIOHTTPTransport(url=lab.url + "/graphql")) as http:
                with pytest.raises(TransportQueryError, match="aliases found"):
                    await http.execute(GraphQLRequest(alias_query(6)))
                with pytest.raises(TransportQueryError, match="more than 300 tokens"):
                    await http.execute(GraphQLRequest("{" + " rooms" * 301 + "}"))
                with pytest.raises(TransportQueryError, match="the limit is 3000"):
                    await http.execute(GraphQLRequest(LONG_QUERY))
                assert await http.execute(GraphQLRequest(alias_query(5)))  # at the limit: served
            for query, expected in [(alias_query(6), "aliases found"), (LONG_QUERY, "the limit is 3000"),
                                    ("{" + " rooms" * 301 + "}", "more than 300 tokens")]:
                ws = await ws_session(lab)
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
                try:
                    answer = json.loads(await ws.recv())
                    assert answer["type"] == "error" and expected in answer["payload"][0]["message"], answer
                except websockets.ConnectionClosed as closed:
                    # Strawberry closes graphql-transport-ws on a syntax error (the token limit is one).
                    assert closed.rcvd.code == 4400 and expected in closed.rcvd.reason
                await ws.close()

    run(scenario())
    assert counters(lab)["rejected_queries"] == before + 6


def test_huge_query_over_websocket_is_refused_before_parsing(lab):
    """The 3.6 MB subscribe message of the review: over the message cap, the socket closes."""

    async def scenario():
        async with Calm(lab):
            ws = await ws_session(lab)
            started = time.monotonic()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": alias_query(260_000)}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None, time.monotonic() - started

    code, _ = run(scenario())
    assert code == 1009  # "message too big" (RFC 6455), from uvicorn and aiohttp alike


@pytest.fixture(scope="module", params=["fastapi", "aiohttp"])
def shallow_lab(request):
    with lab_server(server=request.param, extra_args=small_args(max_depth=0)) as server:
        yield server


def test_depth_limit_refuses_nested_selections(shallow_lab):
    async def scenario():
        async with Client(transport=AIOHTTPTransport(url=shallow_lab.url + "/graphql")) as http:
            with pytest.raises(TransportQueryError, match="exceeds maximum operation depth of 0"):
                await http.execute(GraphQLRequest('{ messages(room: "a") { id } }'))
            started = time.monotonic()
            assert await http.execute(GraphQLRequest("{ rooms }")) == {"rooms": []}  # a well-behaved query
            assert time.monotonic() - started < 1.0

    run(scenario())
    assert counters(shallow_lab)["rejected_queries"] == 1


def test_limiter_messages_are_recognised_for_the_counters():
    """Fails loudly if Strawberry or graphql-core reword the errors /stats counts."""
    limits = Limits(max_depth=0, max_aliases=1, max_tokens=10)
    schema = make_schema(limits)
    chat = Chat(pubsub=None, limits=limits)
    for query in ('{ messages(room: "a") { id } }', "{ a: rooms b: rooms }", "{" + " rooms" * 11 + "}"):
        result = asyncio.run(schema.execute(query, context_value={"chat": chat}))
        assert result.errors and all(is_limit_error(error) for error in result.errors), result.errors
    assert schema.counters.rejected_queries == 3


# -- request bodies -----------------------------------------------------------------------


def test_request_body_over_the_cap_is_413_with_or_without_content_length(lab):
    before = counters(lab)["rejected_bodies"]
    body = json.dumps({"query": "{ rooms }", "variables": {"pad": "x" * 1_000_000}}).encode()

    async def scenario():
        async with Calm(lab):
            # Over the 8 KiB cap: refused from Content-Length alone (FastAPI) or once past it.
            declared = await raw_post(lab, body, stop_after=3 * 4096)
            chunked = await raw_post(lab, body, chunked=True, stop_after=3 * 4096)
            small = await raw_post(lab, json.dumps({"query": "{ rooms }"}).encode())
        return declared, chunked, small

    declared, chunked, small = run(scenario())
    assert declared.startswith(b"HTTP/1.1 413"), declared
    assert chunked.startswith(b"HTTP/1.1 413"), chunked
    assert small.startswith(b"HTTP/1.1 200"), small
    assert counters(lab)["rejected_bodies"] == before + 2


def test_request_body_that_trickles_is_cut_off_with_408(lab):
    before = counters(lab)["rejected_bodies"]

    async def scenario():
        async with Calm(lab):
            reader, writer = await asyncio.open_connection(lab.host, lab.port)
            writer.write(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            closed = await asyncio.wait_for(reader.read(), 10)  # the body, then the end of the connection
            writer.transport.abort()
            return answer, time.monotonic() - started, closed

    answer, waited, closed = run(scenario())
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert waited < 5, waited  # header timeout (which bounds the body too): 1.5 s
    assert b"too slow" in closed
    assert counters(lab)["rejected_bodies"] == before + 1


# -- rooms and history --------------------------------------------------------------------


def test_rooms_and_history_are_capped_and_the_oldest_evicted(lab):
    async def scenario():
        async with Calm(lab, room="calm-rooms"):
            ws = await ws_session(lab)
            for n in range(60):
                room = f"flood{n % 8}"
                await ws.send(json.dumps({"id": str(n), "type": "subscribe",
                                          "payload": {"query": SEND, "variables": {"r": room, "t": f"m{n}"}}}))
                while json.loads(await ws.recv())["type"] != "complete":
                    pass
            await ws.close()

    run(scenario())
    stats = lab.stats()
    assert stats["chat"]["rooms"] <= 5
    assert stats["chat"]["messages"] <= 30
    assert stats["limits"]["rooms_evicted"] >= 3 and stats["limits"]["messages_evicted"] > 0
    request = urllib.request.Request(lab.url + "/graphql", data=json.dumps({"query": "{ rooms }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        rooms = json.loads(response.read())["data"]["rooms"]
    assert len(rooms) <= 5 and "flood3" in rooms  # flood3 got the last message (n = 59)


def test_evicted_messages_are_not_kept_alive():
    """A room evicted whole (or a room over its own cap) leaves no messages behind: what the
    chat references stays within max_history and a quarter."""
    limits = Limits(max_rooms=3, max_history=40)
    chat = Chat(pubsub=None, limits=limits)
    for n in range(5000):
        room = f"r{n % 7}" if n % 3 else "busy"
        chat.store(chat.new_message(room, "a", f"m{n}"))
        assert chat.stored <= 40 and len(chat.rooms()) <= 3
        assert chat.held <= chat.stored + max(16, 40 // 4) + 1
    assert chat.counters.rooms_evicted > 0 and chat.counters.messages_evicted > 0
    # The newest message is kept, in its room.
    assert chat.history("r1", 200)[-1]["text"] == "m4999"  # 4999 % 7 == 1


# -- slow consumers -----------------------------------------------------------------------


def mask_frame(payload: bytes) -> bytes:
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


async def never_reading_subscriber(lab, room: str) -> Any:
    """A subscribed raw socket with a tiny receive buffer that never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((lab.host, lab.port))
    sock.sendall(
        f"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {WS}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the head is consumed
    assert head.startswith(b"HTTP/1.1 101"), head
    query = 'subscription($r: String) { messageAdded(room: $r) { text } }'
    for message in ({"type": "connection_init"},
                    {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"r": room}}}):
        sock.sendall(mask_frame(json.dumps(message).encode()))
    return sock


def read_until_close_frame(sock: socket.socket) -> Any:
    """Reads server frames (unmasked) until a close frame: its (code, reason), or None at EOF."""
    buffer = b""

    def need(n: int) -> bool:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return False
            buffer += chunk
        return True

    while need(2):
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if not need(4):
                return None
            length, offset = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if not need(10):
                return None
            length, offset = int.from_bytes(buffer[2:10], "big"), 10
        if not need(offset + length):
            return None
        payload, buffer = buffer[offset : offset + length], buffer[offset + length :]
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big"), payload[2:].decode()
    return None


@pytest.fixture(scope="module", params=["fastapi", "aiohttp"])
def plain_lab(request):
    """Subscriptions unshared: each one sends through Strawberry's own path."""
    with lab_server(server=request.param, extra_args=["--subscriptions", "plain", *small_args()]) as server:
        yield server


def test_a_client_that_stops_reading_is_closed_with_1008(lab):
    check_slow_consumer_is_closed(lab)


def test_a_client_that_stops_reading_is_closed_with_1008_unshared(plain_lab):
    check_slow_consumer_is_closed(plain_lab)


def check_slow_consumer_is_closed(lab):
    before = counters(lab)
    base = lab.subscribers()

    async def scenario():
        async with Calm(lab):
            slow = await never_reading_subscriber(lab, "slow")
            await asyncio.to_thread(lab.wait_for_subscribers, base + 2)
            ws = await ws_session(lab)
            text = "s" * 2000
            for n in range(2000):  # far more than the 64 KiB cap plus the kernel's buffers
                await ws.send(json.dumps({"id": str(n), "type": "subscribe",
                                          "payload": {"query": SEND, "variables": {"r": "slow", "t": text}}}))
                while json.loads(await ws.recv())["type"] != "complete":
                    pass
                if lab.subscribers() == base + 1:
                    break  # the server dropped the slow subscriber
            await ws.close()
            # Reading now (within the grace period), the client gets its backlog, then the close.
            slow.settimeout(10)
            try:
                return await asyncio.to_thread(read_until_close_frame, slow)
            finally:
                slow.close()

    close = run(scenario(), timeout=120)
    assert close == (1008, "slow consumer: too many queued bytes")
    after = counters(lab)
    assert after["slow_consumers_disconnected"] == before["slow_consumers_disconnected"] + 1
    assert "its client left" in lab.output() and "Traceback" not in lab.output()


# -- slowloris and idle connections -------------------------------------------------------


def test_slowloris_request_head_is_cut_off_after_the_header_timeout(lab):
    before = counters(lab)["header_timeouts"]

    async def scenario():
        async with Calm(lab):
            reader, writer = await asyncio.open_connection(lab.host, lab.port)
            writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            closed_after = None
            while time.monotonic() - started < 10:
                try:
                    writer.write(b"X")
                    await writer.drain()
                    if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                        closed_after = time.monotonic() - started
                        break
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
            writer.transport.abort()
            return closed_after

    closed_after = run(scenario())
    assert closed_after is not None and closed_after < 5, closed_after  # header timeout: 1.5 s
    assert counters(lab)["header_timeouts"] == before + 1


def test_idle_keep_alive_connection_is_closed(lab):
    async def scenario():
        reader, writer = await asyncio.open_connection(lab.host, lab.port)
        writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        try:
            while await asyncio.wait_for(reader.read(1 << 16), 10):
                pass
        except ConnectionError:
            pass
        writer.close()
        return time.monotonic() - started

    idle = run(scenario())
    assert idle < 8, idle  # idle timeout: 3 s


# -- malformed protocol messages ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("[]", "must be a JSON object, not list"),
        ("null", "must be a JSON object, not NoneType"),
        (json.dumps({"id": {}, "type": "subscribe", "payload": {"query": "{ rooms }"}}), "'id' must be a string"),
    ],
    ids=["array", "null", "object-id"],
)
def test_malformed_message_is_closed_with_4400_and_one_log_line(lab, raw, reason):
    before = counters(lab)["malformed_messages"]
    log_before = lab.output()

    async def scenario():
        async with Calm(lab):
            ws = await ws_session(lab)
            await ws.send(raw)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd

    rcvd = run(scenario())
    assert rcvd is not None and rcvd.code == 4400 and reason in rcvd.reason
    assert counters(lab)["malformed_messages"] == before + 1
    new_log = lab.output()[len(log_before):]
    assert new_log.count(reason) == 1 and "Traceback" not in new_log, new_log


def test_protocol_problem_accepts_well_formed_messages():
    assert protocol_problem({"type": "connection_init"}) is None
    assert protocol_problem({"id": "1", "type": "subscribe", "payload": {"query": "{ rooms }", "variables": None}}) is None
    assert protocol_problem({"id": "1", "type": "complete"}) is None
    assert protocol_problem({"id": "1", "type": "subscribe", "payload": {"query": 5}}) is not None
    assert protocol_problem({"type": 3}) is not None


# -- internal errors ----------------------------------------------------------------------


@pytest.mark.parametrize("server", ["fastapi", "aiohttp"])
def test_broker_failure_is_a_generic_error_and_the_message_is_not_stored(server):
    from redis_support import RedisServer

    redis = RedisServer().start()
    try:
        with lab_server(server=server, extra_args=["--redis", redis.url, *small_args()]) as lab:
            redis.stop()

            async def scenario():
                async with Client(transport=AIOHTTPTransport(url=lab.url + "/graphql")) as http:
                    with pytest.raises(TransportQueryError) as failed:
                        await http.execute(GraphQLRequest('mutation { sendMessage(room: "down", author: "a", text: "lost") { id } }'))
                    history = await http.execute(GraphQLRequest('{ messages(room: "down") { text } }'))
                return failed.value.errors, history

            errors, history = run(scenario())
            assert errors[0]["message"] == "the message could not be delivered; try again later"
            assert "redis" not in json.dumps(errors).lower()
            assert history == {"messages": []}
            assert counters(lab)["publish_failures"] == 1
            assert "Traceback" not in lab.output()
    finally:
        redis.close()


@pytest.mark.parametrize("server", ["fastapi", "aiohttp"])
def test_a_publish_slower_than_the_operation_timeout_fails_and_is_not_stored(server):
    import signal

    from redis_support import RedisServer

    redis = RedisServer().start()
    try:
        with lab_server(server=server, extra_args=["--redis", redis.url, *small_args(operation_timeout=1)]) as lab:
            redis.proc.send_signal(signal.SIGSTOP)  # Redis stops answering, the connection stays up
            try:
                async def scenario():
                    async with Client(transport=AIOHTTPTransport(url=lab.url + "/graphql")) as http:
                        started = time.monotonic()
                        with pytest.raises(TransportQueryError) as failed:
                            await http.execute(GraphQLRequest('mutation { sendMessage(room: "slow", author: "a", text: "late") { id } }'))
                        return failed.value.errors, time.monotonic() - started

                errors, waited = run(scenario())
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            assert errors[0]["message"] == "the message could not be delivered; try again later"
            assert waited < 5, waited  # the budget is 1 s
            stats = counters(lab)
            assert stats["timed_out_operations"] == 1 and stats["publish_failures"] == 1
            assert lab.stats()["chat"]["messages"] == 0
    finally:
        redis.close()


# -- command line and the uvicorn internals the limits rely on -----------------------------


def test_every_limit_is_a_command_line_option_with_the_default():
    args = parse_args([])
    assert args.limits == Limits()
    args = parse_args(["--max-rooms", "7", "--header-timeout", "2.5", "--max-depth", "0"])
    assert (args.limits.max_rooms, args.limits.header_timeout, args.limits.max_depth) == (7, 2.5, 0)
    with pytest.raises(SystemExit):
        parse_args(["--max-history", "0"])


def test_uvicorn_still_has_what_the_guarded_protocols_use():
    import uvicorn
    from packaging.specifiers import SpecifierSet

    from examples.lab.uvicorn_protocols import UVICORN_ATTRIBUTES
    from uvcore.uvicorn import UVICORN_TESTED

    assert uvicorn.__version__ in SpecifierSet(",".join(UVICORN_TESTED)), uvicorn.__version__
    for cls, attributes in UVICORN_ATTRIBUTES.items():
        source = inspect.getsource(cls)
        for attribute in attributes:
            assert f"self.{attribute} =" in source or f"self.{attribute}: " in source, (cls, attribute)


def test_the_fan_out_sinks_close_at_the_same_cap():
    """Where the C fan-out (uvcore.uvicorn, uvcore.aiohttp) writes to a connection, its
    per-connection cap is the lab's max_outbound_bytes, with the "close" policy."""
    from examples.lab.app_aiohttp import GuardedFanoutWebSocketResponse
    from examples.lab.limits import Counters
    from examples.lab.uvicorn_protocols import guarded_protocols
    from uvcore.aiohttp import FanoutWebSocketResponse
    from uvcore.strawberry import SINK_FACTORIES
    from uvcore.uvicorn import FanoutWebSocketProtocol

    limits = Limits(max_outbound_bytes=12345)
    _, ws_protocol = guarded_protocols(limits, Counters())
    assert issubclass(ws_protocol, FanoutWebSocketProtocol)
    assert (ws_protocol.fanout_max_queued, ws_protocol.fanout_policy) == (12345, "close")
    _, plain_protocol = guarded_protocols(limits, Counters(), fanout=False)
    assert not issubclass(plain_protocol, FanoutWebSocketProtocol)
    response = GuardedFanoutWebSocketResponse(limits=limits, counters=Counters())
    assert isinstance(response, FanoutWebSocketResponse)
    assert (response._fanout_max_queued, response._fanout_policy) == (12345, "close")
    names = [factory.__name__ for factory in SINK_FACTORIES]
    assert names.index("_fanout_sink") < names.index("_guarded_sink") < names.index("_aiohttp_sink")


def test_every_limit_option_is_documented_in_the_readme_with_its_default():
    from pathlib import Path

    from examples.lab.server import LIMIT_OPTIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    defaults = Limits()
    for name in LIMIT_OPTIONS:
        option = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert re.search(rf"^\| `{option} [NS]` \| `{shown}` \|", readme, re.M), option
