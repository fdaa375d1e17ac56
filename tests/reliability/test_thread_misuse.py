"""Misuse from another thread: every loop method that touches libuv, and Queue/PubSub while a
task waits on them, raise a clear RuntimeError in the foreign thread, change nothing, and the
loop (and the waiting tasks) carry on as if nothing happened. Scheduling methods (call_soon,
call_later, call_at, create_task) check the thread in debug mode only, as asyncio's do: with
debug off the call is queued intact and runs when the loop next wakes."""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import uvcore

WRONG_THREAD = "thread"  # every message names the thread problem


def in_thread(fn):
    """Runs fn() in a new thread; returns the exception it raised (or None)."""
    box = []

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return box[0] if box else None


async def foreign(fn):
    # The loop keeps running while the other thread tries.
    return await asyncio.to_thread(lambda: in_thread(fn))


SCHEDULING_OPS = {
    "call_soon": lambda loop, r: loop.call_soon(print),
    "call_later": lambda loop, r: loop.call_later(10, print),
    "call_at": lambda loop, r: loop.call_at(loop.time() + 10, print),
    "create_future+call_soon": lambda loop, r: loop.call_soon(loop.create_future),
}

LOOP_OPS = {
    **SCHEDULING_OPS,
    "add_reader": lambda loop, r: loop.add_reader(r.fileno(), print),
    "add_writer": lambda loop, r: loop.add_writer(r.fileno(), print),
    "remove_reader": lambda loop, r: loop.remove_reader(r.fileno()),
    "remove_writer": lambda loop, r: loop.remove_writer(r.fileno()),
    "run_forever": lambda loop, r: loop.run_forever(),
    "run_until_complete": lambda loop, r: loop.run_until_complete(loop.create_future()),
    "close": lambda loop, r: loop.close(),
}


@pytest.mark.parametrize("op", sorted(LOOP_OPS))
def test_loop_method_from_another_thread_raises_runtime_error(op, tally):
    # debug mode: the scheduling methods check the thread too, as asyncio's do
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        a, b = socket.socketpair()
        try:
            exc = await foreign(lambda: LOOP_OPS[op](loop, b))
            # The loop still schedules and runs callbacks normally afterwards.
            done = loop.create_future()
            loop.call_later(0.001, done.set_result, "alive")
            return exc, await asyncio.wait_for(done, 10)
        finally:
            loop.remove_reader(b.fileno())
            loop.remove_writer(b.fileno())
            a.close()
            b.close()

    exc, alive = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError), exc
    assert alive == "alive"


@pytest.mark.parametrize("op", sorted(SCHEDULING_OPS))
def test_scheduling_from_another_thread_without_debug_is_queued_intact(op, tally):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        try:
            exc = await foreign(lambda: SCHEDULING_OPS[op](loop, b))
            loop.call_soon_threadsafe(lambda: None)
            done = loop.create_future()
            loop.call_later(0.001, done.set_result, "alive")
            return exc, await asyncio.wait_for(done, 10)
        finally:
            a.close()
            b.close()

    exc, alive = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert exc is None
    assert alive == "alive"


def test_create_task_from_another_thread_without_debug_runs_the_task(tally):
    async def child():
        return "ran"

    async def main():
        loop = asyncio.get_running_loop()
        box = []
        exc = await foreign(lambda: box.append(loop.create_task(child())))
        loop.call_soon_threadsafe(lambda: None)
        return exc, await asyncio.wait_for(box[0], 10)

    exc, result = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert exc is None and result == "ran"


def test_create_task_from_another_thread_makes_no_task_in_debug_mode(tally):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        coro = asyncio.sleep(0)
        try:
            exc = await foreign(lambda: loop.create_task(coro))
        finally:
            coro.close()
        return exc, len(asyncio.all_tasks())

    exc, tasks = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError) and WRONG_THREAD in str(exc)
    assert tasks == 1  # only main()


def test_call_soon_threadsafe_and_stop_are_fine_from_another_thread():
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        assert await foreign(lambda: loop.call_soon_threadsafe(fut.set_result, 7)) is None
        return await asyncio.wait_for(fut, 10)

    assert uvcore.run(main()) == 7


TRANSPORT_OPS = {
    "write": lambda tr: tr.write(b"x"),
    "writelines": lambda tr: tr.writelines([b"x", b"y"]),
    "write_eof": lambda tr: tr.write_eof(),
    "pause_reading": lambda tr: tr.pause_reading(),
    "resume_reading": lambda tr: tr.resume_reading(),
    "close": lambda tr: tr.close(),
    "abort": lambda tr: tr.abort(),
}


@pytest.mark.parametrize("op", sorted(TRANSPORT_OPS))
def test_stream_transport_from_another_thread_raises_and_keeps_working(op, tally):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=a)
        try:
            exc = await foreign(lambda: TRANSPORT_OPS[op](writer.transport))
            # The transport is untouched: a round trip still works.
            writer.write(b"ping")
            await writer.drain()
            got = await loop.sock_recv(b, 4)
            await loop.sock_sendall(b, b"pong")
            return exc, got, await asyncio.wait_for(reader.readexactly(4), 10)
        finally:
            writer.close()
            b.close()

    exc, got, back = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError), exc
    assert (got, back) == (b"ping", b"pong")


