"""10,000 connect/close cycles on uvcore's stream transports leave the process flat: RSS,
len(gc.get_objects()) and sys.getallocatedblocks() measured after a warm-up and again after
the cycles stay within generous bounds (one leaked object or buffer per cycle would not).

Each cycle opens a connection, sends a few bytes, gets them echoed and closes both ends,
so reads, writes, close and the server's accept path all run. Variants: Protocol over TCP,
asyncio streams over TCP, Protocol over a Unix socket, and TLS (fewer cycles: handshakes).
"""
import asyncio
import gc
import os
import socket
import ssl
import sys
import tempfile

import pytest

import uvcore

# UVCORE_TEST_SERVER_LOOP=asyncio runs the same cycles on asyncio's loop (checks the test).
LOOP_NAME = os.environ.get("UVCORE_TEST_SERVER_LOOP", "uvcore")
LOOP_FACTORY = {"uvcore": uvcore.new_event_loop, "asyncio": asyncio.new_event_loop}[LOOP_NAME]

pytestmark = [pytest.mark.timeout(300)]

CYCLES = 10_000
WARMUP = 1_000
CONCURRENCY = 16
PAGE = os.sysconf("SC_PAGE_SIZE")
# ASan keeps freed memory in quarantine, so RSS only means something without it.
MAX_RSS_GROWTH = None if os.environ.get("UVCORE_EXPECT_ASAN") else 8 * 1024 * 1024
MAX_OBJECTS_GROWTH = 1_000
MAX_BLOCKS_GROWTH = 5_000


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _snapshot():
    gc.collect()
    gc.collect()
    return _rss(), len(gc.get_objects()), sys.getallocatedblocks()


class EchoOnce(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)
        self.transport.close()


class ClientProto(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.got = b""

    def connection_made(self, transport):
        transport.write(b"ping")

    def data_received(self, data):
        self.got += data

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(self.got)


async def _cycles(n, one):
    for start in range(0, n, CONCURRENCY):
        await asyncio.gather(*(one() for _ in range(min(CONCURRENCY, n - start))))


def _check_flat(cycles, make_one, *, warmup=WARMUP):
    """Run `warmup` then `cycles` cycles on one loop; assert the process stayed flat."""

    async def main():
        one, cleanup = await make_one()
        try:
            await _cycles(warmup, one)
            before = _snapshot()
            await _cycles(cycles, one)
            after = _snapshot()
        finally:
            await cleanup()
        return before, after

    loop = LOOP_FACTORY()
    try:
        before, after = loop.run_until_complete(asyncio.wait_for(main(), 240))
    finally:
        loop.close()
    rss, objects, blocks = (a - b for a, b in zip(after, before))
    report = f"RSS {rss / 1024:+.0f} KiB, gc objects {objects:+d}, allocated blocks {blocks:+d}"
    print(report)
    if MAX_RSS_GROWTH is not None:
        assert rss < MAX_RSS_GROWTH, report
    assert objects < MAX_OBJECTS_GROWTH, report
    assert blocks < MAX_BLOCKS_GROWTH, report


async def _protocol_pair(connect, server):
    async def one():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        transport, _ = await connect(lambda: ClientProto(done))
        assert await done == b"ping"
        transport.close()

    async def cleanup():
        server.close()
        await server.wait_closed()

    return one, cleanup


def test_tcp_protocol_connect_close_cycles_do_not_leak():
    async def make():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoOnce, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return await _protocol_pair(
            lambda f: loop.create_connection(f, "127.0.0.1", port), server
        )

    _check_flat(CYCLES, make)


def test_tcp_streams_connect_close_cycles_do_not_leak():
    async def handle(reader, writer):
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def make():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await reader.read() == b"ping"
            writer.close()
            await writer.wait_closed()

        async def cleanup():
            server.close()
            await server.wait_closed()

        return one, cleanup

    _check_flat(CYCLES, make)


def test_unix_protocol_connect_close_cycles_do_not_leak():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "leak.sock")

        async def make():
            loop = asyncio.get_running_loop()
            server = await loop.create_unix_server(EchoOnce, path)
            return await _protocol_pair(
                lambda f: loop.create_unix_connection(f, path), server
            )

        _check_flat(CYCLES, make)


def test_tls_connect_close_cycles_do_not_leak():
    from test.test_asyncio import utils as aio_test_utils

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY)
    client_ctx = ssl.create_default_context(cafile=aio_test_utils.ONLYCERT)
    client_ctx.check_hostname = False

    async def make():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoOnce, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        return await _protocol_pair(
            lambda f: loop.create_connection(f, "127.0.0.1", port, ssl=client_ctx), server
        )

    _check_flat(2_000, make, warmup=300)


def test_refused_connects_do_not_leak():
    """Failing connects (nothing listening) are a path of their own: errors, no transport."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused

        async def make():
            loop = asyncio.get_running_loop()

            async def one():
                with pytest.raises(OSError):
                    await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

            async def cleanup():
                pass

            return one, cleanup

        _check_flat(CYCLES, make)
