"""Real servers run on uvcore unchanged: uvicorn (through its custom loop setting), aiohttp
`web` (HTTP and WebSocket) and the `websockets` library, each on a free port in a thread of
its own, driven by real clients (http.client, aiohttp's client on stock asyncio, the
websockets sync client) from the test thread. The apps report the loop they run on, so a
silent fallback to asyncio's loop would fail the tests.

UVCORE_TEST_SERVER_LOOP=asyncio (or uvloop) runs the same tests with the servers on that
loop, to check the tests themselves.
"""
import asyncio
import contextlib
import http.client
import json
import os
import socket
import ssl
import threading

import pytest

import uvcore

SERVER_LOOP = os.environ.get("UVCORE_TEST_SERVER_LOOP", "uvcore")
SERVER_LOOP_FACTORY = {
    "uvcore": "uvcore:new_event_loop",
    "asyncio": "asyncio:new_event_loop",
    "uvloop": "uvloop:new_event_loop",
}[SERVER_LOOP]
EXPECTED_LOOP_MODULE = {"uvcore": "uvcore", "asyncio": "asyncio", "uvloop": "uvloop"}[SERVER_LOOP]

pytestmark = [pytest.mark.timeout(120)]

BIG = bytes(range(256)) * 4096  # 1 MiB, not compressible to nothing, order-sensitive


def _new_server_loop():
    module, _, name = SERVER_LOOP_FACTORY.partition(":")
    return getattr(__import__(module), name)()


def _loop_module():
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def _tls_files():
    from test.test_asyncio import utils as aio_test_utils

    return aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY


def _client_tls_context():
    cert, _ = _tls_files()
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False  # the test certificate names "localhost"; we dial 127.0.0.1
    return ctx


