"""Callbacks and protocols that raise: the loop keeps running and calls its exception handler
with asyncio's context keys (message, exception, and handle/protocol/transport)."""
from __future__ import annotations

import asyncio
import socket

import pytest

import uvcore


class Boom(Exception):
    pass


def run_collecting(main):
    """Runs main(loop) on a uvcore loop with a recording exception handler."""
    contexts = []
    loop = uvcore.new_event_loop()
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    try:
        result = loop.run_until_complete(main(loop))
    finally:
        loop.close()
    return result, contexts


def raise_boom(*args):
    raise Boom(*args)


@pytest.mark.parametrize("how", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_raising_callback_reaches_handler_with_its_handle(how, tally):
    n = 20

    async def main(loop):
        handles = []
        for i in range(n):
            if how == "call_later":
                handles.append(loop.call_later(0.0001 * i, raise_boom, i))
            elif how == "call_at":
                handles.append(loop.call_at(loop.time(), raise_boom, i))
            else:
                handles.append(getattr(loop, how)(raise_boom, i))
        done = loop.create_future()
        loop.call_later(0.05, done.set_result, "still running")
        return handles, await done

    (handles, alive), contexts = run_collecting(main)
    tally["faults"] += n
    assert alive == "still running"
    assert len(contexts) == n
    for ctx, handle in zip(sorted(contexts, key=lambda c: c["exception"].args[0]), handles):
        assert isinstance(ctx["exception"], Boom)
        assert ctx["handle"] is handle
        assert "Exception in callback" in ctx["message"]


def test_base_exceptions_propagate_and_the_loop_can_run_again(tally):
    loop = uvcore.new_event_loop()
    try:
        for exc in (KeyboardInterrupt, SystemExit):
            loop.call_soon(lambda e=exc: (_ for _ in ()).throw(e()))
            with pytest.raises(exc):
                loop.run_forever()
            tally["faults"] += 1
        assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"
    finally:
        loop.close()


def test_raising_exception_handler_is_reported_not_fatal(tally, caplog):
    loop = uvcore.new_event_loop()

    def bad_handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    try:
        loop.call_soon(raise_boom)
        assert loop.run_until_complete(asyncio.sleep(0.01, "ok")) == "ok"
    finally:
        loop.close()
    tally["faults"] += 1
    assert "Unhandled error in exception handler" in caplog.text


class RaisingProtocol(asyncio.Protocol):
    """Raises in the callback named `where`; records the calls it got."""

    def __init__(self, where, done):
        self.where = where
        self.done = done
        self.calls = []

    def _maybe_raise(self, name):
        self.calls.append(name)
        if name == self.where:
            raise Boom(name)

    def connection_made(self, transport):
        self.transport = transport
        self._maybe_raise("connection_made")

    def data_received(self, data):
        self._maybe_raise("data_received")

    def eof_received(self):
        self._maybe_raise("eof_received")

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(self.calls + ["connection_lost"])
        self._maybe_raise("connection_lost")


@pytest.mark.parametrize("where", ["connection_made", "data_received", "eof_received", "connection_lost"])
def test_raising_stream_protocol_is_reported_and_the_connection_closed(where, tally):
    async def main(loop):
        a, b = socket.socketpair()
        b.setblocking(False)
        done = loop.create_future()
        proto = RaisingProtocol(where, done)
        transport, _ = await loop.create_connection(lambda: proto, sock=a)
        try:
            if where == "connection_made":
                # As in asyncio, connection_made runs as a callback: its exception is
                # reported and the transport stays usable; the test closes it.
                await asyncio.sleep(0.01)
                transport.close()
            else:
                await loop.sock_sendall(b, b"data")
                if where != "data_received":
                    b.shutdown(socket.SHUT_WR)
                if where == "connection_lost":
                    await asyncio.sleep(0.01)
                    transport.close()
            calls = await asyncio.wait_for(done, 10)
            await asyncio.sleep(0)  # let connection_lost's exception reach the handler
            return calls, transport
        finally:
            transport.close()
            b.close()

    (calls, transport), contexts = run_collecting(main)
    tally["faults"] += 1
    assert where in calls
    assert transport.is_closing()  # closed by the loop, or by the test for connection_made
    assert len(contexts) == 1, contexts
    ctx = contexts[0]
    assert isinstance(ctx["exception"], Boom) and ctx["exception"].args == (where,)
    # asyncio names the protocol and transport (or the handle for connection_made/lost).
    assert ctx.get("protocol") is not None or ctx.get("handle") is not None, ctx


def test_raising_datagram_protocol_keeps_the_endpoint_open(tally):
    class Proto(asyncio.DatagramProtocol):
        def __init__(self):
            self.seen = 0

        def datagram_received(self, data, addr):
            self.seen += 1
            if data == b"bad":
                raise Boom("datagram")

    async def main(loop):
        transport, proto = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        addr = transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in (b"bad", b"bad", b"good"):
                s.sendto(payload, addr)
            for _ in range(500):
                if proto.seen == 3:
                    break
                await asyncio.sleep(0.005)
        closing = transport.is_closing()
        transport.close()
        return proto.seen, closing

    (seen, closing), contexts = run_collecting(main)
    tally["faults"] += 2
    assert seen == 3 and not closing
    assert len(contexts) == 2
    assert all(isinstance(c["exception"], Boom) for c in contexts)
    assert all(c.get("protocol") is not None or c.get("transport") is not None for c in contexts)


def test_raising_reader_callback_is_reported_with_its_handle(tally):
    async def main(loop):
        a, b = socket.socketpair()
        calls = []

        def on_readable():
            calls.append(a.recv(10))
            if len(calls) == 1:
                raise Boom("reader")
            loop.remove_reader(a.fileno())
            fut.set_result(calls)

        fut = loop.create_future()
        loop.add_reader(a.fileno(), on_readable)
        b.send(b"1")
        await asyncio.sleep(0.01)
        b.send(b"2")
        try:
            return await asyncio.wait_for(fut, 10)
        finally:
            loop.remove_reader(a.fileno())
            a.close()
            b.close()

    calls, contexts = run_collecting(main)
    tally["faults"] += 1
    assert calls == [b"1", b"2"]
    assert len(contexts) == 1 and isinstance(contexts[0]["exception"], Boom)
    assert contexts[0].get("handle") is not None


def test_task_exception_never_retrieved_reaches_handler(tally):
    async def fails():
        raise Boom("task")

    async def main(loop):
        task = loop.create_task(fails())
        await asyncio.sleep(0.01)
        assert task.done()
        del task
        import gc

        gc.collect()
        await asyncio.sleep(0)

    _, contexts = run_collecting(main)
    tally["faults"] += 1
    assert any(isinstance(c.get("exception"), Boom) and "never retrieved" in c["message"] for c in contexts)


def test_raising_subprocess_protocol_is_reported_and_the_process_reaped(tally):
    import sys

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self, exited):
            self.exited = exited

        def pipe_data_received(self, fd, data):
            raise Boom("pipe_data_received")

        def pipe_connection_lost(self, fd, exc):
            raise Boom("pipe_connection_lost")

        def process_exited(self):
            self.exited.set_result(None)
            raise Boom("process_exited")

    async def main(loop):
        exited = loop.create_future()
        transport, _ = await loop.subprocess_exec(
            lambda: Proto(exited), sys.executable, "-c", "import sys; print('out'); sys.stderr.write('err')")
        await asyncio.wait_for(exited, 30)
        for _ in range(100):  # the pipes' connection_lost may come just after the exit
            await asyncio.sleep(0.005)
        code = transport.get_returncode()
        transport.close()
        return code

    code, contexts = run_collecting(main)
    where = sorted({c["exception"].args[0] for c in contexts if isinstance(c.get("exception"), Boom)})
    tally["faults"] += len(contexts)
    assert code == 0
    assert where == ["pipe_connection_lost", "pipe_data_received", "process_exited"]
    assert all(c.get("handle") is not None or c.get("protocol") is not None for c in contexts)


def test_raising_signal_handler_is_reported_and_the_loop_goes_on(tally):
    import os
    import signal

    async def main(loop):
        got = []

        def handler():
            got.append(1)
            if len(got) == 1:
                raise Boom("signal")
            done.set_result(len(got))

        done = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, handler)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGUSR1)
            return await asyncio.wait_for(done, 10)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    n, contexts = run_collecting(main)
    tally["faults"] += 1
    assert n == 2
    assert len(contexts) == 1 and isinstance(contexts[0]["exception"], Boom)
