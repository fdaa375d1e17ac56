"""PubSub.from_url with a subscriber using overflow="block" that stops reading: it holds back
only itself (its messages wait in its own pending queue, in order, none dropped); other
subscribers of its channel, other channels, publish() and the health check go on."""
import asyncio

import uvcore
from redis_support import redis_server, run, until  # noqa: F401


def test_a_stuck_block_subscriber_does_not_stall_other_channels(run, redis_server):
    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            stuck = bus.subscribe("iso.d", maxsize=1, overflow="block")
            same = bus.subscribe("iso.d")  # same channel, default policy
            other = bus.subscribe("iso.e")
            await bus.sync()
            bus.publish_nowait("iso.d", 1)
            bus.publish_nowait("iso.d", 2)
            bus.publish_nowait("iso.e", "hello")
            assert await asyncio.wait_for(other.__anext__(), 5) == "hello"
            assert [await asyncio.wait_for(same.__anext__(), 5) for _ in range(2)] == [1, 2]
            # publish() still gets its reply; the stuck subscriber counts as a receiver: the
            # message is queued for it
            assert await asyncio.wait_for(bus.publish("iso.e", "again"), 5) == 1
            assert await asyncio.wait_for(bus.publish("iso.d", 3), 5) == 2
            assert stuck.pending == 3 and stuck.dropped == 0
            assert [await asyncio.wait_for(stuck.__anext__(), 5) for _ in range(3)] == [1, 2, 3]
            assert await other.__anext__() == "again"
            assert await same.__anext__() == 3

    run(main)


def test_the_health_check_does_not_fire_because_of_a_stuck_subscriber(run, redis_server):
    interval = 0.2

    async def main():
        async with uvcore.PubSub.from_url(redis_server.url, health_check_interval=interval) as bus:
            stuck = bus.subscribe("iso.hc.d", maxsize=1, overflow="block")
            other = bus.subscribe("iso.hc.e")
            await bus.sync()
            for i in range(3):
                bus.publish_nowait("iso.hc.d", i)
            await until(lambda: stuck.pending == 3)
            loop = asyncio.get_running_loop()
            end = loop.time() + 6 * interval  # three times what the check allows a silent peer
            got = 0
            while loop.time() < end:
                assert await asyncio.wait_for(bus.publish("iso.hc.e", got), 5) == 1
                assert await asyncio.wait_for(other.__anext__(), 5) == got
                got += 1
                await asyncio.sleep(interval / 4)  # time passing is what is tested
            s = bus.stats()
            assert s["connected"] and s["reconnects"] == 0, s
            assert [await stuck.__anext__() for _ in range(3)] == [0, 1, 2]

    run(main)
