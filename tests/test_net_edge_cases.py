"""Stream transports at their edges, checked on asyncio's loop and on uvcore's side by side so
each expectation is asyncio's own behaviour: buffers mutated right after write(), odd
BufferedProtocol buffers, 400 simultaneous clients, cancelled connects, peer resets, STARTTLS
on streams, abstract Unix sockets, sendfile with offset/count, drain under back-pressure.

Scenarios that used to crash the process (NET_FINDINGS.md F2) run in a child process.
"""
import asyncio
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap

import pytest

import uvcore

LOOPS = ["asyncio", "uvcore"]
pytestmark = pytest.mark.timeout(120)


def run(loop_name, coro_fn, timeout=60):
    loop = uvcore.new_event_loop() if loop_name == "uvcore" else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
    finally:
        loop.close()


class Sink(asyncio.Protocol):
    """Collects everything; `done` resolves with connection_lost's exception."""

    def __init__(self):
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


async def connected_pair():
    """(server, client transport, client Sink, server-side Sink) over TCP on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()

    def factory():
        sink = Sink()
        accepted.set_result(sink)
        return sink

    server = await loop.create_server(factory, "127.0.0.1", 0)
    client = Sink()
    transport, _ = await loop.create_connection(lambda: client, "127.0.0.1", server.sockets[0].getsockname()[1])
    return server, transport, client, await accepted


def _fds():
    return len(os.listdir("/proc/self/fd"))


# ---- write() owns what it was given -------------------------------------------------------


@pytest.mark.parametrize("loop_name", [
    pytest.param("asyncio", marks=pytest.mark.skipif(
        sys.version_info >= (3, 12),
        reason="asyncio 3.12+ queues a view of the caller's buffer instead of a copy")),
    *LOOPS[1:],
])
@pytest.mark.parametrize("wrap", ["bytearray", "memoryview", "writelines"])
def test_buffer_mutated_after_write_is_sent_as_it_was(loop_name, wrap):
    """8 MiB cannot leave at once, so the transport keeps it: uvcore keeps a copy, not a view
    of the caller's mutable buffer (as asyncio did up to 3.11)."""

    async def main():
        server, transport, _, peer = await connected_pair()
        data = bytearray(os.urandom(8 << 20))
        original = bytes(data)
        if wrap == "bytearray":
            transport.write(data)
        elif wrap == "memoryview":
            transport.write(memoryview(data))
        else:
            transport.writelines([data[: 1 << 20], memoryview(data)[1 << 20:]])
        data[:] = bytes(len(data))
        transport.close()
        await peer.done
        server.close()
        return bytes(peer.data) == original

    assert run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_mixed_size_writes_arrive_whole_and_in_order(loop_name):
    async def main():
        server, transport, _, peer = await connected_pair()
        chunks = [os.urandom(n) for n in (1, 100, 65536, 1 << 20, 7, 3 << 20, 0, 5)]
        for chunk in chunks:
            transport.write(chunk)
        transport.close()
        await peer.done
        server.close()
        return bytes(peer.data) == b"".join(chunks)

    assert run(loop_name, main)


# ---- BufferedProtocol ---------------------------------------------------------------------


