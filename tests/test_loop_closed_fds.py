"""A watched fd closed (and perhaps reused) before the loop polls again.

libuv aborts the process when its poll hands a closed fd to epoll_ctl, and a watcher left on
a reused number would steal the new file's events. asyncio survives both: the closed fd's
callback simply never runs. Tests marked for both loops compare with asyncio; the others
check what asyncio cannot do (its selector keeps the old key, so the new file is never
registered) or uvcore's own choice (a sock_* call fails with EBADF instead of hanging).
"""
import asyncio
import errno
import os
import socket
import threading

import pytest

import uvcore

LOOPS = {"uvcore": uvcore.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def any_loop(request):
    lp = LOOPS[request.param]()
    lp.kind = request.param
    yield lp
    if not lp.is_closed():
        lp.close()


def _run(loop, coro, timeout=5):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def _lowest_free_fd():
    fd = os.dup(0)
    os.close(fd)
    return fd


@pytest.mark.parametrize("side", ["reader", "writer"])
def test_socket_closed_while_watched_before_the_poll(any_loop, side):
    loop = any_loop
    fired = []

    async def main():
        a, b = socket.socketpair()
        with b:
            getattr(loop, f"add_{side}")(a, fired.append, 1)
            a.close()  # no remove_reader/remove_writer
            await asyncio.sleep(0.05)

    _run(loop, main())
    assert fired == []  # asyncio never calls back for a closed fd either


def test_raw_fd_closed_while_watched(any_loop):
    # uvloop aborts here as well; uvcore must not.
    loop = any_loop
    fired = []

    async def main():
        r, w = os.pipe()
        loop.add_reader(r, fired.append, 1)
        os.close(r)
        await asyncio.sleep(0.05)
        os.close(w)

    _run(loop, main())
    assert fired == []


def test_closed_while_the_loop_is_not_running_then_run_again(any_loop):
    # The next run sets up the signal wake-up socketpair, which gets the stale watcher's
    # number: it must not fail with FileExistsError.
    loop = any_loop
    a, b = socket.socketpair()
    loop.add_reader(a, lambda: None)
    a.close()
    with b:
        assert _run(loop, asyncio.sleep(0.01, "done")) == "done"
        assert _run(loop, asyncio.sleep(0.01, "again")) == "again"


def test_sock_recv_whose_socket_is_closed_before_the_poll(any_loop):
    loop = any_loop

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            loop.call_soon(a.close)
            done, _ = await asyncio.wait([task], timeout=0.2)
            if not done:
                task.cancel()
                return "pending"
            exc = task.exception()
            return errno.errorcode[exc.errno] if isinstance(exc, OSError) else repr(exc)

    # asyncio's selector drops the closed fd silently and the call waits forever; uvcore
    # fails it with the error the socket call itself gives (no hang, no abort).
    assert _run(loop, main()) == {"asyncio": "pending", "uvcore": "EBADF"}[loop.kind]


def test_sock_connect_whose_socket_is_closed_while_in_flight(any_loop):
    loop = any_loop
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    async def main(sleep_first):
        sock = socket.socket()
        sock.setblocking(False)
        task = asyncio.ensure_future(loop.sock_connect(sock, listener.getsockname()))
        if sleep_first:
            await asyncio.sleep(0)
        loop.call_soon(sock.close)
        done, _ = await asyncio.wait([task], timeout=0.2)
        if not done:
            task.cancel()
            return "pending"
        exc = task.exception()
        return "connected" if exc is None else errno.errorcode.get(exc.errno, repr(exc))

    with listener:
        for sleep_first in (False, True):
            outcome = _run(loop, main(sleep_first))
            # Never an abort or a busy loop; the outcome depends on whether the connection
            # completed before the close (asyncio reports the connect event after it).
            allowed = {"asyncio": {"pending", "EBADF"}, "uvcore": {"connected", "EBADF"}}
            assert outcome in allowed[loop.kind]


def test_new_owner_of_a_reused_number_gets_its_own_events(loop):
    # asyncio fails this one: its selector keeps the old key, so the new file is never
    # registered and its reader never runs.
    fired = []

    async def main():
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        num = a.fileno()
        loop.add_reader(a, fired.append, "old")
        loop.add_writer(a, fired.append, "old-writer")
        a.close()
        os.dup2(c.fileno(), num)  # a new file on the old number
        c.close()
        got = asyncio.get_running_loop().create_future()
        loop.add_reader(num, lambda: got.done() or got.set_result(os.read(num, 10)))
        d.send(b"new")
        assert await asyncio.wait_for(got, 2) == b"new"
        assert loop.remove_reader(num) is True
        os.close(num)
        b.close()
        d.close()

    loop.run_until_complete(main())
    assert fired == []


@pytest.mark.parametrize("when", ["before_poll", "after_poll"])
def test_transport_on_a_reused_number_works(loop, when):
    # The stale watcher must neither make the transport fail (libuv: EEXIST) nor keep the
    # number's slot and steal the transport's events.
    async def main():
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        num = a.fileno()
        loop.add_reader(a, lambda: None)
        if when == "after_poll":
            await asyncio.sleep(0.01)
        a.close()
        b.close()
        os.dup2(c.fileno(), num)
        c.close()
        c = socket.socket(fileno=num)
        c.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=c)
        d.sendall(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 2) == b"ping\n"
        writer.write(b"pong\n")
        await writer.drain()
        d.settimeout(2)
        assert d.recv(10) == b"pong\n"
        writer.close()
        d.close()

    loop.run_until_complete(main())


