"""The C stream transport over TCP behaves as asyncio's socket transport: protocol callback
order, half-close, close/abort, flow control, extra info, BufferedProtocol, error reporting."""
import asyncio
import gc
import socket
import weakref

import pytest

import uvcore

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Recorder(asyncio.Protocol):
    """Records every callback in order; `lost` resolves on connection_lost."""

    def __init__(self, loop, keep_open=False):
        self.events = []
        self.data = bytearray()
        self.keep_open = keep_open
        self.transport = None
        self.lost = loop.create_future()
        self.got_data = asyncio.Event()
        self.got_eof = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.events.append("data")
        self.data += data
        self.got_data.set()

    def eof_received(self):
        self.events.append("eof")
        self.got_eof.set()
        return self.keep_open

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


async def pair(loop, server_proto=None, client_proto=None):
    """(server, server-side protocol, client transport, client protocol) on 127.0.0.1."""
    accepted = loop.create_future()
    sp = server_proto or Recorder(loop)

    def factory():
        accepted.set_result(sp)
        return sp

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cp = client_proto or Recorder(loop)
    tr, _ = await loop.create_connection(lambda: cp, "127.0.0.1", port)
    await accepted
    while sp.transport is None:
        await asyncio.sleep(0)
    return server, sp, tr, cp


