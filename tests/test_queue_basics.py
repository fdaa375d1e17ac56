"""uvcore.Queue, LifoQueue, PriorityQueue: the basic asyncio.Queue API, on every loop."""
import asyncio
import types
import weakref

import pytest

import uvcore
from queue_support import QUEUE_CLASSES, run  # noqa: F401  (run is a fixture)


def test_exceptions_are_asyncios():
    assert uvcore.QueueEmpty is asyncio.QueueEmpty
    assert uvcore.QueueFull is asyncio.QueueFull
    if hasattr(asyncio, "QueueShutDown"):
        assert uvcore.QueueShutDown is asyncio.QueueShutDown
    else:
        assert issubclass(uvcore.QueueShutDown, Exception)
        assert uvcore.QueueShutDown.__module__ == "uvcore"


def test_subclass_relations_follow_asyncio():
    assert issubclass(uvcore.LifoQueue, uvcore.Queue)
    assert issubclass(uvcore.PriorityQueue, uvcore.Queue)


@pytest.mark.parametrize(
    "cls, expected",
    [(uvcore.Queue, [1, 3, 2]), (uvcore.LifoQueue, [2, 3, 1]), (uvcore.PriorityQueue, [1, 2, 3])],
)
def test_order_of_each_kind(run, cls, expected):
    async def main():
        q = cls()
        for i in [1, 3, 2]:
            await q.put(i)
        return [await q.get() for _ in range(3)]

    assert run(main()) == expected


def test_priority_queue_compares_with_lt_like_heapq():
    q = uvcore.PriorityQueue()
    for item in [(2, "b"), (1, "z"), (2, "a"), (0, "x")]:
        q.put_nowait(item)
    assert [q.get_nowait() for _ in range(4)] == [(0, "x"), (1, "z"), (2, "a"), (2, "b")]
    q.put_nowait(1)
    with pytest.raises(TypeError):
        q.put_nowait("not comparable with int")


def test_qsize_empty_full_and_maxsize():
    q = uvcore.Queue(maxsize=2)
    assert q.maxsize == 2 and q.qsize() == 0 and q.empty() and not q.full()
    q.put_nowait("a")
    q.put_nowait("b")
    assert q.qsize() == 2 and not q.empty() and q.full()
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait("c")
    assert q.get_nowait() == "a" and q.get_nowait() == "b"
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


@pytest.mark.parametrize("maxsize", [0, -1, -5.5, float("nan"), float("inf"), 10**30])
def test_unbounded_maxsizes_never_fill(maxsize):
    q = uvcore.Queue(maxsize)
    for i in range(1000):
        q.put_nowait(i)
    assert not q.full()
    assert q.maxsize is maxsize


def test_float_maxsize_rounds_up_like_asyncio():
    q = uvcore.Queue(maxsize=1.3)
    q.put_nowait(1)
    assert not q.full()
    q.put_nowait(2)
    assert q.full()


def test_bad_maxsize_is_a_type_error():
    with pytest.raises(TypeError, match="maxsize"):
        uvcore.Queue("10")
    with pytest.raises(TypeError):
        uvcore.Queue(1, 2)


def test_repr_and_str():
    q = uvcore.Queue()
    assert repr(q) == f"<Queue at {hex(id(q))} maxsize=0>"
    assert str(q) == "<Queue maxsize=0>"
    q.put_nowait(1)
    assert str(q) == "<Queue maxsize=0 _queue=[1] tasks=1>"
    q.shutdown()
    assert str(q) == "<Queue maxsize=0 _queue=[1] tasks=1 shutdown>"
    assert str(uvcore.PriorityQueue(3)).startswith("<PriorityQueue maxsize=3")


def test_repr_counts_waiters(run):
    async def main():
        q = uvcore.Queue(1)
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        assert "_getters[1]" in repr(q)
        q.put_nowait(1)
        assert await getter == 1
        q.put_nowait(1)
        putter = asyncio.ensure_future(q.put(2))
        await asyncio.sleep(0)
        assert "_putters[1]" in str(q)
        q.get_nowait()
        await putter

    run(main())


def test_class_getitem():
    alias = uvcore.Queue[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is uvcore.Queue and alias.__args__ == (int,)
    assert uvcore.PriorityQueue[tuple].__origin__ is uvcore.PriorityQueue


def test_instances_take_attributes_and_weakrefs():
    q = uvcore.Queue()
    q.name = "jobs"
    assert q.name == "jobs"
    r = weakref.ref(q)
    assert r() is q
    del q
    assert r() is None


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
def test_many_items_through_each_kind(run, cls):
    async def main():
        q = cls(maxsize=7)
        out = []

        async def producer():
            for i in range(500):
                await q.put((i % 13, i))

        async def consumer():
            for _ in range(500):
                out.append(await q.get())
                q.task_done()

        await asyncio.gather(producer(), consumer())
        await q.join()
        return out

    out = run(main())
    assert sorted(out) == sorted((i % 13, i) for i in range(500))
    if cls is uvcore.Queue:
        assert out == [(i % 13, i) for i in range(500)]


def test_awaitables_are_coroutine_like(run):
    async def main():
        q = uvcore.Queue()
        op = q.put(1)
        assert asyncio.iscoroutine(op)
        assert op.__qualname__ == "Queue.put"
        await asyncio.create_task(op)
        assert await asyncio.wait_for(q.get(), 1) == 1

    run(main())