def test_accepted_connection_on_a_reused_number_works(loop):
    # libuv accepts the connection itself, so the fd is new to us only after accept().
    async def main():
        got = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            got.set_result(await reader.readline())
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = socket.socket()
        a, b = socket.socketpair()
        b.close()
        num = a.fileno()
        loop.add_reader(a, lambda: None)
        await asyncio.sleep(0.01)
        a.close()
        assert _lowest_free_fd() == num  # the accepted socket will take it
        client.connect(server.sockets[0].getsockname())  # accepted by the loop from here
        client.sendall(b"hello\n")
        assert await asyncio.wait_for(got, 2) == b"hello\n"
        client.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_dropped_watcher_handle_is_cancelled_and_leaves_the_new_owner_alone(loop):
    # A sock_recv whose socket was closed fails; its clean-up must not remove the watcher
    # the fd's new owner registered on the same number meanwhile.
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        num = a.fileno()
        c, d = socket.socketpair()
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        a.close()
        os.dup2(c.fileno(), num)
        c.close()
        got = asyncio.get_running_loop().create_future()
        loop.add_reader(num, lambda: got.done() or got.set_result(os.read(num, 10)))
        with pytest.raises(OSError) as info:
            await asyncio.wait_for(task, 2)
        assert info.value.errno == errno.EBADF
        await asyncio.sleep(0.01)  # the failed call's clean-up has run
        d.send(b"still here")
        assert await asyncio.wait_for(got, 2) == b"still here"
        loop.remove_reader(num)
        os.close(num)
        b.close()
        d.close()

    loop.run_until_complete(main())


def test_signal_wakeup_socket_closed_behind_the_loop(loop):
    # Even the loop's own wake-up socketpair: the next run starts a fresh one.
    import signal

    loop.run_until_complete(asyncio.sleep(0))
    rsock, wsock = loop._signal_sockets
    os.close(rsock.fileno())
    loop.run_until_complete(asyncio.sleep(0.01))
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.set_result("usr1"))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    assert loop.run_until_complete(asyncio.wait_for(got, 2)) == "usr1"
    loop.remove_signal_handler(signal.SIGUSR1)


class _Lost(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)

    def error_received(self, exc):
        pass


@pytest.mark.parametrize("how", ["sock_close", "os_close_and_reuse"])
def test_stream_transport_whose_socket_is_closed_under_it(loop, how):
    # libuv would re-add the closed fd to epoll on resume_reading() and abort; the
    # transport loses its connection instead, and the number's new owner is left alone.
    async def main():
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        num = a.fileno()
        transport, proto = await loop.create_connection(_Lost, sock=a)
        await asyncio.sleep(0.01)
        if how == "sock_close":
            a.close()
        else:
            os.dup2(c.fileno(), num)  # closes the transport's file, a new one on its number
        transport.pause_reading()
        transport.resume_reading()
        exc = await asyncio.wait_for(proto.lost, 2)
        assert isinstance(exc, OSError) and exc.errno == errno.EBADF
        if how == "os_close_and_reuse":
            d.send(b"new owner")
            assert os.read(num, 20) == b"new owner"  # neither read nor closed by the transport
            os.close(num)
        b.close()
        c.close()
        d.close()

    loop.run_until_complete(main())


