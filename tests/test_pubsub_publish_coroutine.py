"""What PubSub.publish() returns behaves as a coroutine in every state: asyncio.create_task,
TaskGroup, gather, wait_for and run_until_complete take it, also when it must wait for room
in a subscriber with overflow="block", and the message is queued exactly once."""
import asyncio
import collections.abc
import sys

import pytest

import uvcore
from pubsub_support import LOOPS, run, until  # noqa: F401


def blocked_bus():
    """A bus whose subscriber "c" (block, maxsize=1) is full: the next publish must wait."""
    bus = uvcore.PubSub()
    sub = bus.subscribe("c", maxsize=1, overflow="block")
    assert bus.publish_nowait("c", 0) == 1
    return bus, sub


async def drain(sub, n):
    return [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(n)]


def test_publish_result_is_a_coroutine_when_it_completes_at_once_and_when_it_waits(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=1, overflow="block")
        ready = bus.publish("c", 1)  # room: completes on its first step
        waiting = bus.publish("c", 2)  # full: waits for room
        for aw in (ready, waiting):
            assert asyncio.iscoroutine(aw)
            assert isinstance(aw, collections.abc.Coroutine)
        assert sub.pending == 2  # both queued when called
        assert await ready == 1
        task = asyncio.create_task(waiting)
        assert await drain(sub, 2) == [1, 2]
        assert await asyncio.wait_for(task, 5) == 1

    run(main)


def test_create_task_of_a_blocked_publish_queues_once_and_returns_the_count(run):
    async def main():
        bus, sub = blocked_bus()
        other = bus.subscribe("c")  # not full: gets the message at once
        task = asyncio.create_task(bus.publish("c", 1))
        assert sub.pending == 2 and other.pending == 1
        assert await drain(sub, 2) == [0, 1]
        assert await asyncio.wait_for(task, 5) == 2
        assert bus.stats()["published"] == 2 and sub.pending == 0 and other.pending == 1

    run(main)


def test_blocked_publish_works_with_gather_wait_for_ensure_future_and_taskgroup(run):
    async def main():
        bus, sub = blocked_bus()
        gathered = asyncio.gather(bus.publish("c", 1), bus.publish("c", 2))
        timed = asyncio.ensure_future(asyncio.wait_for(bus.publish("c", 3), 5))
        ensured = asyncio.ensure_future(bus.publish("c", 4))
        results = []
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as tg:
                grouped = tg.create_task(bus.publish("c", 5))
                results.append(await drain(sub, 6))
            assert grouped.result() == 1
        else:
            results.append(await drain(sub, 5))
            assert await bus.publish("c", 5) == 1  # room now
            results[0].append(await sub.__anext__())
        assert results[0] == [0, 1, 2, 3, 4, 5]
        assert await gathered == [1, 1] and await timed == 1 and await ensured == 1

    run(main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_run_until_complete_takes_a_blocked_publish(loop_name):
    loop = LOOPS[loop_name]()
    try:
        bus, sub = blocked_bus()

        async def reader():
            return await drain(sub, 2)

        async def main():
            task = asyncio.ensure_future(reader())
            n = await bus.publish("c", 1)
            return n, await task

        assert loop.run_until_complete(main()) == (1, [0, 1])
        # run_until_complete() straight on the publish's awaitable too
        waiting = loop.run_until_complete(_publish_while_full(bus, sub))
        assert waiting == (1, [2, 3])
    finally:
        loop.close()


async def _publish_while_full(bus, sub):
    assert bus.publish_nowait("c", 2) == 1
    aw = bus.publish("c", 3)  # made in the loop (it needs the running loop's future)
    reader = asyncio.ensure_future(drain(sub, 2))
    return await asyncio.ensure_future(aw), await reader


def test_cancelling_a_task_of_a_blocked_publish_withdraws_its_message(run):
    async def main():
        bus, sub = blocked_bus()
        before_start = asyncio.create_task(bus.publish("c", 1))
        before_start.cancel()  # thrown in on its first step, before it waits
        suspended = asyncio.create_task(bus.publish("c", 2))
        await asyncio.sleep(0)  # both tasks have run one step
        suspended.cancel()
        kept = asyncio.create_task(bus.publish("c", 3))
        for t in (before_start, suspended):
            with pytest.raises(asyncio.CancelledError):
                await t
        assert await drain(sub, 2) == [0, 3]
        assert await asyncio.wait_for(kept, 5) == 1
        assert sub.dropped == 2 and sub.pending == 0

    run(main)


def test_a_publish_awaitable_cannot_be_awaited_twice(run):
    async def main():
        bus, sub = blocked_bus()
        aw = bus.publish("c", 1)
        task = asyncio.ensure_future(aw)
        assert await drain(sub, 2) == [0, 1]
        assert await task == 1
        with pytest.raises(RuntimeError, match="already awaited"):
            await aw

    run(main)