@contextlib.contextmanager
def serving(start):
    """Run `await start(info, ready, stop)` on a new server loop in a thread.

    start fills info["port"], sets `ready` once clients may connect, then waits for
    `stop` (an asyncio.Event) and cleans up. Yields info; re-raises server errors."""
    info = {}
    ready = threading.Event()

    async def main():
        info["loop"] = asyncio.get_running_loop()
        info["stop"] = asyncio.Event()
        await start(info, ready, info["stop"])

    def target():
        loop = _new_server_loop()
        try:
            loop.run_until_complete(main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # reported in the test thread
            info["error"] = exc
        finally:
            loop.close()
            ready.set()

    thread = threading.Thread(target=target, name="server-loop", daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    if "error" in info:
        raise info["error"]
    try:
        yield info
    finally:
        loop = info.get("loop")
        with contextlib.suppress(RuntimeError):  # loop already closed after a server error
            loop.call_soon_threadsafe(info["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "server thread did not stop"
    if "error" in info:
        raise info["error"]


# ---- uvicorn ------------------------------------------------------------------------------


async def asgi_app(scope, receive, send):
    """A raw ASGI app: GET / text, GET /loop, POST /echo (streamed body), WS /ws echo."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") == "close":
                await send({"type": "websocket.close", "code": 4001})
                return
            reply = {"type": "websocket.send"}
            if msg.get("bytes") is not None:
                reply["bytes"] = msg["bytes"]
            else:
                reply["text"] = msg["text"]
            await send(reply)
    path = scope["path"]
    body = b""
    if scope["method"] == "POST":
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
    if path == "/loop":
        body = json.dumps({"loop": _loop_module()}).encode()
    elif path == "/echo":
        pass
    else:
        body = b"Hello, world!"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"),
                        (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def uvicorn_server(**config_kwargs):
    """uvicorn's own Server.run with loop="uvcore:new_event_loop", on a pre-bound socket."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi_app, loop=SERVER_LOOP_FACTORY, log_level="warning",
                            lifespan="on", **config_kwargs)
    server = uvicorn.Server(config)
    errors = []

    def target():
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="uvicorn", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"
    assert not errors, errors


def _http(conn, method, path, body=None):
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_uvicorn_serves_http_on_uvcore():
    with uvicorn_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _http(conn, "GET", "/loop") == (200, json.dumps({"loop": EXPECTED_LOOP_MODULE}).encode())
            for _ in range(50):  # keep-alive: one connection, many requests
                assert _http(conn, "GET", "/") == (200, b"Hello, world!")
            status, body = _http(conn, "POST", "/echo", BIG)
            assert status == 200 and body == BIG
        finally:
            conn.close()


def test_uvicorn_command_line_with_uvcore_loop():
    """`uvicorn app --loop uvcore:new_event_loop` as documented in the README, on an inherited
    listening socket (--fd); SIGTERM shuts it down cleanly."""
    import signal
    import subprocess
    import sys

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "test_real_servers:asgi_app", "--app-dir",
           os.path.dirname(os.path.abspath(__file__)), "--fd", str(sock.fileno()),
           "--loop", SERVER_LOOP_FACTORY, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, pass_fds=[sock.fileno()], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sock.close()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _http(conn, "GET", "/loop") == (200, json.dumps({"loop": EXPECTED_LOOP_MODULE}).encode())
            assert _http(conn, "POST", "/echo", BIG) == (200, BIG)
        finally:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.returncode in (0, -signal.SIGTERM), out.decode(errors="replace")
        assert b"Traceback" not in out, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_uvicorn_server_serve_under_uvcore_run():
    """The version-independent way: uvcore.run(uvicorn.Server(config).serve())."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", lifespan="on"))
    errors = []

    def target():
        try:
            if SERVER_LOOP == "uvcore":
                uvcore.run(server.serve(sockets=[sock]))
            else:
                with asyncio.Runner(loop_factory=_new_server_loop) as runner:
                    runner.run(server.serve(sockets=[sock]))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _http(conn, "GET", "/loop") == (200, json.dumps({"loop": EXPECTED_LOOP_MODULE}).encode())
        finally:
            conn.close()
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive() and not errors, errors


def test_uvicorn_serves_concurrent_clients():
    from concurrent.futures import ThreadPoolExecutor

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            payload = str(i).encode() * (i + 1)
            return [_http(conn, "POST", "/echo", payload) == (200, payload) for _ in range(10)]
        finally:
            conn.close()

    with uvicorn_server() as port:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(client, range(32)))
    assert all(all(r) for r in results)


def test_uvicorn_serves_https_on_uvcore():
    cert, key = _tls_files()
    with uvicorn_server(ssl_certfile=cert, ssl_keyfile=key) as port:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=_client_tls_context())
        try:
            assert _http(conn, "GET", "/loop") == (200, json.dumps({"loop": EXPECTED_LOOP_MODULE}).encode())
            status, body = _http(conn, "POST", "/echo", BIG)
            assert status == 200 and body == BIG
        finally:
            conn.close()


def test_uvicorn_websocket_echo_on_uvcore():
    from websockets.sync.client import connect

    with uvicorn_server() as port:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30, max_size=None) as ws:
            ws.send("hello")
            assert ws.recv(timeout=30) == "hello"
            ws.send(BIG)
            assert ws.recv(timeout=30) == BIG
            ws.send("close")
            with pytest.raises(Exception) as excinfo:
                ws.recv(timeout=30)
            assert getattr(excinfo.value, "rcvd", None) is not None and excinfo.value.rcvd.code == 4001


# ---- aiohttp ------------------------------------------------------------------------------


def _aiohttp_app():
    from aiohttp import WSMsgType, web

    async def hello(request):
        return web.Response(text="Hello, world!")

    async def loop_name(request):
        return web.json_response({"loop": _loop_module()})

    async def echo(request):
        return web.Response(body=await request.read())

    async def stream(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(64):
            await resp.write(BIG[i * 16384:(i + 1) * 16384])
        await resp.write_eof()
        return resp

    async def ws_echo(request):
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close":
                    await ws.close(code=4001, message=b"bye")
                else:
                    await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application(client_max_size=4 * len(BIG))
    app.router.add_get("/", hello)
    app.router.add_get("/loop", loop_name)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws_echo)
    return app


def aiohttp_start(ssl_context=None):
    async def start(info, ready, stop):
        from aiohttp import web

        runner = web.AppRunner(_aiohttp_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        info["port"] = runner.addresses[0][1]
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    return start


def test_aiohttp_web_serves_http_on_uvcore():
    import aiohttp

    async def client(port):
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/loop") as r:
                assert await r.json() == {"loop": EXPECTED_LOOP_MODULE}

            async def hello():
                async with session.get(base + "/") as r:
                    assert r.status == 200
                    return await r.text()

            assert await asyncio.gather(*(hello() for _ in range(200))) == ["Hello, world!"] * 200
            async with session.post(f"{base}/echo", data=BIG) as r:
                assert await r.read() == BIG
            async with session.get(f"{base}/stream") as r:
                assert await r.read() == BIG

    with serving(aiohttp_start()) as info:
        asyncio.run(client(info["port"]))


def test_aiohttp_web_serves_https_on_uvcore():
    import aiohttp

    cert, key = _tls_files()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def client(port):
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{port}"
            async with session.get(f"{url}/loop", ssl=_client_tls_context()) as r:
                assert await r.json() == {"loop": EXPECTED_LOOP_MODULE}
            async with session.post(f"{url}/echo", data=BIG, ssl=_client_tls_context()) as r:
                assert await r.read() == BIG

    with serving(aiohttp_start(server_ctx)) as info:
        asyncio.run(client(info["port"]))


def test_aiohttp_websocket_on_uvcore():
    import aiohttp

    async def client(port):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", max_msg_size=0) as ws:
                for i in range(100):
                    await ws.send_str(f"msg {i}")
                for i in range(100):
                    assert await ws.receive_str(timeout=30) == f"msg {i}"
                await ws.send_bytes(BIG)
                assert await ws.receive_bytes(timeout=30) == BIG
                await ws.send_str("close")
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001

    with serving(aiohttp_start()) as info:
        asyncio.run(client(info["port"]))


def test_aiohttp_client_on_uvcore():
    """The other direction: aiohttp's client (create_connection, DNS, keep-alive pool)
    on uvcore against an aiohttp server on the server loop."""
    import aiohttp

    async def client(port):
        async with aiohttp.ClientSession() as session:
            for host in ("127.0.0.1", "localhost"):
                async with session.get(f"http://{host}:{port}/") as r:
                    assert await r.text() == "Hello, world!"
            async with session.post(f"http://127.0.0.1:{port}/echo", data=BIG) as r:
                assert await r.read() == BIG
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                await ws.send_str("ping")
                assert await ws.receive_str(timeout=30) == "ping"
        return _loop_module()

    with serving(aiohttp_start()) as info:
        assert uvcore.run(client(info["port"])) == "uvcore"


# ---- websockets ---------------------------------------------------------------------------


def websockets_start():
    async def start(info, ready, stop):
        from websockets.asyncio.server import serve

        async def handler(ws):
            async for message in ws:
                if message == "loop":
                    await ws.send(_loop_module())
                elif message == "close":
                    await ws.close(code=4001, reason="bye")
                else:
                    await ws.send(message)

        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            info["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await stop.wait()

    return start


def test_websockets_server_on_uvcore():
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with serving(websockets_start()) as info:
        with connect(f"ws://127.0.0.1:{info['port']}", open_timeout=30, max_size=None) as ws:
            ws.send("loop")
            assert ws.recv(timeout=30) == EXPECTED_LOOP_MODULE
            ws.send(BIG)
            assert ws.recv(timeout=30) == BIG
            ws.ping().wait(30)
            ws.send("close")
            with pytest.raises(ConnectionClosed) as excinfo:
                ws.recv(timeout=30)
            assert excinfo.value.rcvd.code == 4001


def test_websockets_server_many_clients():
    from websockets.asyncio.client import connect

    async def one(port, i):
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            for j in range(20):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"
        return i

    async def clients(port):
        return await asyncio.wait_for(asyncio.gather(*(one(port, i) for i in range(50))), 60)

    with serving(websockets_start()) as info:
        assert asyncio.run(clients(info["port"])) == list(range(50))
