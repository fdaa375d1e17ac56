"""Slow consumers under each PubSub overflow policy: whatever the publishers do, a subscriber
never holds more than its maxsize messages (counted as live message objects, which is what
memory is made of), fast subscribers on the same channel get everything, and stats() count
every drop."""
from __future__ import annotations

import asyncio
import gc

import pytest

import uvcore

PUBLISHED = 5_000
MAXSIZE = 16


class Msg:
    """A message that counts its live instances (the broker shares one object per publish)."""

    live = 0
    __slots__ = ("n", "payload")

    def __init__(self, n):
        self.n = n
        self.payload = bytes(256)
        Msg.live += 1

    def __del__(self):
        Msg.live -= 1


@pytest.fixture(autouse=True)
def _no_leftover_messages():
    gc.collect()
    Msg.live = 0
    yield
    gc.collect()
    assert Msg.live == 0, "messages leaked"


async def fast_reader(sub, n):
    got = []
    async for m in sub:
        got.append(m.n)
        if len(got) == n:
            return got
    return got


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_stalled_subscriber_holds_at_most_maxsize(policy, tally):
    async def main():
        bus = uvcore.PubSub()
        stalled = bus.subscribe("c", maxsize=MAXSIZE, overflow=policy)
        fast = bus.subscribe("c", maxsize=PUBLISHED)
        peak = 0
        for i in range(PUBLISHED):
            bus.publish_nowait("c", Msg(i))
            if i % 8 == 0:
                # The fast subscriber drains as it goes; the stalled one never reads.
                while fast.pending:
                    await fast.__anext__()
                peak = max(peak, Msg.live)
        kept = [(await stalled.__anext__()).n for _ in range(stalled.pending)]
        stats = bus.stats()
        await bus.aclose()
        return peak, kept, stalled.dropped, stats

    peak, kept, dropped, stats = uvcore.run(main())
    tally["faults"] += 1
    tally["messages_dropped_by_overflow"] += PUBLISHED - MAXSIZE
    assert peak <= MAXSIZE + 8 + 1
    assert dropped == PUBLISHED - MAXSIZE == stats["dropped"]
    if policy == "drop_oldest":
        assert kept == list(range(PUBLISHED - MAXSIZE, PUBLISHED))
    else:
        assert kept == list(range(MAXSIZE))


def test_block_policy_makes_publishers_wait_and_bounds_memory(tally):
    async def main():
        bus = uvcore.PubSub()
        slow = bus.subscribe("c", maxsize=MAXSIZE, overflow="block")
        peak = 0
        received = []

        async def publisher(k):
            for i in range(PUBLISHED // 4):
                await bus.publish("c", Msg(k * PUBLISHED + i))

        async def consumer():
            nonlocal peak
            while len(received) < PUBLISHED:
                received.append((await slow.__anext__()).n)
                peak = max(peak, Msg.live)
                if len(received) % 3 == 0:
                    await asyncio.sleep(0)  # slower than the publishers

        await asyncio.wait_for(asyncio.gather(consumer(), *(publisher(k) for k in range(4))), 120)
        await bus.aclose()
        return peak, received, slow.dropped

    peak, received, dropped = uvcore.run(main())
    tally["faults"] += 1
    tally["publishes_against_a_blocking_slow_consumer"] += PUBLISHED
    # Buffered messages plus at most one waiting message per blocked publisher.
    assert peak <= MAXSIZE + 4 + 1
    assert dropped == 0 and len(received) == PUBLISHED
    for k in range(4):  # each publisher's messages arrive in its order
        mine = [n for n in received if n // PUBLISHED == k]
        assert mine == sorted(mine) and len(mine) == PUBLISHED // 4


def test_disconnect_policy_cuts_off_the_slow_one_and_frees_its_buffer(tally):
    async def main():
        bus = uvcore.PubSub()
        slow = bus.subscribe("c", maxsize=MAXSIZE, overflow="disconnect")
        fast = bus.subscribe("c", maxsize=PUBLISHED)
        reader = asyncio.ensure_future(fast_reader(fast, PUBLISHED))
        for i in range(PUBLISHED):
            await bus.publish("c", Msg(i))
        got = await asyncio.wait_for(reader, 60)
        live_after = Msg.live
        with pytest.raises(uvcore.SubscriberOverflow):
            await slow.__anext__()
        stats = bus.stats()
        await bus.aclose()
        return got, live_after, slow.dropped, stats

    got, live_after, dropped, stats = uvcore.run(main())
    tally["faults"] += 1
    assert got == list(range(PUBLISHED))
    assert live_after <= 1  # the last published message at most (still referenced by the loop)
    assert dropped == MAXSIZE + 1
    assert stats["subscribers"] == 1


def test_many_stalled_subscribers_memory_is_bounded_by_their_maxsize(tally):
    n_subs = 500

    async def main():
        bus = uvcore.PubSub()
        subs = [bus.subscribe(f"room.{i % 10}", maxsize=4) for i in range(n_subs)]
        pattern = bus.subscribe("room.*", maxsize=4, overflow="drop_newest")
        for i in range(2_000):
            bus.publish_nowait(f"room.{i % 10}", Msg(i))
        live = Msg.live
        pending = sum(s.pending for s in subs) + pattern.pending
        await bus.aclose()
        return live, pending, bus.stats()

    live, pending, stats = uvcore.run(main())
    tally["faults"] += 1
    tally["messages_dropped_by_overflow"] += stats["dropped"]
    assert pending == n_subs * 4 + 4
    assert live <= 10 * 4 + 4  # messages are shared: at most 4 distinct per room (+ pattern's)
