"""Pipe transports are one-way, as asyncio's: the read end has no write methods at all
(AttributeError), the write end's reading methods are asyncio.ReadTransport's
(NotImplementedError). A wrong-direction call changes nothing: the transport stays open and a
child's output is kept. Every test runs on asyncio's loop too, which defines the behaviour."""
import asyncio
import os
import subprocess
import sys

import pytest

import uvcore

WRITE_SIDE = {
    "write": (b"x",),
    "writelines": ([b"x"],),
    "write_eof": (),
    "can_write_eof": (),
    "get_write_buffer_size": (),
    "get_write_buffer_limits": (),
    "set_write_buffer_limits": (),
    "abort": (),
}
READ_SIDE = ["pause_reading", "resume_reading", "is_reading"]


@pytest.fixture(params=["uvcore", "asyncio"])
def any_loop(request):
    lp = uvcore.new_event_loop() if request.param == "uvcore" else asyncio.new_event_loop()
    yield lp
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


async def pipe_pair(loop):
    r, w = os.pipe()
    rt, rp = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", 0))
    wt, wp = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
    return rt, wt


@pytest.mark.parametrize("method", sorted(WRITE_SIDE))
def test_read_pipe_has_no_write_methods(any_loop, method):
    async def main():
        rt, wt = await pipe_pair(any_loop)
        assert not hasattr(rt, method)
        with pytest.raises(AttributeError, match=method):
            getattr(rt, method)(*WRITE_SIDE[method])
        assert not rt.is_closing() and rt.is_reading()
        rt.close()
        wt.close()
        await asyncio.sleep(0)

    run(any_loop, main())


@pytest.mark.parametrize("method", READ_SIDE)
def test_write_pipe_reading_methods_are_not_implemented(any_loop, method):
    async def main():
        rt, wt = await pipe_pair(any_loop)
        with pytest.raises(NotImplementedError):
            getattr(wt, method)()
        assert not wt.is_closing()
        wt.write(b"still works")
        rt.close()
        wt.close()
        await asyncio.sleep(0)

    run(any_loop, main())


def test_pipe_transports_are_the_asyncio_transport_kinds(any_loop):
    async def main():
        rt, wt = await pipe_pair(any_loop)
        assert isinstance(rt, asyncio.ReadTransport) and not isinstance(rt, asyncio.WriteTransport)
        assert isinstance(wt, asyncio.WriteTransport) and isinstance(wt, asyncio.Transport)
        rt.close()
        wt.close()
        await asyncio.sleep(0)

    run(any_loop, main())


CHILD = (
    "import sys\n"
    "sys.stdin.buffer.read()\n"  # waits until the parent closes stdin
    "sys.stdout.buffer.write(b'y' * 300000)\n"
    "sys.stderr.buffer.write(b'done')\n"
)


def test_writing_to_a_childs_stdout_raises_and_keeps_its_output(any_loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        transport = proc._transport
        stdout_tr = transport.get_pipe_transport(1)
        with pytest.raises(AttributeError):
            stdout_tr.write(b"oops")
        with pytest.raises(AttributeError):
            transport.get_pipe_transport(2).write_eof()
        with pytest.raises(NotImplementedError):
            transport.get_pipe_transport(0).pause_reading()
        assert not stdout_tr.is_closing()
        out, err = await proc.communicate(b"go")
        return out, err, proc.returncode

    out, err, code = run(any_loop, main())
    assert (len(out), err, code) == (300000, b"done", 0)


def test_subprocess_protocol_pipes_are_one_way(any_loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.out = bytearray()
            self.exited = any_loop.create_future()
            self.stdout_closed = any_loop.create_future()

        def pipe_data_received(self, fd, data):
            self.out += data

        def pipe_connection_lost(self, fd, exc):
            if fd == 1:
                self.stdout_closed.set_result(exc)

        def process_exited(self):
            self.exited.set_result(None)

    async def main():
        transport, proto = await any_loop.subprocess_exec(
            Proto, sys.executable, "-c", CHILD, stderr=subprocess.DEVNULL)
        with pytest.raises(AttributeError):
            transport.get_pipe_transport(1).writelines([b"x"])
        with pytest.raises(NotImplementedError):
            transport.get_pipe_transport(0).resume_reading()
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"go")
        stdin.close()
        assert await proto.stdout_closed is None
        await proto.exited
        code = transport.get_returncode()
        transport.close()
        return len(proto.out), code

    assert run(any_loop, main()) == (300000, 0)


def test_pipe_transport_types_cannot_be_made_directly():
    for tp in (uvcore._uvcore.ReadPipeTransport, uvcore._uvcore.WritePipeTransport):
        with pytest.raises(TypeError, match="connect_"):
            tp()
