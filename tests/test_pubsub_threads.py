"""One PubSub shared by the event loops of two threads: while tasks of one thread's loop wait
on it (a suspended `async for`, a publish blocked for room), a call from another thread that
would wait, or wake or complete one of them, raises RuntimeError before anything changes,
so no task is woken from a thread its loop does not run in (which left it hung for good)."""
import asyncio
import gc
import threading

import pytest

import uvcore
from pubsub_support import LOOPS

TIMEOUT = 10


class LoopThread:
    """An event loop of the given kind running in its own thread; run(coro_fn) runs
    coro_fn() there and returns its result (or raises its exception) in the caller."""

    def __init__(self, kind):
        self.loop = LOOPS[kind]()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro_fn, timeout=TIMEOUT):
        async def wrapper():
            return await coro_fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def start(self, coro_fn):
        """Start coro_fn() as a task there; returns a concurrent.futures.Future of it."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture(params=sorted(LOOPS))
def threads(request):
    a, b = LoopThread(request.param), LoopThread(request.param)
    yield a, b
    a.close()
    b.close()


async def suspended(sub):
    """A task of the running loop waiting in sub.__anext__(), suspended when returned."""
    task = asyncio.ensure_future(asyncio.wait_for(sub.__anext__(), 2 * TIMEOUT))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    return task


def test_a_wait_and_a_publish_from_a_second_thread_raise_and_change_nothing(threads):
    a, b = threads
    bus = uvcore.PubSub()
    sub_a, sub_b = bus.subscribe("a"), bus.subscribe("b")
    holder = {}

    async def wait_in_a():
        holder["task"] = await suspended(sub_a)

    a.run(wait_in_a)

    async def wait_in_b():
        return await asyncio.wait_for(sub_b.__anext__(), 2)

    with pytest.raises(RuntimeError, match="thread"):
        b.run(wait_in_b)  # used to wait: then a publish in b woke a's task from b's thread

    async def publish_in_b():
        return await bus.publish("a", "from b")

    with pytest.raises(RuntimeError, match="thread"):
        b.run(publish_in_b)
    with pytest.raises(RuntimeError, match="thread"):
        bus.publish_nowait("b", "from the main thread")
    assert (sub_a.pending, sub_b.pending, bus.stats()["published"]) == (0, 0, 0)

    async def publish_in_a():
        n = await bus.publish("a", "from a")
        return n, await holder["task"]

    assert a.run(publish_in_a) == (1, "from a")

    # Nothing waits any more: thread b's loop may use the bus now.
    async def use_in_b():
        task = asyncio.ensure_future(sub_b.__anext__())
        n = await bus.publish("b", "b's own")
        return n, await asyncio.wait_for(task, TIMEOUT)

    assert b.run(use_in_b) == (1, "b's own")


def test_reading_a_subscription_that_a_blocked_publisher_waits_on_from_another_thread_raises(threads):
    a, b = threads
    bus = uvcore.PubSub()
    sub = bus.subscribe("c", maxsize=1, overflow="block")
    assert bus.publish_nowait("c", 0) == 1

    async def blocked_publish():
        return await bus.publish("c", 1)

    blocked = a.start(blocked_publish)

    async def pending():
        return sub.pending

    for _ in range(100):
        if a.run(pending) == 2:
            break
    assert a.run(pending) == 2

    async def read_in_b():
        return await sub.__anext__()

    with pytest.raises(RuntimeError, match="thread"):
        b.run(read_in_b)  # taking the message would complete a's publisher from b
    assert sub.pending == 2 and not blocked.done()

    async def read_in_a():
        return [await sub.__anext__(), await sub.__anext__()]

    assert a.run(read_in_a) == [0, 1]
    assert blocked.result(TIMEOUT) == 1


def test_a_task_left_waiting_in_a_closed_loop_does_not_bar_other_threads():
    kind = sorted(LOOPS)[0]
    bus = uvcore.PubSub()
    sub = bus.subscribe("c")
    gone = LoopThread(kind)

    async def wait_there():
        return await suspended(sub)

    task = gone.run(wait_there)  # the task stays suspended in its loop
    gone.close()  # ... which is stopped and closed under it
    other = LoopThread(kind)
    try:
        async def use_here():
            waiter = asyncio.ensure_future(sub.__anext__())
            await asyncio.sleep(0)
            n = await bus.publish("c", "here")
            return n, await asyncio.wait_for(waiter, TIMEOUT)

        assert other.run(use_here) == (1, "here")
    finally:
        other.close()
    del task
    gc.collect()
