"""Python subclasses: asyncio's storage hooks _init/_put/_get are honoured, __init__ may be
overridden, and the internals asyncio code peeks at (_queue, _getters, ...) are there."""
import asyncio
import collections

import pytest

import uvcore
from queue_support import run  # noqa: F401  (fixture)


class UniqueQueue(uvcore.Queue):
    """A queue that ignores items already waiting in it."""

    def _init(self, maxsize):
        self._queue = collections.OrderedDict()

    def _put(self, item):
        self._queue[item] = None

    def _get(self):
        return self._queue.popitem(last=False)[0]


def test_storage_hooks_are_called(run):
    async def main():
        q = UniqueQueue()
        for item in "abacab":
            await q.put(item)
        assert q.qsize() == 3
        return [await q.get() for _ in range(3)]

    assert run(main()) == ["a", "b", "c"]


def test_hooks_raising_propagate():
    class Broken(uvcore.Queue):
        def _put(self, item):
            raise KeyError(item)

    q = Broken()
    with pytest.raises(KeyError):
        q.put_nowait(1)
    assert q.qsize() == 0 and q._unfinished_tasks == 0


def test_subclass_with_own_init(run):
    class Named(uvcore.PriorityQueue):
        def __init__(self, name, maxsize=0):
            super().__init__(maxsize)
            self.name = name

    async def main():
        q = Named("jobs", maxsize=2)
        await q.put(3)
        await q.put(1)
        assert q.full() and q.name == "jobs"
        return [await q.get(), await q.get()]

    assert run(main()) == [1, 3]


def test_subclass_that_skips_super_init_is_an_unbounded_queue():
    class Lazy(uvcore.Queue):
        def __init__(self):
            pass

    q = Lazy()
    q.put_nowait(1)
    assert q.get_nowait() == 1 and q.maxsize == 0


def test_subclass_overriding_format_changes_repr():
    class Tagged(uvcore.LifoQueue):
        def _format(self):
            return "tagged " + super()._format()

    assert str(Tagged()) == "<Tagged tagged maxsize=0>"


def test_internals_look_like_asyncios():
    q = uvcore.Queue(3)
    assert isinstance(q._queue, collections.deque)
    assert isinstance(q._getters, collections.deque) and isinstance(q._putters, collections.deque)
    assert isinstance(uvcore.LifoQueue()._queue, list)
    assert isinstance(uvcore.PriorityQueue()._queue, list)
    assert q._maxsize == 3 and q._unfinished_tasks == 0 and q._is_shutdown is False
    q._queue.append("direct")  # code in the wild pokes at _queue; it is the live container
    assert q.qsize() == 1 and q.get_nowait() == "direct"
    q._queue = None
    with pytest.raises(TypeError):
        q.qsize()
    del q._queue
    with pytest.raises(AttributeError):
        q.put_nowait(1)


def test_reentrant_lt_cannot_corrupt_a_priority_queue():
    q = uvcore.PriorityQueue()

    class Nasty:
        def __init__(self, v):
            self.v = v

        def __lt__(self, other):
            if q.qsize() > 1:
                q._queue.clear()
            return self.v < other.v

    for i in range(5):
        try:
            q.put_nowait(Nasty(i))
        except (RuntimeError, IndexError):
            pass
    while True:
        try:
            q.get_nowait()
        except (asyncio.QueueEmpty, RuntimeError, IndexError):
            break


def test_stop_iteration_from_a_hook_is_a_runtime_error(run):
    class Leaky(uvcore.Queue):
        def _get(self):
            raise StopIteration("not a return value")

    async def main():
        q = Leaky()
        q.put_nowait(1)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await q.get()

    run(main())


def test_a_lifo_queue_given_a_deque_still_pops_the_newest():
    q = uvcore.LifoQueue()
    q._queue = collections.deque()
    for i in range(3):
        q.put_nowait(i)

    async def main():
        return [await q.get() for _ in range(3)]

    assert asyncio.run(main()) == [2, 1, 0]
