"""shutdown(immediate=False) and QueueShutDown as in Python 3.13, on every Python, and
`async for item in queue` ending once the queue is shut down and drained."""
import asyncio

import pytest

import uvcore
from queue_support import QUEUE_CLASSES, run  # noqa: F401  (fixture)


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
def test_shutdown_lets_consumers_drain_then_raises(run, cls):
    async def main():
        q = cls()
        q.put_nowait(1)
        q.put_nowait(2)
        q.shutdown()
        with pytest.raises(uvcore.QueueShutDown):
            q.put_nowait(3)
        with pytest.raises(uvcore.QueueShutDown):
            await q.put(3)
        got = sorted([await q.get(), q.get_nowait()])
        with pytest.raises(uvcore.QueueShutDown):
            q.get_nowait()
        with pytest.raises(uvcore.QueueShutDown):
            await q.get()
        return got

    assert run(main()) == [1, 2]


def test_shutdown_wakes_blocked_getters_and_putters(run):
    async def main():
        empty, full = uvcore.Queue(), uvcore.Queue(maxsize=1)
        full.put_nowait("x")
        getters = [asyncio.create_task(empty.get()) for _ in range(3)]
        putters = [asyncio.create_task(full.put(i)) for i in range(3)]
        await asyncio.sleep(0)
        empty.shutdown()
        full.shutdown()
        results = await asyncio.gather(*getters, *putters, return_exceptions=True)
        assert all(isinstance(r, uvcore.QueueShutDown) for r in results)
        assert full.get_nowait() == "x"

    run(main())


def test_immediate_shutdown_drops_items_and_releases_join(run):
    async def main():
        q = uvcore.Queue()
        for i in range(3):
            q.put_nowait(i)
        assert q.get_nowait() == 0  # taken but not task_done: stays unfinished
        joiner = asyncio.create_task(q.join())
        await asyncio.sleep(0)
        q.shutdown(immediate=True)
        assert q.qsize() == 0
        await asyncio.sleep(0)
        assert not joiner.done()
        q.task_done()
        await asyncio.wait_for(joiner, 2)
        with pytest.raises(ValueError):
            q.task_done()

    run(main())


def test_async_for_yields_until_shutdown_and_drained(run):
    async def main():
        q = uvcore.Queue(maxsize=2)
        got = []

        async def consumer():
            async for item in q:
                got.append(item)
                q.task_done()

        task = asyncio.create_task(consumer())
        for i in range(10):
            await q.put(i)
        await q.join()
        q.put_nowait("last")
        q.shutdown()
        await asyncio.wait_for(task, 2)
        return got

    assert run(main()) == [*range(10), "last"]


def test_async_for_ends_at_once_on_immediate_shutdown(run):
    async def main():
        q = uvcore.Queue()
        q.put_nowait(1)
        q.shutdown(immediate=True)
        return [item async for item in q]

    assert run(main()) == []


def test_async_for_cancelled_loses_no_item(run):
    async def main():
        q = uvcore.Queue()
        got = []

        async def consumer():
            async for item in q:
                got.append(item)

        task = asyncio.create_task(consumer())
        await asyncio.sleep(0)
        q.put_nowait("a")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got, q.get_nowait()

    assert run(main()) == ([], "a")


def test_join_waits_for_task_done(run):
    async def main():
        q = uvcore.Queue()
        await q.join()  # nothing unfinished: returns at once
        for i in range(5):
            q.put_nowait(i)
        joiners = [asyncio.create_task(q.join()) for _ in range(2)]
        for _ in range(5):
            await q.get()
            await asyncio.sleep(0)
            assert not any(j.done() for j in joiners)
            q.task_done()
        await asyncio.wait_for(asyncio.gather(*joiners), 2)
        with pytest.raises(ValueError, match="too many times"):
            q.task_done()

    run(main())


def test_cancelled_join_leaves_no_waiter(run):
    async def main():
        q = uvcore.Queue()
        q.put_nowait(1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.join(), 0.01)
        q.get_nowait()
        q.task_done()
        await q.join()

    run(main())
