"""Subscription lifetime: every way a subscriber goes away removes it from the broker, a
cancelled __anext__ loses no message, and closing the broker ends every iterator."""
import asyncio
import gc
import os
import tracemalloc
import weakref

import pytest

import uvcore
from pubsub_support import collect, run, until  # noqa: F401


def empty(bus):
    st = bus.stats()
    return st["subscribers"] == 0 and st["channels"] == 0 and st["patterns"] == 0


def test_aclose_unsubscribes_and_ends_a_waiting_iterator(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        got = []

        async def reader():
            async for m in sub:
                got.append(m)
            return "ended"

        task = asyncio.ensure_future(reader())
        await bus.publish("c", 1)
        await until(lambda: got == [1])
        await sub.aclose()
        assert await task == "ended"
        assert empty(bus) and sub.closed
        await sub.aclose()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()

    run(main)


def test_aclose_discards_buffered_messages(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        await bus.publish("c", 1)
        await sub.aclose()
        assert sub.pending == 0
        assert [m async for m in sub] == []

    run(main)


def test_context_exit_unsubscribes_even_on_error(run):
    async def main():
        bus = uvcore.PubSub()
        with pytest.raises(KeyError):
            async with bus.subscribe("c") as sub:
                assert bus.numsub("c") == 1
                raise KeyError("boom")
        assert empty(bus) and sub.closed

    run(main)


def test_break_out_of_async_for_unsubscribes(run):
    async def main():
        bus = uvcore.PubSub()

        async def first():
            async for m in bus.subscribe("c"):
                return m

        task = asyncio.ensure_future(first())
        await until(lambda: bus.numsub("c") == 1)
        await bus.publish("c", "x")
        assert await task == "x"
        assert empty(bus)

    run(main)


def test_closing_the_wrapping_async_generator_unsubscribes(run):
    # Strawberry closes a subscription resolver (an async generator) when its client leaves.
    async def main():
        bus = uvcore.PubSub()

        async def resolver():
            async for message_data in bus.subscribe("messages"):
                yield message_data

        agen = resolver()
        pending = asyncio.ensure_future(agen.__anext__())
        await until(lambda: bus.numsub("messages") == 1)
        await bus.publish("messages", {"text": "hi"})
        assert await pending == {"text": "hi"}
        # Suspended inside __anext__ of the Subscription when closed:
        nxt = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0)
        nxt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await nxt
        await agen.aclose()
        assert empty(bus)

        agen2 = resolver()
        await bus.publish("messages", 0)  # not subscribed yet: lost, as in Redis
        t = asyncio.ensure_future(agen2.__anext__())
        await until(lambda: bus.numsub("messages") == 1)
        await bus.publish("messages", 1)
        assert await t == 1
        await agen2.aclose()  # suspended at its yield
        assert empty(bus)

    run(main)


def test_task_cancellation_unsubscribes(run):
    async def main():
        bus = uvcore.PubSub()

        async def listener():
            async for _ in bus.subscribe("c.*"):
                pass

        tasks = [asyncio.ensure_future(listener()) for _ in range(10)]
        await until(lambda: bus.numsub("c.*") == 10)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert empty(bus)

    run(main)


def test_garbage_collected_subscription_unsubscribes(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        ref = weakref.ref(sub)
        holder = {"sub": sub}
        holder["self"] = holder  # a reference cycle: only the collector frees it
        del sub, holder
        collect()
        assert ref() is None
        assert empty(bus)

    run(main)


def test_forgotten_pending_task_waiting_on_a_subscription_is_collected(run):
    async def main():
        bus = uvcore.PubSub()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, ctx: None)  # "Task was destroyed but pending"

        async def listener(sub):
            async for _ in sub:
                pass

        task = asyncio.ensure_future(listener(bus.subscribe("c")))
        await until(lambda: task._fut_waiter is not None)
        ref = weakref.ref(task)
        del task
        collect()
        assert ref() is None
        assert empty(bus)
        assert await bus.publish("c", 1) == 0

    run(main)


def test_cancelled_waiting_anext_loses_no_message(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        waiter = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await bus.publish("c", "kept")
        assert await sub.__anext__() == "kept"

    run(main)


def test_cancel_between_wakeup_and_resume_loses_no_message(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")

        async def one():
            return await sub.__anext__()

        task = asyncio.ensure_future(one())
        await asyncio.sleep(0)
        await bus.publish("c", "first")  # wakes the task; it has not resumed yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sub.pending == 1
        assert await sub.__anext__() == "first"

        # The same inside async for: the next iteration gets the message.
        got = []

        async def loop_reader():
            async for m in sub:
                got.append(m)

        t1 = asyncio.ensure_future(loop_reader())
        await asyncio.sleep(0)
        await bus.publish("c", "second")
        t1.cancel()
        await asyncio.gather(t1, return_exceptions=True)
        assert got == []
        # t1 held the only iterator reference? No: `sub` is ours, so it stays subscribed.
        assert await sub.__anext__() == "second"

    run(main)


def test_two_tasks_iterating_one_subscription_is_refused(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        a = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="another task"):
            await sub.__anext__()
        await bus.publish("c", 1)
        assert await a == 1

    run(main)


def test_broker_aclose_ends_all_iterators_after_their_buffered_messages(run):
    async def main():
        bus = uvcore.PubSub()
        subs = [bus.subscribe("c") for _ in range(3)] + [bus.subscribe("*")]
        results = []

        async def reader(sub):
            results.append([m async for m in sub])

        tasks = [asyncio.ensure_future(reader(s)) for s in subs]
        await asyncio.sleep(0)
        await bus.publish("c", 1)
        await bus.publish("c", 2)
        await bus.aclose()
        await asyncio.gather(*tasks)
        assert results == [[1, 2]] * 4
        assert bus.closed and empty(bus)

    run(main)


def test_publish_and_subscribe_after_close_raise_clear_errors(run):
    async def main():
        async with uvcore.PubSub() as bus:
            sub = bus.subscribe("c")
        assert bus.closed
        with pytest.raises(RuntimeError, match="closed PubSub"):
            await bus.publish("c", 1)
        with pytest.raises(RuntimeError, match="closed PubSub"):
            bus.publish_nowait("c", 1)
        with pytest.raises(RuntimeError, match="closed PubSub"):
            bus.subscribe("c")
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
        await bus.aclose()  # idempotent

    run(main)


def test_subscription_keeps_its_broker_alive():
    sub = uvcore.PubSub().subscribe("c")
    collect()
    assert not sub.closed
    del sub


def _cycles(bus, n):
    for _ in range(n):
        bus.subscribe("messages")


async def _async_cycles(bus, n):
    """Half the cycles cancel a task waiting in the resolver, half aclose() it at its yield."""
    async def resolver():
        async for m in bus.subscribe("messages"):
            yield m

    for i in range(n):
        agen = resolver()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0)  # the task now waits inside Subscription.__anext__
        if i % 2:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            bus.publish_nowait("messages", i)
            assert await task == i
            await agen.aclose()


@pytest.mark.slow
def test_100k_subscribe_abandon_cycles_leave_broker_empty_and_memory_flat():
    bus = uvcore.PubSub()
    _cycles(bus, 1000)
    collect()
    tracemalloc.start()
    try:
        _cycles(bus, 100_000)
        collect()
        first, _ = tracemalloc.get_traced_memory()
        _cycles(bus, 100_000)
        collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert empty(bus)
    assert second - first < 64 * 1024, (first, second)


@pytest.mark.slow
def test_100k_async_generator_cycles_leave_broker_empty_and_memory_flat(run):
    async def main():
        bus = uvcore.PubSub()
        await _async_cycles(bus, 1000)
        collect()
        tracemalloc.start()
        try:
            await _async_cycles(bus, 50_000)
            collect()
            first, _ = tracemalloc.get_traced_memory()
            await _async_cycles(bus, 50_000)
            collect()
            second, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert empty(bus)
        assert second - first < 64 * 1024, (first, second)

    run(main, timeout=120)


def test_idle_subscription_costs_under_1_kib():
    bus = uvcore.PubSub()
    n = 10_000
    keep = [bus.subscribe("warmup") for _ in range(10)]
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        same = [bus.subscribe("room") for _ in range(n)]
        mid, _ = tracemalloc.get_traced_memory()
        names = [f"room.{i}" for i in range(n)]
        after_names, _ = tracemalloc.get_traced_memory()
        own = [bus.subscribe(name) for name in names]
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_shared = (mid - base) / n
    per_own = (end - after_names) / n  # includes a channel entry each
    assert per_shared < 1024 and per_own < 1024, (per_shared, per_own)
    assert len(same) + len(own) + len(keep) == bus.stats()["subscribers"]


def test_messages_are_released_once_read_dropped_or_discarded(run):
    import sys

    async def main():
        bus = uvcore.PubSub()
        msg = object()
        base = sys.getrefcount(msg)
        readers = [bus.subscribe("c") for _ in range(3)]
        dropper = bus.subscribe("c", maxsize=1)
        closer = bus.subscribe("c")
        cutoff = bus.subscribe("c", maxsize=1, overflow="disconnect")
        blocker = bus.subscribe("c", maxsize=1, overflow="block")
        pat = bus.subscribe(["c*", "?"])
        await bus.publish("c", msg)
        pub = asyncio.ensure_future(bus.publish("c", msg))  # waits for room in `blocker`
        await asyncio.sleep(0)
        assert sys.getrefcount(msg) > base
        for r in readers + [pat, blocker]:
            while r.pending:
                assert await r.__anext__() is msg
        assert await pub >= 1
        await closer.aclose()
        await dropper.aclose()
        del cutoff
        await bus.aclose()
        assert sys.getrefcount(msg) == base

    run(main)


# Messages per publish/read cycle. `make valgrind` sets UVCORE_VALGRIND: memcheck runs this
# 50-100 times slower, so a tenth of the cycles keeps it within the test's time limit while
# still running every path under memcheck (a leak per message would still show).
CYCLE = 2000 if os.environ.get("UVCORE_VALGRIND") else 20000


def test_publish_and_read_cycles_keep_memory_flat(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")

        async def reader(n):
            count = 0
            async for _ in sub:
                count += 1
                if count == n:
                    return

        async def cycle(n):
            task = asyncio.ensure_future(reader(n))
            for i in range(n):
                await bus.publish("c", i)
                if i % 3 == 0:
                    await asyncio.sleep(0)  # the reader waits on a Future now and then
            await task

        await cycle(CYCLE // 10)
        collect()
        tracemalloc.start()
        try:
            await cycle(CYCLE)
            collect()
            first, _ = tracemalloc.get_traced_memory()
            await cycle(CYCLE)
            collect()
            second, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert second - first < 32 * 1024, (first, second)

    run(main, timeout=60)
