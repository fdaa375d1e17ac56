"""The fan-out sink in real servers, with real clients: uvicorn (uvcore.uvicorn's ws=
protocol class) and aiohttp (uvcore.aiohttp's WebSocketResponse) on uvcore, asyncio and
uvloop; the websockets library's and aiohttp's clients with permessage-deflate negotiated.
Uncompressed broadcast frames interleave with the server's own compressed messages, in
order; closing, slow consumers and TLS (the Python fallback) behave."""
import asyncio
import json
import ssl
from typing import Any, Dict, List

import aiohttp
import pytest
import uvicorn
import websockets
from aiohttp import web
from websockets.asyncio.client import connect

import uvcore
from uvcore.aiohttp import FanoutWebSocketResponse
from uvcore.uvicorn import UVICORN_TESTED, FanoutWebSocketProtocol, fanout_sink
from uvcore.wsfanout import FanoutSink, PyFanoutSink, fanout

pytestmark = pytest.mark.timeout(120)

LOOPS = ["uvcore", "asyncio", "uvloop"]
# message sizes that cross the 7-, 16- and 64-bit length forms, compressed and not
SIZES = [3, 200, 70000, 0, 126, 65536]


def new_loop(name):
    if name == "uvcore":
        return uvcore.new_event_loop()
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(loop_name, coro_fn):
    lp = new_loop(loop_name)
    try:
        return lp.run_until_complete(coro_fn())
    finally:
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


def body(i: int) -> str:
    """Message i: its number and a filler that compresses, sized from SIZES."""
    size = SIZES[i % len(SIZES)]
    return json.dumps({"n": i, "fill": "ab" * (size // 2)})


# -- the app: on "go N" it sends N messages, even ones through the sink, odd ones itself ------


class Hub:
    def __init__(self) -> None:
        self.sinks: List[Any] = []
        self.closed: List[Any] = []
        self.connected = asyncio.Event()


async def interleave(n: int, sink: Any, send_own) -> None:
    for i in range(n):
        text = body(i)
        if i % 2 == 0:
            prefix, rest = text[:5].encode(), text[5:].encode()
            assert fanout(rest, [(sink, prefix)]) == 1
        else:
            await send_own(text)


def asgi_app(hub: Hub):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        sink = fanout_sink(scope)
        assert sink is not None
        hub.sinks.append(sink)
        sink.add_close_callback(lambda s, code: hub.closed.append((s, code)))
        hub.connected.set()
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            cmd, _, arg = msg["text"].partition(" ")
            if cmd == "go":
                await interleave(int(arg), sink, lambda t: send({"type": "websocket.send", "text": t}))
            elif cmd == "close":
                await send({"type": "websocket.close", "code": 1000})
                # the sink closed before the close frame went out
                assert sink.closed and not sink.send(b"", b"late")
                return

    return app


async def start_uvicorn(hub: Hub, protocol=FanoutWebSocketProtocol, ssl_files=None):
    kwargs: Dict[str, Any] = {}
    if ssl_files:
        kwargs = {"ssl_certfile": ssl_files[0], "ssl_keyfile": ssl_files[1]}
    config = uvicorn.Config(asgi_app(hub), host="127.0.0.1", port=0, ws=protocol, loop="none",
                            lifespan="off", log_level="warning", ws_ping_interval=None, **kwargs)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        assert not task.done(), task
    port = server.servers[0].sockets[0].getsockname()[1]

    async def stop():
        server.should_exit = True
        await task

    return port, stop


async def start_aiohttp(hub: Hub, ssl_context=None, **ws_kwargs):
    async def handler(request):
        ws = FanoutWebSocketResponse(**ws_kwargs)
        await ws.prepare(request)
        sink = ws.fanout_sink
        assert sink is not None
        hub.sinks.append(sink)
        sink.add_close_callback(lambda s, code: hub.closed.append((s, code)))
        hub.connected.set()
        async for msg in ws:
            cmd, _, arg = msg.data.partition(" ")
            if cmd == "go":
                await interleave(int(arg), sink, ws.send_str)
            elif cmd == "close":
                await ws.close()
                assert sink.closed and not sink.send(b"", b"late")
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def stop():
        await runner.cleanup()

    return port, stop


SERVERS = {"uvicorn": start_uvicorn, "aiohttp": start_aiohttp}


def expect_sink_type(loop_name, sink, tls=False):
    want = FanoutSink if loop_name == "uvcore" and not tls else PyFanoutSink
    assert type(sink) is want


@pytest.mark.parametrize("server", ["uvicorn", "aiohttp"])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_websockets_client_sees_broadcast_and_compressed_messages_in_order(loop_name, server):
    async def main():
        hub = Hub()
        port, stop = await SERVERS[server](hub)
        async with connect(f"ws://127.0.0.1:{port}/", compression="deflate", max_size=None) as ws:
            assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
            await ws.send("go 60")
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(60)]
            assert [m["n"] for m in got] == list(range(60))
            assert [len(m["fill"]) for m in got] == [len(json.loads(body(i))["fill"]) for i in range(60)]
            expect_sink_type(loop_name, hub.sinks[0])
            assert hub.sinks[0].sent == 30
            await ws.send("close")
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
        for _ in range(20):
            if hub.closed:
                break
            await asyncio.sleep(0.01)
        assert hub.closed == [(hub.sinks[0], None)]
        await stop()

    run(loop_name, main)


@pytest.mark.parametrize("server", ["uvicorn", "aiohttp"])
@pytest.mark.parametrize("loop_name", ["uvcore", "asyncio"])
def test_aiohttp_client_sees_broadcast_and_compressed_messages_in_order(loop_name, server):
    async def main():
        hub = Hub()
        port, stop = await SERVERS[server](hub)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/", compress=15, max_msg_size=0) as ws:
                assert ws.compress > 0  # permessage-deflate negotiated (window bits)
                await ws.send_str("go 60")
                got = [json.loads(await asyncio.wait_for(ws.receive_str(), 10)) for _ in range(60)]
                assert [m["n"] for m in got] == list(range(60))
                await ws.send_str("close")
                msg = await asyncio.wait_for(ws.receive(), 10)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        expect_sink_type(loop_name, hub.sinks[0])
        await stop()

    run(loop_name, main)


@pytest.mark.parametrize("server", ["uvicorn", "aiohttp"])
def test_client_close_closes_the_sink_first(server):
    async def main():
        hub = Hub()
        port, stop = await SERVERS[server](hub)
        ws = await connect(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(hub.connected.wait(), 10)
        sink = hub.sinks[0]
        await ws.close()
        for _ in range(100):
            if hub.closed:
                break
            await asyncio.sleep(0.01)
        assert sink.closed and hub.closed == [(sink, None)]
        assert fanout(b"x", [(sink, b"")]) == 0
        await stop()

    run("uvcore", main)


def test_uvicorn_close_policy_closes_a_slow_consumer_with_1008():
    class SmallCap(FanoutWebSocketProtocol):
        fanout_max_queued = 64 * 1024
        fanout_policy = "close"

    async def main():
        hub = Hub()
        port, stop = await start_uvicorn(hub, SmallCap)
        # a client that reads nothing: its kernel buffers fill, then the server's queue
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 30)
        import base64
        import os

        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        await asyncio.wait_for(hub.connected.wait(), 10)
        sink = hub.sinks[0]
        writer.transport.pause_reading()
        payload = b"p" * 4096
        for _ in range(20000):
            if sink.closed:
                break
            fanout(payload, [(sink, b"")])
            await asyncio.sleep(0)
        assert sink.closed and sink.close_code == 1008
        assert sink.queued == 0
        writer.transport.resume_reading()
        data = await asyncio.wait_for(reader.read(), 20)
        # the last frame is the close frame with 1008
        idx = data.rfind(b"\x88")
        assert data[idx + 2: idx + 4] == (1008).to_bytes(2, "big")
        assert hub.closed == [(sink, 1008)]
        writer.close()
        await stop()

    run("uvcore", main)


def _tls_files():
    from test.test_asyncio import utils as aio_test_utils

    return aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY


@pytest.mark.parametrize("server", ["uvicorn", "aiohttp"])
def test_tls_connections_use_the_python_fallback(server):
    cert, key = _tls_files()

    async def main():
        hub = Hub()
        if server == "uvicorn":
            port, stop = await start_uvicorn(hub, ssl_files=(cert, key))
        else:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            port, stop = await start_aiohttp(hub, ssl_context=ctx)
        client_ctx = ssl.create_default_context(cafile=cert)
        client_ctx.check_hostname = False
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_ctx, max_size=None) as ws:
            await ws.send("go 12")
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(12)]
            assert [m["n"] for m in got] == list(range(12))
            expect_sink_type("uvcore", hub.sinks[0], tls=True)
        await stop()

    run("uvcore", main)