def test_server_and_udp_from_another_thread_raise(tally):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        addr = udp.get_extra_info("sockname")
        try:
            excs = [
                await foreign(server.close),
                await foreign(lambda: udp.sendto(b"x", addr)),
                await foreign(udp.close),
            ]
            return excs, server.is_serving(), udp.is_closing()
        finally:
            udp.close()
            server.close()
            await server.wait_closed()

    excs, serving, closing = uvcore.run(main())
    tally["bad_inputs"] += len(excs)
    assert all(isinstance(e, RuntimeError) for e in excs), excs
    assert serving and not closing


QUEUE_OPS = {
    "put_nowait": lambda q: q.put_nowait(1),
    "task_done": lambda q: q.task_done(),
    "shutdown": lambda q: q.shutdown(),
    "shutdown_immediate": lambda q: q.shutdown(immediate=True),
}


@pytest.mark.parametrize("op", sorted(QUEUE_OPS))
def test_queue_with_a_waiting_getter_refuses_another_thread(op, tally):
    async def main():
        q = uvcore.Queue()
        q.put_nowait("before")
        q.get_nowait()  # one unfinished item, for task_done
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        exc = await foreign(lambda: QUEUE_OPS[op](q))
        # Nothing changed: the same thread can still hand the waiter its item.
        state = (q.qsize(), getter.done())
        q.put_nowait("item")
        return exc, state, await asyncio.wait_for(getter, 10)

    exc, state, item = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError) and WRONG_THREAD in str(exc)
    assert state == (0, False)
    assert item == "item"


def test_queue_with_a_waiting_putter_refuses_get_from_another_thread(tally):
    async def main():
        q = uvcore.Queue(maxsize=1)
        q.put_nowait("a")
        putter = asyncio.ensure_future(q.put("b"))
        await asyncio.sleep(0)
        exc = await foreign(q.get_nowait)
        state = q.qsize()
        assert q.get_nowait() == "a"
        await asyncio.wait_for(putter, 10)
        return exc, state, q.get_nowait()

    exc, state, item = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError)
    assert (state, item) == (1, "b")


def test_queue_without_waiters_may_be_filled_from_a_thread():
    # No Future to wake: plain data structure access under the GIL is allowed, as with
    # asyncio.Queue (e.g. filling a queue before the consumer starts).
    async def main():
        q = uvcore.Queue()
        assert await foreign(lambda: [q.put_nowait(i) for i in range(3)]) is None
        return [await q.get() for _ in range(3)]

    assert uvcore.run(main()) == [0, 1, 2]


PUBSUB_OPS = {
    "publish_nowait": lambda bus, sub: bus.publish_nowait("c", "x"),
    "publish": lambda bus, sub: bus.publish("c", "x"),
    "publish_local_nowait": lambda bus, sub: bus.publish_local_nowait("c", "x"),
    "PubSub.aclose": lambda bus, sub: bus.aclose(),
    "Subscription.aclose": lambda bus, sub: sub.aclose(),
}


@pytest.mark.parametrize("op", sorted(PUBSUB_OPS))
def test_pubsub_with_a_waiting_subscriber_refuses_another_thread(op, tally):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        nxt = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        exc = await foreign(lambda: PUBSUB_OPS[op](bus, sub))
        state = (sub.pending, nxt.done(), bus.stats()["published"])
        assert await bus.publish("c", "from the loop") == 1
        got = await asyncio.wait_for(nxt, 10)
        await sub.aclose()
        await bus.aclose()
        return exc, state, got

    exc, state, got = uvcore.run(main())
    tally["bad_inputs"] += 1
    assert isinstance(exc, RuntimeError) and WRONG_THREAD in str(exc)
    assert state == (0, False, 0)
    assert got == "from the loop"


def test_subprocess_and_pipe_transports_from_another_thread_raise(tally):
    import os
    import signal
    import sys

    async def main():
        loop = asyncio.get_running_loop()
        proc, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c",
                                             "import sys; sys.stdin.read()", stdin=-1)
        r, w = os.pipe()
        wpipe, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(w, "wb"))
        rpipe, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb"))
        ops = [lambda: proc.send_signal(signal.SIGCONT), proc.kill, proc.terminate, proc.close,
               lambda: proc.get_pipe_transport(0).write(b"x"), wpipe.close, lambda: wpipe.write(b"x"),
               rpipe.pause_reading, rpipe.close]
        try:
            excs = [await foreign(op) for op in ops]
            alive = proc.get_returncode() is None and not wpipe.is_closing() and not rpipe.is_closing()
        finally:
            proc.get_pipe_transport(0).close()  # the child reads EOF and exits
            wpipe.close()
            rpipe.close()
        for _ in range(2000):
            if proc.get_returncode() is not None:
                break
            await asyncio.sleep(0.005)
        code = proc.get_returncode()
        proc.close()
        return excs, alive, code

    excs, alive, code = uvcore.run(main())
    tally["bad_inputs"] += len(excs)
    assert all(isinstance(e, RuntimeError) for e in excs), excs
    assert alive and code == 0
