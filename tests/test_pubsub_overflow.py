"""Overflow policies of a full subscription: drop_oldest, drop_newest, block, disconnect."""
import asyncio

import pytest

import uvcore
from pubsub_support import run, until  # noqa: F401


async def drain(sub):
    out = []
    while sub.pending:
        out.append(await sub.__anext__())
    return out


def test_drop_oldest_keeps_the_newest_messages(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=3)  # drop_oldest is the default
        assert sub.overflow == "drop_oldest"
        for i in range(10):
            assert await bus.publish("c", i) == 1
        assert sub.pending == 3 and sub.dropped == 7
        assert await drain(sub) == [7, 8, 9]
        assert bus.stats()["dropped"] == 7

    run(main)


def test_drop_newest_keeps_the_oldest_messages(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=3, overflow="drop_newest")
        counts = [await bus.publish("c", i) for i in range(10)]
        assert counts == [1, 1, 1] + [0] * 7
        assert sub.dropped == 7
        assert await drain(sub) == [0, 1, 2]

    run(main)


def test_unbounded_subscription_never_drops(run):
    async def main():
        bus = uvcore.PubSub(maxsize=0)
        sub = bus.subscribe("c")
        for i in range(5000):
            bus.publish_nowait("c", i)
        assert sub.pending == 5000 and sub.dropped == 0
        assert await drain(sub) == list(range(5000))

    run(main)


def test_block_makes_the_publisher_wait_for_room(run):
    async def main():
        bus = uvcore.PubSub()
        slow = bus.subscribe("c", maxsize=2, overflow="block")
        fast = bus.subscribe("c", maxsize=100)
        for i in range(2):
            assert await bus.publish("c", i) == 2
        pub = asyncio.ensure_future(bus.publish("c", 2))
        await asyncio.sleep(0)
        assert not pub.done()
        assert fast.pending == 3, "subscribers with room got it at once"
        assert slow.pending == 3, "the blocked message waits in line"
        assert await slow.__anext__() == 0
        assert await pub == 2
        assert await drain(slow) == [1, 2]
        assert slow.dropped == 0

    run(main)


def test_block_publishers_are_served_in_order(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=1, overflow="block")
        await bus.publish("c", "first")
        done = []

        async def publisher(i):
            await bus.publish("c", i)
            done.append(i)

        tasks = [asyncio.ensure_future(publisher(i)) for i in range(5)]
        await asyncio.sleep(0)
        assert done == []
        got = [await sub.__anext__()]
        while len(got) < 6:
            got.append(await sub.__anext__())
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert got == ["first", 0, 1, 2, 3, 4]
        assert done == [0, 1, 2, 3, 4]

    run(main)


def test_block_publish_nowait_raises_queue_full_and_delivers_nothing(run):
    async def main():
        bus = uvcore.PubSub()
        blocking = bus.subscribe("c", maxsize=1, overflow="block")
        other = bus.subscribe("c")
        bus.publish_nowait("c", 1)
        with pytest.raises(asyncio.QueueFull, match="block"):
            bus.publish_nowait("c", 2)
        assert other.pending == 1 and blocking.pending == 1

    run(main)


def test_cancelled_blocked_publisher_withdraws_its_message(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=1, overflow="block")
        await bus.publish("c", 1)
        pub = asyncio.ensure_future(bus.publish("c", 2))
        await asyncio.sleep(0)
        pub.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pub
        assert await sub.__anext__() == 1
        assert sub.pending == 0 and sub.dropped == 1
        assert await bus.publish("c", 3) == 1
        assert await sub.__anext__() == 3

    run(main)


def test_closing_a_blocking_subscriber_releases_the_publisher(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=1, overflow="block")
        await bus.publish("c", 1)
        pub = asyncio.ensure_future(bus.publish("c", 2))
        await asyncio.sleep(0)
        await sub.aclose()
        assert await pub == 1

    run(main)


def test_disconnect_raises_subscriber_overflow_and_unsubscribes(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=2, overflow="disconnect")
        ok = bus.subscribe("c")
        assert await bus.publish("c", 1) == 2
        assert await bus.publish("c", 2) == 2
        assert await bus.publish("c", 3) == 1, "the overflowing subscriber is cut off"
        assert bus.numsub("c") == 1 and sub.closed
        assert sub.dropped == 3
        with pytest.raises(uvcore.SubscriberOverflow, match="behind"):
            async for _ in sub:
                pass
        assert await bus.publish("c", 4) == 1
        assert ok.pending == 4

    run(main)


def test_disconnect_wakes_a_waiting_iterator_with_the_error(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=1, overflow="disconnect")
        waiter = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        bus.publish_nowait("c", 1)  # wakes the waiter, which has not run yet
        bus.publish_nowait("c", 2)  # over maxsize before it could read: disconnected
        with pytest.raises(uvcore.SubscriberOverflow):
            await waiter
        with pytest.raises(uvcore.SubscriberOverflow):
            await sub.__anext__()
        assert issubclass(uvcore.SubscriberOverflow, Exception)
        assert bus.stats()["subscribers"] == 0

    run(main)
