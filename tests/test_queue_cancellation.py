"""Waiters are served first come, first served; a cancelled get/put loses no item and passes
its wakeup on to the next waiter; timeouts leave no stale waiter behind."""
import asyncio
import gc

import pytest

import uvcore
from queue_support import QUEUE_CLASSES, run  # noqa: F401  (fixture)


def test_getters_are_served_in_arrival_order(run):
    async def main():
        q = uvcore.Queue()
        order = []

        async def getter(name):
            order.append((name, await q.get()))

        tasks = [asyncio.create_task(getter(n)) for n in "abcde"]
        await asyncio.sleep(0)
        for i in range(5):
            q.put_nowait(i)
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == [("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4)]


def test_putters_are_served_in_arrival_order(run):
    async def main():
        q = uvcore.Queue(maxsize=1)
        q.put_nowait("first")
        tasks = [asyncio.create_task(q.put(n)) for n in "abcd"]
        await asyncio.sleep(0)
        got = []
        for _ in range(5):
            got.append(await q.get())
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return got

    assert run(main()) == ["first", "a", "b", "c", "d"]


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
def test_cancelled_get_loses_no_item(run, cls):
    async def main():
        q = cls()
        reader = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait(1)  # wakes reader...
        reader.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert q.qsize() == 1
        return await q.get()

    assert run(main()) == 1


def test_cancelled_woken_getter_wakes_the_next_one(run):
    async def main():
        q = uvcore.Queue()
        r1 = asyncio.create_task(q.get())
        r2 = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait("item")  # wakes r1 only
        r1.cancel()
        with pytest.raises(asyncio.CancelledError):
            await r1
        return await asyncio.wait_for(r2, 2)

    assert run(main()) == "item"


def test_cancelled_woken_putter_wakes_the_next_one(run):
    async def main():
        q = uvcore.Queue(maxsize=1)
        q.put_nowait(0)
        p1 = asyncio.create_task(q.put(1))
        p2 = asyncio.create_task(q.put(2))
        await asyncio.sleep(0)
        assert q.get_nowait() == 0  # wakes p1 only
        p1.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p1
        await asyncio.wait_for(p2, 2)
        return q.get_nowait(), q.qsize()

    assert run(main()) == (2, 0)


def test_cancelled_pending_put_does_not_put(run):
    async def main():
        q = uvcore.Queue(maxsize=1)
        q.put_nowait("kept")
        p = asyncio.create_task(q.put("dropped"))
        await asyncio.sleep(0)
        p.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p
        assert len(q._putters) == 0
        return [q.get_nowait()], q.qsize(), q._unfinished_tasks

    assert run(main()) == (["kept"], 0, 1)


def test_get_timeout_leaves_no_waiter(run):
    async def main():
        q = uvcore.Queue()
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(q.get(), 0.01)
        assert len(q._getters) == 0
        q.put_nowait("after")
        return await q.get()

    assert run(main()) == "after"


def test_cancel_racing_with_many_items_keeps_all(run):
    async def main():
        q = uvcore.Queue()
        readers = [asyncio.create_task(q.get()) for _ in range(10)]
        await asyncio.sleep(0)
        for i in range(10):
            q.put_nowait(i)
        for r in readers[::2]:
            r.cancel()
        results = await asyncio.gather(*readers, return_exceptions=True)
        got = [r for r in results if not isinstance(r, BaseException)]
        rest = [q.get_nowait() for _ in range(q.qsize())]
        return sorted(got + rest)

    assert run(main()) == list(range(10))


def test_dropped_waiting_operation_gives_up_its_place(run):
    # A waiting get collected without being closed (its task dropped) is finalised like a
    # coroutine: its Future leaves _getters, so it cannot swallow a later wakeup.
    async def main():
        q = uvcore.Queue()
        for _ in range(3):  # awaitables are recycled: each time must behave the same
            op = q.get()
            fut = op.send(None)
            assert list(q._getters) == [fut]
            del op
            gc.collect()
            assert list(q._getters) == [] and fut.cancelled()
            await q.put(1)
            assert await q.get() == 1

    run(main())


def test_close_of_waiting_operation_releases_its_future(run):
    async def main():
        q = uvcore.Queue()
        op = q.get()
        fut = op.send(None)
        op.close()
        assert fut.cancelled() and len(q._getters) == 0
        with pytest.raises(RuntimeError):
            op.send(None)

    run(main())
