"""No reference or memory leaks over a million queue operations: the items' reference
counts, the number of live GC objects and traced memory come back to where they started,
on the fast paths and on the waiting, cancelling and shutdown paths."""
import asyncio
import gc
import sys
import tracemalloc

import uvcore
from queue_support import QUEUE_CLASSES, run  # noqa: F401  (fixture)

N_FAST = 250_000  # x 4 operations = 1M


class Item:
    def __lt__(self, other):  # PriorityQueue compares items
        return id(self) < id(other)


def _live_objects():
    gc.collect()
    return len(gc.get_objects())


def test_million_fast_operations_leak_nothing(run):
    item = Item()

    async def main():
        for cls in QUEUE_CLASSES:
            q = cls()
            for _ in range(N_FAST // len(QUEUE_CLASSES)):
                await q.put(item)
                await q.get()
                q.put_nowait(item)
                q.get_nowait()
                q.task_done()
                q.task_done()
            await q.join()

    run(main())  # warm up caches, loop machinery
    refs, objects = sys.getrefcount(item), _live_objects()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(main())
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sys.getrefcount(item) == refs
    assert _live_objects() - objects < 50
    # A leak of even one pointer per operation would be megabytes; allow allocator noise.
    assert grown < 1024 * 1024, f"{grown} bytes still allocated"


def test_waiting_paths_leak_nothing(run):
    item = Item()

    async def main():
        q = uvcore.Queue(maxsize=1)

        async def producer():
            for _ in range(5_000):
                await q.put(item)

        async def consumer():
            for _ in range(5_000):
                await q.get()
                q.task_done()

        joiner = asyncio.ensure_future(q.join())
        await asyncio.gather(consumer(), producer(), joiner)
        # Cancelled waiters, the item passed on each time.
        u = uvcore.Queue()
        for _ in range(1_000):
            waiting = [asyncio.ensure_future(u.get()) for _ in range(3)]
            await asyncio.sleep(0)
            u.put_nowait(item)
            waiting[0].cancel()  # woken, then cancelled: passes the item on to waiting[1]
            u.put_nowait(item)  # for waiting[2]
            await asyncio.gather(*waiting, return_exceptions=True)
            assert u.empty()
            b = uvcore.Queue(1)
            b.put_nowait(item)
            blocked = asyncio.ensure_future(b.put(item))
            await asyncio.sleep(0)
            blocked.cancel()
            await asyncio.gather(blocked, return_exceptions=True)
        # Shutdown wakes everybody; async for ends.
        for _ in range(500):
            s = uvcore.Queue(1)
            s.put_nowait(item)
            waiting = [asyncio.ensure_future(s.put(item)) for _ in range(2)]
            await asyncio.sleep(0)
            s.shutdown()
            await asyncio.gather(*waiting, return_exceptions=True)
            assert [x async for x in s] == [item]

    run(main())
    refs, objects = sys.getrefcount(item), _live_objects()
    run(main())
    assert sys.getrefcount(item) == refs
    assert _live_objects() - objects < 50


def test_abandoned_operations_release_their_item():
    item = Item()
    refs = sys.getrefcount(item)
    q = uvcore.Queue()
    for _ in range(10_000):
        op = q.put(item)  # created, never awaited
        del op
        op = q.put(item)
        op.close()
        op = q.get()
        op.throw(KeyError) if False else op.close()
    assert sys.getrefcount(item) == refs and q.qsize() == 0