def test_uvicorn_version_is_in_the_tested_range():
    """FanoutWebSocketProtocol overrides WebSocketsSansIOProtocol internals: a uvicorn
    outside the tested range must be checked (and the range moved) before it is trusted."""
    from packaging.specifiers import SpecifierSet

    assert uvicorn.__version__ in SpecifierSet(",".join(UVICORN_TESTED)), uvicorn.__version__
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    for name in ("handle_connect", "data_received", "handle_events", "handle_parser_exception",
                 "keepalive_timeout", "shutdown", "connection_lost", "send"):
        assert callable(getattr(WebSocketsSansIOProtocol, name)), name
    assert websockets.version.version >= "13"


def test_readme_room_example_runs_as_written(free_port):
    """The README's uvicorn room example, run in its own interpreter (port changed): two
    clients join, what one sends both get, wrapped in their own prefix."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = re.search(r"^## WebSocket fan-out\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    [code] = [c for c in re.findall(r"^```python\n(.*?)^```", section, re.S | re.M) if "uvicorn.Config" in c]
    assert "port=8000" in code
    code = code.replace("port=8000", f"port={free_port}, log_level='warning'")
    proc = subprocess.Popen([sys.executable, "-c", code])

    async def main():
        for _ in range(200):
            try:
                a = await connect(f"ws://127.0.0.1:{free_port}/")
                break
            except OSError:
                await asyncio.sleep(0.05)
        b = await connect(f"ws://127.0.0.1:{free_port}/")
        await asyncio.sleep(0.1)
        await a.send('{"text":"hi"}')
        got = sorted([json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in (a, b)], key=lambda m: m["to"])
        assert got == [{"to": "0", "msg": {"text": "hi"}}, {"to": "1", "msg": {"text": "hi"}}]
        await a.close()
        await b.close()

    try:
        run("asyncio", main)
    finally:
        proc.terminate()
        proc.wait(30)
