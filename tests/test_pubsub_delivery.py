"""PubSub delivery: eager registration, receiver counts, ordering, fairness, shared messages."""
import asyncio
import builtins

import pytest

import uvcore
from pubsub_support import run, until  # noqa: F401


def test_subscribe_registers_eagerly_before_iteration(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("messages")
        assert bus.stats()["subscribers"] == 1
        assert await bus.publish("messages", 1) == 1
        assert sub.pending == 1
        assert await sub.__anext__() == 1

    run(main)


def test_publish_returns_number_of_local_receivers(run):
    async def main():
        bus = uvcore.PubSub()
        assert await bus.publish("nobody", "x") == 0
        subs = [bus.subscribe("room") for _ in range(5)]
        other = bus.subscribe("other")
        assert await bus.publish("room", "x") == 5
        assert bus.publish_nowait("room", "y") == 5
        assert other.pending == 0
        assert [s.pending for s in subs] == [2] * 5

    run(main)


def test_one_message_object_is_shared_by_all_receivers(run):
    async def main():
        bus = uvcore.PubSub()
        subs = [bus.subscribe("c") for _ in range(10)]
        msg = {"payload": [1, 2, 3]}
        await bus.publish("c", msg)
        for s in subs:
            assert (await s.__anext__()) is msg

    run(main)


def test_async_for_receives_in_publish_order(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        got = []

        async def reader():
            async for m in sub:
                got.append(m)
                if len(got) == 200:
                    return

        task = asyncio.ensure_future(reader())
        for i in range(100):
            await bus.publish("c", i)
            await asyncio.sleep(0)
        for i in range(100, 200):
            bus.publish_nowait("c", i)
        await task
        assert got == list(range(200))

    run(main)


def test_ordering_per_publisher_with_concurrent_publishers(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=0)

        async def publisher(name):
            for i in range(300):
                await bus.publish("c", (name, i))
                if i % 7 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(*(publisher(n) for n in "abc"))
        got = [await sub.__anext__() for _ in range(900)]
        for name in "abc":
            assert [i for n, i in got if n == name] == list(range(300))
        assert {n for n, _ in got[:50]} == set("abc"), "publishers interleave"

    run(main)


def test_fairness_every_subscriber_task_gets_every_message(run):
    async def main():
        bus = uvcore.PubSub()
        n_subs, n_msgs = 50, 100
        received = [[] for _ in range(n_subs)]
        subs = [bus.subscribe("c") for _ in range(n_subs)]
        progress = []

        async def reader(k):
            async for m in subs[k]:
                received[k].append(m)
                progress.append(k)
                if len(received[k]) == n_msgs:
                    return

        tasks = [asyncio.ensure_future(reader(k)) for k in range(n_subs)]
        for i in range(n_msgs):
            await bus.publish("c", i)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert all(r == list(range(n_msgs)) for r in received)
        # Each wake-up round serves every subscriber before any gets a second turn.
        first_round = progress[:n_subs]
        assert sorted(first_round) == list(range(n_subs))

    run(main)


def test_channels_are_isolated_and_names_are_exact(run):
    async def main():
        bus = uvcore.PubSub()
        a, b = bus.subscribe("a"), bus.subscribe("A")
        await bus.publish("a", 1)
        assert (a.pending, b.pending) == (1, 0)
        assert await bus.publish("a ", 2) == 0

    run(main)


def test_subscribe_to_several_channels_at_once(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe(["x", "y", "x"])
        assert sub.channel == ("x", "y")
        await bus.publish("x", 1)
        await bus.publish("y", 2)
        await bus.publish("z", 3)
        assert [await sub.__anext__(), await sub.__anext__()] == [1, 2]
        assert bus.numsub("x") == 1 and bus.numsub("y") == 1
        await sub.aclose()
        assert bus.stats()["channels"] == 0

    run(main)


def test_async_with_subscription_and_properties(run):
    async def main():
        bus = uvcore.PubSub()
        async with bus.subscribe("news", maxsize=8, overflow="drop_newest") as sub:
            assert isinstance(sub, uvcore.Subscription)
            assert sub.channel == "news" and sub.maxsize == 8 and sub.overflow == "drop_newest"
            assert not sub.is_pattern and not sub.closed
            await bus.publish("news", "x")
            assert sub.pending == 1 and sub.dropped == 0
            assert "news" in repr(sub)
        assert sub.closed and sub.pending == 0
        assert bus.stats()["subscribers"] == 0

    run(main)


def test_stats_count_channels_subscribers_published_delivered_dropped(run):
    async def main():
        bus = uvcore.PubSub()
        s1 = bus.subscribe("a", maxsize=1, overflow="drop_newest")
        s2 = bus.subscribe("a")
        s3 = bus.subscribe("b.*")
        await bus.publish("a", 1)
        await bus.publish("a", 2)
        await bus.publish("b.x", 3)
        assert bus.stats() == {
            "channels": 1, "patterns": 1, "subscribers": 3,
            "published": 3, "delivered": 4, "dropped": 1,
        }
        assert sorted(bus.channels()) == ["a"] and bus.patterns() == ["b.*"]
        del s1, s2, s3

    run(main)


def test_waiting_subscriber_wakes_when_message_arrives(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        task = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        assert not task.done()
        await bus.publish("c", "hello")
        assert await task == "hello"

    run(main)


def test_publish_is_awaitable_and_completes_without_suspending():
    # The receiver count is ready at once: the awaitable finishes on its first step.
    bus = uvcore.PubSub()
    bus.subscribe("c")  # dropped at once: nobody left
    sub = bus.subscribe("c")
    aw = bus.publish("c", 1).__await__()
    with pytest.raises(StopIteration) as exc:
        aw.send(None)
    assert exc.value.value == 1
    nxt = sub.__anext__().__await__()
    with pytest.raises(StopIteration) as exc:
        next(nxt)
    assert exc.value.value == 1


def test_tuple_and_exception_messages_are_delivered_intact(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        err = ValueError("as data")
        for m in [(1, 2), (), None, err, StopIteration]:
            await bus.publish("c", m)
        got = [await sub.__anext__() for _ in range(5)]
        assert got[:3] == [(1, 2), (), None] and got[3] is err and got[4] is StopIteration

    run(main)


def test_anext_builtin_and_wait_for_timeout_lose_nothing(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.01)
        await bus.publish("c", "late")
        assert await asyncio.wait_for(sub.__anext__(), 1) == "late"
        anext_ = getattr(builtins, "anext", None)  # 3.10+
        if anext_ is not None:
            await bus.publish("c", "x")
            assert await anext_(sub) == "x"
            await sub.aclose()
            assert await anext_(sub, "done") == "done"

    run(main)
