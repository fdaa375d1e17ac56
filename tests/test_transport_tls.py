"""TLS on uvcore transports (asyncio's SSLProtocol over the C stream transport):
create_server(ssl=), create_connection(ssl=), start_tls on both sides, handshake timeout,
TLS over Unix sockets, extra info."""
import asyncio
import ssl
import sys

import pytest
from test.test_asyncio import utils as aio_test_utils

TIMEOUT = 15


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture
def contexts():
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY)
    client = ssl.create_default_context(cafile=aio_test_utils.ONLYCERT)
    return server, client


async def echo_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_tls_echo_over_tcp(loop, contexts):
    server_ctx, client_ctx = contexts

    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                             server_hostname="localhost")
        payload = bytes(range(256)) * 4000  # 1 MB: many TLS records, flow control
        w.write(payload)
        got = await r.readexactly(len(payload))
        assert got == payload
        assert w.get_extra_info("ssl_object") is not None
        assert w.get_extra_info("peercert")["subject"]
        assert w.get_extra_info("peername")[1] == port
        assert w.get_extra_info("cipher") is not None
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_with_untrusted_certificate_fails(loop, contexts):
    server_ctx, _ = contexts

    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context(),
                                          server_hostname="localhost")
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_handshake_timeout(loop, contexts):
    _, client_ctx = contexts

    async def main():
        # a plain TCP server that never answers the handshake
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises((ConnectionAbortedError, asyncio.TimeoutError)):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx,
                                         server_hostname="localhost", ssl_handshake_timeout=0.2)
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
def test_start_tls_upgrades_both_sides(loop, contexts):
    server_ctx, client_ctx = contexts

    async def handler(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b"secure:" + line)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"STARTTLS\n")
        assert await r.readline() == b"OK\n"
        await w.start_tls(client_ctx, server_hostname="localhost")
        assert w.get_extra_info("ssl_object") is not None
        w.write(b"hello\n")
        assert await r.readline() == b"secure:hello\n"
        w.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_start_tls_argument_checks(loop, contexts):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, pr = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        with pytest.raises(TypeError, match="SSLContext"):
            await loop.start_tls(tr, pr, object())
        with pytest.raises(TypeError, match="not supported by start_tls"):
            await loop.start_tls(object(), pr, contexts[1])
        tr.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_over_unix_socket(loop, contexts, tmp_path):
    server_ctx, client_ctx = contexts
    path = str(tmp_path / "tls.sock")

    async def main():
        server = await asyncio.start_unix_server(echo_handler, path, ssl=server_ctx)
        r, w = await asyncio.open_unix_connection(path, ssl=client_ctx, server_hostname="localhost")
        w.write(b"over unix")
        assert await r.readexactly(9) == b"over unix"
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_loop_start_tls_on_protocol_transports(loop, contexts):
    server_ctx, client_ctx = contexts

    class Plain(asyncio.Protocol):
        def __init__(self):
            self.data = bytearray()
            self.got = asyncio.Event()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.data += data
            self.got.set()

    async def main():
        made = loop.create_future()

        def server_factory():
            p = Plain()
            made.set_result(p)
            return p

        server = await loop.create_server(server_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ctr, cp = await loop.create_connection(Plain, "127.0.0.1", port)
        sp = await made
        server_side = asyncio.ensure_future(
            loop.start_tls(sp.transport, sp, server_ctx, server_side=True))
        client_tls = await loop.start_tls(ctr, cp, client_ctx, server_hostname="localhost")
        server_tls = await server_side
        assert client_tls.get_extra_info("ssl_object") is not None
        client_tls.write(b"over tls")
        while bytes(sp.data) != b"over tls":
            sp.got.clear()
            await sp.got.wait()
        client_tls.close()
        server_tls.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_extra_info_survives_a_server_that_answers_and_closes_at_once(loop, contexts, tmp_path, kind):
    # uvcore may read the reply, the EOF and the close in the poll that ends the handshake,
    # so the connection can be lost before create_connection returns; the caller still sees
    # the socket's addresses (asyncio's SSLProtocol forgets its transport on connection_lost).
    server_ctx, client_ctx = contexts

    async def answer_and_close(reader, writer):
        writer.write(b"bye")
        writer.close()

    async def main():
        if kind == "tcp":
            server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0, ssl=server_ctx)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        else:
            path = str(tmp_path / "s.sock")
            server = await asyncio.start_unix_server(answer_and_close, path, ssl=server_ctx)
            r, w = await asyncio.open_unix_connection(path, ssl=client_ctx, server_hostname="localhost")
        assert await r.read() == b"bye"
        try:
            await w.wait_closed()  # without close(): until the connection is lost
        except (ConnectionError, ssl.SSLError):
            pass  # the server did not wait for a TLS close_notify reply
        sockname, peername = w.get_extra_info("sockname"), w.get_extra_info("peername")
        if kind == "tcp":
            assert sockname[0] == "127.0.0.1" and peername == ("127.0.0.1", port)
        else:
            assert sockname == "" and peername == path
        assert w.get_extra_info("socket") is not None
        w.close()
        server.close()
        await server.wait_closed()

    run(loop, main())
