"""loop.connect_read_pipe / connect_write_pipe: the C stream transport on a uv_pipe_t."""
import asyncio
import gc
import os
import socket
import tempfile
import warnings

import pytest

import uvcore

T = 10  # seconds any single wait may take


class Reader(asyncio.Protocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.got = asyncio.Event()
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def data_received(self, data):
        self.data += data
        self.got.set()

    def eof_received(self):
        self.events.append("eof")
        return True  # ignored by read pipes: they close after EOF anyway

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class Writer(asyncio.BaseProtocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, T))


def test_read_pipe_data_then_eof_then_connection_lost(loop):
    async def main():
        r, w = os.pipe()
        pipe = open(r, "rb", buffering=0)
        tr, proto = await loop.connect_read_pipe(Reader, pipe)
        assert proto.events == ["made"]
        assert tr.get_extra_info("pipe") is pipe
        assert tr.get_extra_info("peername") is None
        assert tr.is_reading() and not tr.is_closing()
        os.write(w, b"hello")
        await proto.got.wait()
        os.close(w)
        assert await proto.lost is None
        assert proto.events == ["made", "eof", "lost"]
        assert bytes(proto.data) == b"hello"
        assert pipe.closed  # closed with the transport, as asyncio does
        assert tr.is_closing()

    run(loop, main())


def test_read_pipe_pause_and_resume_reading(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Reader, open(r, "rb", buffering=0))
        tr.pause_reading()
        assert not tr.is_reading()
        os.write(w, b"x")
        for _ in range(5):  # several loop iterations: nothing may arrive while paused
            await asyncio.sleep(0)
        assert proto.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        await proto.got.wait()
        assert proto.data == b"x"
        tr.close()
        assert await proto.lost is None
        os.close(w)

    run(loop, main())


def test_read_pipe_large_stream_arrives_whole(loop):
    payload = os.urandom(3 * 1024 * 1024)

    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Reader, open(r, "rb", buffering=0))
        wtr, wproto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        wtr.write(payload)
        wtr.close()
        await wproto.lost
        await proto.lost
        assert bytes(proto.data) == payload

    run(loop, main())


