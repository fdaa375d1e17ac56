"""PubSub.from_url: delivery through a real redis-server, in one process. The C broker
fans out locally; Redis sees one subscription per channel/pattern per process."""
import asyncio
import logging

import pytest

import uvcore
from redis_support import redis_server, run, until  # noqa: F401


def test_publish_goes_through_redis_and_counts_local_receivers(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            assert bus.stats()["connected"] is True
            a1 = bus.subscribe("deliv.a")
            a2 = bus.subscribe("deliv.a")
            assert await bus.publish("deliv.a", {"text": "hi", "n": 1}) == 2
            # the count is known only once the message came back: it is already buffered
            assert a1.pending == 1 and a2.pending == 1
            m1, m2 = await a1.__anext__(), await a2.__anext__()
            assert m1 == {"text": "hi", "n": 1} and m1 is m2  # one decode, shared by both
            assert await bus.publish("deliv.nobody", 1) == 0
            s = bus.stats()
            assert s["received"] == 1 and s["redis_published"] == 2 and s["delivered"] == 2

    run(main)


def test_one_redis_subscription_per_channel_and_unsubscribe_on_last_leave(run, redis_server):
    async def main():
        bus = uvcore.PubSub.from_url(redis_server.url)
        await bus.connect()
        subs = [bus.subscribe("numsub.x") for _ in range(3)]
        await bus.sync()
        assert redis_server.numsub("numsub.x") == 1
        await subs[0].aclose()
        del subs[1]
        await bus.sync()
        assert redis_server.numsub("numsub.x") == 1  # one local subscriber left
        await subs[-1].aclose()
        await bus.sync()
        assert redis_server.numsub("numsub.x") == 0
        assert bus.stats()["redis_subscriptions"] == 0

        # the same for a subscriber that goes away when its async for ends
        async def reader():
            async for msg in bus.subscribe("numsub.y"):
                return msg

        task = asyncio.ensure_future(reader())
        await until(lambda: bus.numsub("numsub.y") == 1)
        await bus.sync()
        assert redis_server.numsub("numsub.y") == 1
        await bus.publish("numsub.y", "bye")
        assert await task == "bye"
        await bus.sync()
        assert redis_server.numsub("numsub.y") == 0
        await bus.aclose()

    run(main)


def test_patterns_psubscribe_once_and_deliver_once(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            numpat0 = redis_server.numpat()
            p1 = bus.subscribe("pat.room.*")
            p2 = bus.subscribe("pat.room.*")
            exact = bus.subscribe("pat.room.1")
            both = bus.subscribe(["pat.room.1", "pat.room.?", "pat.*"])
            await bus.sync()
            assert redis_server.numpat() == numpat0 + 3
            # Redis sends this connection 4 copies (channel + 3 patterns); delivered once each
            assert await bus.publish("pat.room.1", "m1") == 4
            assert await bus.publish("pat.room.22", "m2") == 3
            assert await bus.publish("pat.other", "m3") == 1
            assert [await p1.__anext__(), await p1.__anext__()] == ["m1", "m2"]
            assert [await exact.__anext__()] == ["m1"] and exact.pending == 0
            assert [await both.__anext__() for _ in range(3)] == ["m1", "m2", "m3"]
            assert both.pending == 0 and p2.pending == 2
            # identical messages in a row are each delivered (not taken for copies)
            assert await bus.publish("pat.room.1", "m1") == 4
            assert await bus.publish("pat.room.1", "m1") == 4
            assert both.pending == 2 and exact.pending == 2
            for s in (p1, p2, both):
                await s.aclose()
            await bus.sync()
            assert redis_server.numpat() == numpat0

    run(main)


def test_publish_nowait_keeps_order_and_returns_none(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            sub = bus.subscribe("nowait.q", maxsize=0)
            for i in range(500):
                assert bus.publish_nowait("nowait.q", i) is None
            assert await bus.publish("nowait.q", "end") == 1
            got = [await sub.__anext__() for _ in range(501)]
            assert got == list(range(500)) + ["end"]

    run(main)


def test_subscribe_then_sync_sees_messages_from_another_connection(run, redis_server):
    async def main():
        import redis.asyncio as aioredis

        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            sub = bus.subscribe("other.conn")
            await bus.sync()
            client = aioredis.Redis.from_url(redis_server.url)
            try:
                assert await client.publish("other.conn", '{"from": "redis-py"}') == 1
            finally:
                await client.aclose()
            assert await asyncio.wait_for(sub.__anext__(), 5) == {"from": "redis-py"}

    run(main)


@pytest.mark.parametrize(
    "codec, message",
    [
        ("json", {"a": [1, 2.5, None, "é"]}),
        ("pickle", {"a", frozenset({1})}),
        ("bytes", b"\x00\xffraw"),
        ((lambda o: o.upper(), lambda b: b.decode() + "!"), "shout"),
    ],
    ids=["json", "pickle", "bytes", "callables"],
)
def test_codecs(run, redis_server, codec, message):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url, codec=codec) as bus:
            sub = bus.subscribe("codec.x")
            assert await bus.publish("codec.x", message) == 1
            got = await sub.__anext__()
            if codec == "bytes" or isinstance(codec, str):
                assert got == message
            else:
                assert got == "SHOUT!"

    run(main)


def test_codec_errors_on_publish_are_the_publishers(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            with pytest.raises(TypeError, match="not JSON serializable"):
                await bus.publish("codec.err", object())
        async with uvcore.PubSub.from_url(redis_server.url, codec="bytes") as bus:
            with pytest.raises(TypeError, match="bytes-like"):
                await bus.publish("codec.err", "text")
            with pytest.raises(TypeError, match="bytes-like"):
                bus.publish_nowait("codec.err", 1)

    run(main)


def test_undecodable_messages_are_counted_and_logged_never_fatal(run, redis_server, caplog):
    async def main():
        import redis.asyncio as aioredis

        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            sub = bus.subscribe("bad.json")
            await bus.sync()
            client = aioredis.Redis.from_url(redis_server.url)
            try:
                await client.publish("bad.json", b"{not json")
                await client.publish("bad.json", b"\xff\xfe")
                await client.publish("bad.json", b'{"ok": true}')
            finally:
                await client.aclose()
            assert await asyncio.wait_for(sub.__anext__(), 5) == {"ok": True}
            s = bus.stats()
            assert s["decode_errors"] == 2 and s["received"] == 3 and s["connected"]
            assert await bus.publish("bad.json", "still working") == 1

    with caplog.at_level(logging.WARNING, logger="uvcore.redis"):
        run(main)
    assert "cannot decode a message on 'bad.json' with the json codec" in caplog.text


def test_overflow_block_applies_to_messages_from_redis(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            slow = bus.subscribe("block.x", maxsize=2, overflow="block")
            pubs = [asyncio.ensure_future(bus.publish("block.x", i)) for i in range(5)]
            await until(lambda: slow.pending >= 2)
            got = []
            while len(got) < 5:
                got.append(await asyncio.wait_for(slow.__anext__(), 5))
            assert got == [0, 1, 2, 3, 4]
            assert await asyncio.gather(*pubs) == [1] * 5
            assert slow.dropped == 0

    run(main)


def test_aclose_ends_iterators_and_closes_the_bus(run, redis_server):
    async def main():
        bus = uvcore.PubSub.from_url(redis_server.url)
        sub = bus.subscribe("close.x")
        assert await bus.publish("close.x", "last") == 1

        async def drain():
            return [m async for m in sub]

        task = asyncio.ensure_future(drain())
        await bus.aclose()
        assert await task == ["last"]
        assert bus.closed and bus.stats()["connected"] is False
        with pytest.raises(RuntimeError, match="closed"):
            await bus.publish("close.x", 1)
        with pytest.raises(RuntimeError, match="closed"):
            bus.subscribe("close.x")
        await bus.aclose()  # idempotent

    run(main)


def test_repr_and_stats_name_the_backend(run, redis_server):
    async def main():
        bus = uvcore.PubSub.from_url(redis_server.url.replace("redis://", "redis://:secret@"))
        assert "secret" not in repr(bus) and "***" in repr(bus)
        assert isinstance(bus, uvcore.PubSub) and bus.stats()["backend"] == "redis"
        await bus.aclose()

    run(main)


def test_subscriptions_outliving_their_loop_are_harmless(redis_server):
    import gc
    import sys

    loop = asyncio.new_event_loop()
    bus = uvcore.PubSub.from_url(redis_server.url)

    async def main():
        await bus.connect()
        return [bus.subscribe("outlive.x"), bus.subscribe("outlive.*")]

    subs = loop.run_until_complete(main())
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    unraisable = []
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        del subs  # the last local subscribers leave after their loop is closed
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert unraisable == [] and bus.stats()["subscribers"] == 0