def test_datagram_transport_whose_socket_is_closed_under_it(loop):
    async def main():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(_Lost, sock=s)
        await asyncio.sleep(0.01)
        s.close()
        transport.pause_reading()
        transport.resume_reading()
        exc = await asyncio.wait_for(proto.lost, 2)
        assert isinstance(exc, OSError) and exc.errno == errno.EBADF

    loop.run_until_complete(main())


def _run_without_timers(loop, coro, guard=10):
    """Run coro with no timer in the loop: only the awaited event can wake it. A thread
    cancels it after `guard` seconds, which the test reports as the loop sleeping through
    callbacks it had queued itself."""
    task = loop.create_task(coro)
    timer = threading.Timer(guard, lambda: loop.call_soon_threadsafe(task.cancel))
    timer.start()
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        pytest.fail("the loop slept in its poll with callbacks ready (nothing else woke it)")
    finally:
        timer.cancel()
        timer.join()


@pytest.mark.parametrize("kind", ["stream", "datagram"])
def test_loss_found_before_the_poll_is_delivered_without_another_wakeup(loop, kind):
    # The loss is found right before libuv's poll, by code that queues connection_lost: the
    # poll that follows must not block (it used to, until a timer or I/O woke the loop).
    async def main():
        if kind == "stream":
            a, b = socket.socketpair()
            transport, proto = await loop.create_connection(_Lost, sock=a)
        else:
            a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            a.bind(("127.0.0.1", 0))
            b = None
            transport, proto = await loop.create_datagram_endpoint(_Lost, sock=a)
        await asyncio.sleep(0)
        a.close()
        transport.pause_reading()
        transport.resume_reading()
        exc = await proto.lost
        if b is not None:
            b.close()
        return exc

    exc = _run_without_timers(loop, main())
    assert isinstance(exc, OSError) and exc.errno == errno.EBADF


def test_sock_recv_failed_before_the_poll_wakes_its_task_without_another_wakeup(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)  # the watcher is started: libuv adds it at the next poll
            a.close()
            with pytest.raises(OSError) as info:
                await task
            return info.value

    exc = _run_without_timers(loop, main())
    assert exc.errno == errno.EBADF


def test_transport_closing_with_queued_writes_when_its_number_is_taken_over(loop):
    # close() waits for the queued bytes; once the closed file's number has a new owner the
    # transport's watcher is dropped and those bytes can never go out: connection_lost must
    # still come (it never did), with EBADF, and the new owner is left alone.
    async def main():
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        num = a.fileno()
        transport, proto = await loop.create_connection(_Lost, sock=a)
        transport.write(b"x" * (8 << 20))  # more than the socket buffers take: queued
        transport.close()
        os.dup2(c.fileno(), num)  # the transport's file closed, a new one on its number
        got = loop.create_future()
        loop.add_reader(num, lambda: got.done() or got.set_result(os.read(num, 20)))
        exc = await proto.lost
        d.send(b"new owner")
        assert await got == b"new owner"
        loop.remove_reader(num)
        os.close(num)
        for s in (b, c, d):
            s.close()
        return exc

    exc = _run_without_timers(loop, main())
    assert isinstance(exc, OSError) and exc.errno == errno.EBADF


def test_remove_watcher_by_a_socket_object_closed_meanwhile():
    """A watcher added with a socket object is found by that object after close() (its
    fileno() is then -1), as asyncio's selector finds it; a never-added one still raises."""
    import socket

    import uvcore

    loop = uvcore.new_event_loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        loop.add_reader(a, lambda: None)
        loop.add_writer(a, lambda: None)
        a.close()
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(a) is True
        c.close()
        with pytest.raises(ValueError):
            loop.remove_reader(c)
        with pytest.raises(ValueError):
            loop.remove_reader(-1)
    finally:
        loop.close()
        for s in (b, d):
            s.close()