def test_transport_is_an_asyncio_transport(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(sp.transport, asyncio.Transport)
        assert tr.get_protocol() is cp
        assert "tcp" in repr(tr)
        tr.close()
        await cp.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_connection_made_comes_before_data_and_lost_comes_once(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        tr.write(b"hello")
        await sp.got_data.wait()
        tr.close()
        tr.close()
        assert await cp.lost is None
        assert await sp.lost is None
        assert cp.events == ["made", "lost"]
        assert sp.events == ["made", "data", "eof", "lost"]
        assert bytes(sp.data) == b"hello"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_eof_received_returning_true_keeps_the_transport_half_open(loop):
    async def main():
        server, sp, tr, cp = await pair(loop, server_proto=Recorder(loop, keep_open=True))
        assert tr.can_write_eof()
        tr.write(b"request")
        tr.write_eof()
        await sp.got_eof.wait()
        assert not sp.transport.is_closing()
        sp.transport.write(b"reply after eof")
        sp.transport.close()
        assert await cp.lost is None
        assert bytes(cp.data) == b"reply after eof"
        assert cp.events == ["made", "data", "eof", "lost"]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_write_after_write_eof_raises(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        tr.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            tr.write(b"x")
        tr.close()
        await cp.lost
        server.close()

    run(loop, main())


def test_write_accepts_bytes_like_objects_and_rejects_others(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        buf = bytearray(b"bb")
        tr.write(b"a")
        tr.write(buf)
        buf[:] = b"XX"  # a later change must not alter what was written
        tr.write(memoryview(b"cc"))
        tr.writelines([b"d", bytearray(b"e"), memoryview(b"ff")[1:]])
        tr.write(b"")
        with pytest.raises(TypeError, match="bytes-like"):
            tr.write("text")
        with pytest.raises(TypeError):
            tr.writelines(["text"])
        tr.close()
        await sp.lost
        assert bytes(sp.data) == b"abbccdef"
        server.close()

    run(loop, main())


def test_big_writes_arrive_in_order_and_writelines_does_not_join(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        sp.transport.pause_reading()
        chunks = [bytes([i]) * (2_000_000 + i) for i in range(8)]
        tr.writelines(chunks[:4])
        for c in chunks[4:]:
            tr.write(c)
        assert tr.get_write_buffer_size() > 0  # far more than the socket buffers hold
        sp.transport.resume_reading()
        tr.close()
        await sp.lost
        assert bytes(sp.data) == b"".join(chunks)
        assert tr.get_write_buffer_size() == 0
        server.close()

    run(loop, main())


def test_small_reads_after_big_ones_are_exact_bytes(loop):
    # After a big read the transport reads straight into a new bytes object and shrinks it;
    # what data_received gets must still be exactly the bytes that arrived, as bytes.
    class Chunks(Recorder):
        def __init__(self, loop):
            super().__init__(loop)
            self.chunks = []

        def data_received(self, data):
            super().data_received(data)
            self.chunks.append(data)

    async def main():
        cp = Chunks(loop)
        server, sp, tr, cp = await pair(loop, client_proto=cp)
        big = bytes(range(256)) * 4096  # 1 MiB
        sp.transport.write(big)
        while len(cp.data) < len(big):
            cp.got_data.clear()
            await cp.got_data.wait()
        assert bytes(cp.data) == big
        assert max(len(c) for c in cp.chunks) >= 32 * 1024  # the direct path was taken
        for i in range(5):
            cp.chunks.clear()
            cp.got_data.clear()
            sp.transport.write(b"small%d" % i)
            await cp.got_data.wait()
            assert cp.chunks == [b"small%d" % i]
            assert type(cp.chunks[0]) is bytes
        tr.close()
        await sp.lost
        server.close()

    run(loop, main())


def test_abort_drops_buffered_data_and_calls_connection_lost(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        sp.transport.pause_reading()
        tr.write(b"x" * 10_000_000)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert await cp.lost is None
        sp.transport.close()  # its reading is paused: it cannot see the abort by itself
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_pause_writing_and_resume_writing_follow_the_limits(loop):
    class Flow(Recorder):
        def pause_writing(self):
            self.events.append("pause")

        def resume_writing(self):
            self.events.append("resume")
            self.resumed.set()

    async def main():
        cp = Flow(loop)
        cp.resumed = asyncio.Event()
        server, sp, tr, _ = await pair(loop, client_proto=cp)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        tr.set_write_buffer_limits(high=1000)
        assert tr.get_write_buffer_limits() == (250, 1000)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        sp.transport.pause_reading()
        tr.write(b"y" * 8_000_000)
        assert cp.events[-1] == "pause"
        assert tr._protocol_paused
        sp.transport.resume_reading()
        await cp.resumed.wait()
        assert tr.get_write_buffer_size() <= 100
        tr.close()
        await cp.lost
        server.close()

    run(loop, main())


def test_pause_reading_stops_data_received_until_resume(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        assert sp.transport.is_reading()
        sp.transport.pause_reading()
        sp.transport.pause_reading()  # twice is fine, as in asyncio 3.7+
        assert not sp.transport.is_reading()
        tr.write(b"held")
        # the client's end of a round trip proves the bytes had time to arrive
        for _ in range(20):
            await asyncio.sleep(0)
        assert sp.events == ["made"]
        sp.transport.resume_reading()
        assert sp.transport.is_reading()
        await sp.got_data.wait()
        assert bytes(sp.data) == b"held"
        tr.close()
        await cp.lost
        sp.transport.close()
        assert not sp.transport.is_reading()
        server.close()

    run(loop, main())


def test_extra_info_has_peername_sockname_and_socket(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        port = server.sockets[0].getsockname()[1]
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        sockname = tr.get_extra_info("sockname")
        assert sp.transport.get_extra_info("peername") == sockname
        sock = tr.get_extra_info("socket")
        assert sock.getpeername() == ("127.0.0.1", port)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sp.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert tr.get_extra_info("nothing") is None
        assert tr.get_extra_info("nothing", 42) == 42
        tr.close()
        await cp.lost
        # still known after the socket is gone, as asyncio keeps them
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        server.close()

    run(loop, main())


def test_buffered_protocol_receives_into_its_buffer(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(7)
            self.received = bytearray()
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.received += self.buf[:nbytes]

        def eof_received(self):
            return False

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        sp = Buffered()
        sp.transport = None
        server, _, tr, cp = await pair(loop, server_proto=sp)
        payload = bytes(range(256)) * 100
        tr.write(payload)
        tr.write_eof()
        await sp.lost
        assert bytes(sp.received) == payload
        tr.close()
        server.close()

    run(loop, main())


def test_set_protocol_switches_between_plain_and_buffered(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(100)
            self.received = bytearray()
            self.got = asyncio.Event()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.received += self.buf[:nbytes]
            self.got.set()

    async def main():
        server, sp, tr, cp = await pair(loop)
        b = Buffered()
        sp.transport.set_protocol(b)
        assert sp.transport.get_protocol() is b
        tr.write(b"to buffered")
        await b.got.wait()
        assert bytes(b.received) == b"to buffered"
        tr.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize("callback", ["data_received", "eof_received"])
def test_errors_in_protocol_callbacks_go_to_the_handler_and_close(loop, callback):
    class Broken(Recorder):
        def data_received(self, data):
            if callback == "data_received":
                raise ZeroDivisionError("boom")

        def eof_received(self):
            raise ZeroDivisionError("boom")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        sp = Broken(loop)
        server, _, tr, cp = await pair(loop, server_proto=sp)
        tr.write(b"x")
        tr.write_eof()
        exc = await sp.lost
        assert isinstance(exc, ZeroDivisionError)
        assert len(contexts) == 1
        ctx = contexts[0]
        assert ctx["message"] == f"Fatal error: protocol.{callback}() call failed."
        assert ctx["transport"] is sp.transport
        assert ctx["protocol"] is sp
        await cp.lost
        server.close()

    run(loop, main())


def test_connection_reset_reaches_connection_lost_without_a_report(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        server, sp, tr, cp = await pair(loop)
        sock = tr.get_extra_info("socket")
        # SO_LINGER 0: close sends RST
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sp.transport.write(b"unread")  # so the reset is a reset, not a clean FIN
        await cp.got_data.wait()
        tr.abort()
        exc = await sp.lost
        assert exc is None or isinstance(exc, ConnectionError)
        assert contexts == []
        server.close()

    run(loop, main())


def test_write_after_close_is_dropped_quietly(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        tr.close()
        await cp.lost
        for _ in range(3):
            tr.write(b"late")
        assert tr.is_closing()
        server.close()

    run(loop, main())


def test_closed_transport_is_freed(loop):
    async def main():
        server, sp, tr, cp = await pair(loop)
        ref = weakref.ref(tr)
        tr.close()
        await cp.lost
        await asyncio.sleep(0)
        return server, ref

    server, ref = run(loop, main())
    server.close()
    gc.collect()
    assert ref() is None


def test_protocol_context_is_the_one_of_create_connection(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="outside")

    class Ctx(Recorder):
        def data_received(self, data):
            self.seen = var.get()
            super().data_received(data)

    async def main():
        var.set("inside")
        cp = Ctx(loop)
        server, sp, tr, _ = await pair(loop, client_proto=cp)
        sp.transport.write(b"x")
        await cp.got_data.wait()
        assert cp.seen == "inside"
        tr.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize("failure", ["empty", "raises"])
def test_get_buffer_failure_is_a_fatal_error_not_a_crash(loop, failure):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Bad(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            if failure == "empty":
                return bytearray(0)
            raise ZeroDivisionError

        def buffer_updated(self, nbytes):
            raise AssertionError("no data can arrive")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        sp = Bad()
        server, _, tr, cp = await pair(loop, server_proto=sp)
        tr.write(b"hello")
        exc = await sp.lost
        assert isinstance(exc, RuntimeError if failure == "empty" else ZeroDivisionError)
        assert contexts[0]["message"] == "Fatal error: protocol.get_buffer() call failed."
        tr.close()
        server.close()

    run(loop, main())


def test_transport_methods_from_another_thread_raise(loop):
    import threading

    async def main():
        server, sp, tr, cp = await pair(loop)
        errors = []

        def other_thread():
            for call in (lambda: tr.write(b"x"), tr.close, tr.abort, tr.pause_reading,
                         tr.write_eof, lambda: server.close()):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(str(exc))

        th = threading.Thread(target=other_thread)
        th.start()
        await loop.run_in_executor(None, th.join)
        assert len(errors) == 6
        assert all("Non-thread-safe operation" in e for e in errors)
        assert not tr.is_closing()
        assert server.is_serving()
        tr.close()
        await cp.lost
        server.close()
        await server.wait_closed()

    run(loop, main())
