"""loop.sock_* on non-blocking sockets: a cancelled operation hands the fd over cleanly."""
import asyncio
import errno
import socket

import pytest

import uvcore


@pytest.mark.parametrize("method", ["sock_recv", "sock_recv_into"])
def test_recv_cancelled_then_retried_at_once_gets_the_data(loop, method):
    # The cancelled call's clean-up runs after the retry registered its watcher; it must
    # not remove the retry's watcher (the retry would then wait forever).
    r, w = socket.socketpair()
    r.setblocking(False)
    buf = bytearray(10)
    arg = 100 if method == "sock_recv" else buf
    recv = getattr(loop, method)

    async def main():
        first = asyncio.ensure_future(recv(r, arg))
        await asyncio.sleep(0)
        first.cancel()
        loop.call_soon(w.send, b"hello")
        return await recv(r, arg)  # in this step, before the clean-up runs

    with r, w:
        got = loop.run_until_complete(asyncio.wait_for(main(), 5))
    assert got == (b"hello" if method == "sock_recv" else 5)


def test_cancelled_recv_stops_watching_the_fd(loop):
    r, w = socket.socketpair()
    r.setblocking(False)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(r, 100))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    with r, w:
        loop.run_until_complete(main())
        assert loop.remove_reader(r) is False  # nothing left registered


def test_sock_connect_to_a_numeric_address_starts_in_the_same_step(loop):
    # No resolver round trip for an IP address: once the task has run one step the
    # connection is under way (code may accept() on the other side right away).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    sock = socket.socket()
    sock.setblocking(False)

    async def main():
        task = asyncio.ensure_future(loop.sock_connect(sock, listener.getsockname()))
        await asyncio.sleep(0)
        conn, _ = listener.accept()  # would time out if the connect had not started
        conn.close()
        await task

    with listener, sock:
        loop.run_until_complete(asyncio.wait_for(main(), 10))
        assert loop._default_executor is None  # no thread-pool resolver call


class _SocketWhoseStatusCheckFails(socket.socket):
    def getsockopt(self, *args):
        raise OSError(errno.EBADF, "Bad file descriptor")


@pytest.mark.parametrize("loop_kind", ["uvcore", "asyncio"])
def test_sock_connect_fails_when_the_completion_check_raises(loop_kind):
    # The error of getsockopt(SO_ERROR) goes to the caller, once: no exception handler call
    # per iteration, no hang.
    lp = uvcore.new_event_loop() if loop_kind == "uvcore" else asyncio.new_event_loop()
    handled = []
    lp.set_exception_handler(lambda _loop, ctx: handled.append(ctx))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = _SocketWhoseStatusCheckFails()
    sock.setblocking(False)
    try:
        with pytest.raises(OSError) as info:
            lp.run_until_complete(asyncio.wait_for(lp.sock_connect(sock, listener.getsockname()), 5))
        assert info.value.errno == errno.EBADF
        assert handled == []
    finally:
        sock.close()
        listener.close()
        lp.close()