def test_write_pipe_flow_control_and_eof(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        assert proto.events == ["made"]
        assert tr.can_write_eof()
        tr.set_write_buffer_limits(high=1024)
        assert tr.get_write_buffer_limits() == (256, 1024)
        tr.write(b"x" * 1024 * 1024)  # more than the pipe holds: the rest is buffered
        assert tr.get_write_buffer_size() > 0
        assert proto.events == ["made", "pause"]
        rp = open(r, "rb", buffering=0)
        reader, rproto = await loop.connect_read_pipe(Reader, rp)
        tr.write_eof()  # a pipe has no half-close: this closes once the buffer is out
        assert tr.is_closing()
        assert await proto.lost is None
        assert "resume" in proto.events
        await rproto.lost
        assert len(rproto.data) == 1024 * 1024

    run(loop, main())


def test_write_pipe_notices_the_reader_closing(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        tr.write(b"1")
        assert os.read(r, 10) == b"1"
        os.close(r)  # without any further write, the transport sees the reader go
        assert await proto.lost is None
        assert tr.is_closing()

    run(loop, main())


def test_write_pipe_reader_gone_with_buffered_data_is_broken_pipe(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        tr.write(b"x" * 1024 * 1024)
        os.close(r)
        exc = await proto.lost
        assert isinstance(exc, BrokenPipeError)

    run(loop, main())


def test_write_pipe_on_a_socket_sees_the_peer_close(loop):
    async def main():
        rsock, wsock = socket.socketpair()
        tr, proto = await loop.connect_write_pipe(Writer, open(wsock.detach(), "wb", buffering=0))
        tr.write(b"abc")
        rsock.setblocking(False)
        assert await loop.sock_recv(rsock, 10) == b"abc"
        rsock.close()
        assert await proto.lost is None

    run(loop, main())


def test_abort_drops_buffered_data(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        tr.write(b"x" * 1024 * 1024)
        tr.abort()
        assert await proto.lost is None
        os.close(r)

    run(loop, main())


def test_regular_files_are_refused(loop):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(ValueError, match="pipes/sockets only"):
            run(loop, loop.connect_read_pipe(asyncio.Protocol, f))
        with pytest.raises(ValueError, match="pipes, sockets and character devices"):
            run(loop, loop.connect_write_pipe(asyncio.Protocol, f))


def test_character_devices_are_accepted_as_asyncio_does(loop):
    async def main():
        import pty

        master, slave = pty.openpty()
        tr, proto = await loop.connect_read_pipe(Reader, open(master, "rb", buffering=0))
        wtr, wproto = await loop.connect_write_pipe(Writer, open(slave, "wb", buffering=0))
        wtr.write(b"tty\n")
        await proto.got.wait()
        assert b"tty" in proto.data
        wtr.close()
        tr.close()
        assert await wproto.lost is None
        assert await proto.lost is None

    run(loop, main())


def test_unpollable_devices_raise_like_asyncio(loop):
    with open(os.devnull, "rb") as f:
        with pytest.raises(PermissionError):
            run(loop, loop.connect_read_pipe(asyncio.Protocol, f))
        assert not f.closed


def test_streams_on_pipes(loop):
    async def main():
        r, w = os.pipe()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), open(r, "rb", buffering=0))
        wt, wp = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(), open(w, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(wt, wp, None, loop)
        writer.write(b"line one\nline two\n")
        await writer.drain()
        assert await reader.readline() == b"line one\n"
        writer.close()
        assert await reader.read() == b"line two\n"

    run(loop, main())


def test_closing_the_loop_with_open_pipes_closes_them(loop):
    r, w = os.pipe()
    rpipe = open(r, "rb", buffering=0)
    wpipe = open(w, "wb", buffering=0)

    async def main():
        await loop.connect_read_pipe(asyncio.Protocol, rpipe)
        await loop.connect_write_pipe(asyncio.BaseProtocol, wpipe)

    run(loop, main())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.close()
        gc.collect()
    assert rpipe.closed and wpipe.closed


def test_pipes_leave_no_fds_behind(loop):
    def nfds():
        return len(os.listdir("/proc/self/fd"))

    async def cycle():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Reader, open(r, "rb", buffering=0))
        wtr, wproto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        wtr.write(b"x")
        wtr.close()
        await proto.lost
        await wproto.lost

    run(loop, cycle())
    before = nfds()
    for _ in range(200):
        run(loop, cycle())
    gc.collect()
    assert nfds() <= before


def test_connect_pipe_on_a_closed_loop_raises(loop):
    r, w = os.pipe()
    loop.close()
    with open(r, "rb") as f, open(w, "wb") as g:
        coro = uvcore.Loop.connect_read_pipe(loop, asyncio.Protocol, f)
        with pytest.raises(RuntimeError, match="closed"):
            coro.send(None)


def test_write_error_is_logged_as_a_pipe_error_in_debug_mode(loop, caplog):
    async def main():
        r, w = os.pipe()
        loop.set_debug(True)
        tr, proto = await loop.connect_write_pipe(Writer, open(w, "wb", buffering=0))
        os.close(r)
        tr.write(b"x")  # the kernel refuses at once: EPIPE
        assert isinstance(await proto.lost, BrokenPipeError)
        loop.set_debug(False)

    with caplog.at_level("DEBUG", logger="asyncio"):
        run(loop, main())
    assert "Fatal write error on pipe transport" in caplog.text


def test_fd_watchers_refuse_a_transports_fd(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Reader, open(r, "rb", buffering=0))
        fd = tr._fileno
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_reader(fd)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(fd)
        with pytest.raises(ValueError, match="Invalid file object"):
            loop.remove_reader(object())
        tr.close()
        await proto.lost
        assert loop.remove_reader(fd) is False  # closed: the fd is nobody's now
        os.close(w)

    run(loop, main())