@pytest.mark.parametrize("loop_name", LOOPS)
def test_buffered_protocol_with_a_three_byte_buffer_gets_everything(loop_name):
    async def main():
        loop = asyncio.get_running_loop()
        got = bytearray()
        done = loop.create_future()

        class Tiny(asyncio.BufferedProtocol):
            def get_buffer(self, sizehint):
                self.buf = bytearray(3)
                return self.buf

            def buffer_updated(self, nbytes):
                got.extend(self.buf[:nbytes])

            def eof_received(self):
                done.set_result(bytes(got))

        server = await loop.create_server(Tiny, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        payload = os.urandom(100_000)
        writer.write(payload)
        writer.write_eof()
        result = await done
        writer.close()
        server.close()
        return result == payload

    assert run(loop_name, main)


_GET_BUFFER_FAILURE = textwrap.dedent(
    """
    import asyncio, sys
    import uvcore

    async def main():
        loop = asyncio.get_running_loop()
        messages = []
        loop.set_exception_handler(lambda l, ctx: messages.append(ctx.get("message")))
        lost = loop.create_future()

        class Bad(asyncio.BufferedProtocol):
            def get_buffer(self, sizehint):
                if sys.argv[2] == "empty":
                    return bytearray(0)
                raise ZeroDivisionError

            def buffer_updated(self, nbytes):
                pass

            def connection_lost(self, exc):
                lost.set_result(exc)

        server = await loop.create_server(Bad, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"hello")
        exc = await asyncio.wait_for(lost, 10)
        writer.close()
        server.close()
        print(type(exc).__name__, messages)

    loop = uvcore.new_event_loop() if sys.argv[1] == "uvcore" else asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    """
)


@pytest.mark.parametrize("how", ["empty", "raises"])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_buffered_get_buffer_failure_is_a_fatal_error_not_a_crash(loop_name, how):
    proc = subprocess.run([sys.executable, "-c", _GET_BUFFER_FAILURE, loop_name, how],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected_exc = "RuntimeError" if how == "empty" else "ZeroDivisionError"
    assert proc.stdout.split()[0] == expected_exc, proc.stdout
    assert "Fatal error: protocol.get_buffer() call failed." in proc.stdout


# ---- many clients, cancelled connects, resets -----------------------------------------------


@pytest.mark.parametrize("loop_name", LOOPS)
def test_four_hundred_simultaneous_stream_clients(loop_name):
    async def main():
        async def handle(reader, writer):
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1000)
        port = server.sockets[0].getsockname()[1]

        async def one(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"%05d" % i)
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            return data == b"%05d" % i

        results = await asyncio.gather(*(one(i) for i in range(400)))
        server.close()
        await server.wait_closed()
        return all(results)

    assert run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_cancelled_create_connection_leaks_no_fd(loop_name):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        before = _fds()
        for i in range(200):
            task = asyncio.ensure_future(loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
            for _ in range(i % 4):  # cancel at different stages of the connect
                await asyncio.sleep(0)
            task.cancel()
            try:
                transport, _ = await task
            except asyncio.CancelledError:
                pass
            else:
                transport.close()
        server.close()
        await server.wait_closed()
        for _ in range(20):
            await asyncio.sleep(0.01)
            if _fds() <= before:
                break
        return _fds() - before

    assert run(loop_name, main) <= 0


@pytest.mark.parametrize("loop_name", LOOPS)
def test_peer_reset_reaches_connection_lost_as_connection_reset(loop_name):
    async def main():
        server, _, client, peer = await connected_pair()
        sock = peer.transport.get_extra_info("socket")
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        peer.transport.abort()  # last fd closed with linger 0: the kernel sends RST
        exc = await client.done
        server.close()
        return type(exc)

    assert run(loop_name, main) is ConnectionResetError


# ---- TLS, Unix, accepted sockets ----------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in Python 3.11")
@pytest.mark.parametrize("loop_name", LOOPS)
def test_starttls_upgrade_on_both_stream_ends(loop_name):
    from test.test_asyncio import utils as aio_test_utils

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY)
    client_ctx = ssl.create_default_context(cafile=aio_test_utils.ONLYCERT)
    client_ctx.check_hostname = False

    async def main():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(client_ctx)
        tls = writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        reply = await reader.read()
        writer.close()
        server.close()
        return tls, reply

    assert run(loop_name, main) == (True, b"SECRET\n")


@pytest.mark.parametrize("loop_name", LOOPS)
def test_abstract_unix_socket_round_trip(loop_name):
    async def main():
        loop = asyncio.get_running_loop()
        name = f"\0uvcore-test-{os.getpid()}-{loop_name}"
        accepted = loop.create_future()

        def factory():
            sink = Sink()
            accepted.set_result(sink)
            return sink

        server = await loop.create_unix_server(factory, name)
        transport, _ = await loop.create_unix_connection(asyncio.Protocol, name)
        transport.write(b"xyz")
        transport.close()
        peer = await accepted
        await peer.done
        server.close()
        await server.wait_closed()
        return bytes(peer.data)

    assert run(loop_name, main) == b"xyz"


@pytest.mark.parametrize("loop_name", LOOPS)
def test_connect_accepted_socket_adopts_a_plain_socket(loop_name):
    async def main():
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            with socket.create_connection(listener.getsockname()) as client:
                conn, _ = listener.accept()
                peer = Sink()
                await loop.connect_accepted_socket(lambda: peer, conn)
                client.sendall(b"abc")
            await peer.done
        return bytes(peer.data)

    assert run(loop_name, main) == b"abc"


# ---- sendfile and back-pressure -------------------------------------------------------------


@pytest.mark.parametrize("loop_name", LOOPS)
def test_sendfile_offset_count_between_writes(loop_name):
    data = os.urandom(3 << 20)

    async def main():
        loop = asyncio.get_running_loop()
        server, transport, _, peer = await connected_pair()
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            f.seek(0)
            transport.write(b"head")
            sent = await loop.sendfile(transport, f, offset=5, count=2 << 20)
            transport.write(b"tail")
            position = f.tell()
        transport.close()
        await peer.done
        server.close()
        return sent, position, bytes(peer.data) == b"head" + data[5:5 + (2 << 20)] + b"tail"

    assert run(loop_name, main) == (2 << 20, 5 + (2 << 20), True)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_drain_waits_for_a_slow_reader_and_then_returns(loop_name):
    async def main():
        gate = asyncio.Event()
        received = []

        async def handle(reader, writer):
            await gate.wait()
            received.append(len(await reader.read()))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.transport.set_write_buffer_limits(high=65536)
        writer.write(b"x" * (16 << 20))
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.1)  # give a wrong drain the chance to finish early
        blocked = not drain.done()
        buffered = writer.transport.get_write_buffer_size() > 0
        gate.set()
        await drain
        writer.close()
        await writer.wait_closed()
        while not received:
            await asyncio.sleep(0.01)
        server.close()
        return blocked, buffered, received

    assert run(loop_name, main) == (True, True, [16 << 20])
