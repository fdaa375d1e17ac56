"""The Redis bridge's protocol handling, frame by frame, against a scripted connection:
replies paired with commands, a publish's own copy before (Redis <= 7.0) or after (7.2+)
its reply, copies of one publish delivered once, and desynchronisation handled as a lost
connection. Then redis-py's own parser (no hiredis fast path) against a real server."""
import asyncio

import pytest

from uvcore._redis import _SELF_AFTER, _SELF_BEFORE, RedisPubSub
from redis_support import redis_server, run, until  # noqa: F401


class ScriptedWire:
    """Plays the connection and the frame reader: records what the bridge writes, and
    hands it the frames the test feeds."""

    def __init__(self, order):
        self.order = order
        self.written = []
        self.frames = asyncio.Queue()
        self.closed = 0

    def feed(self, *frames):
        self.frames.put_nowait(list(frames))

    async def read(self):
        batch = await self.frames.get()
        if batch == ["EOF"]:
            raise ConnectionError("scripted end")
        return batch

    def write(self, commands):
        self.written.extend(commands)

    async def disconnect(self, nowait=False):
        self.closed += 1


class Scripted(RedisPubSub):
    __slots__ = ("wire", "wires")

    async def _open(self):
        self.wire = self.wires.pop(0)
        self._self_order = self.wire.order
        return self.wire, self.wire


def make_bus(*orders):
    bus = Scripted("redis://127.0.0.1:1/0", reconnect_delay=0.01)
    bus.wires = [ScriptedWire(o) for o in orders]
    return bus


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


PING = cmd(b"PING")


@pytest.mark.parametrize("order", [_SELF_BEFORE, _SELF_AFTER])
def test_own_message_is_counted_wherever_the_server_puts_it(order):
    async def main():
        bus = make_bus(order)
        await bus.connect()
        wire = bus.wire
        sub = bus.subscribe("a")
        pat = bus.subscribe("a*")
        await settle()
        assert wire.written == [cmd(b"SUBSCRIBE", b"a"), cmd(b"PSUBSCRIBE", b"a*")]
        wire.feed([b"subscribe", b"a", 1], [b"psubscribe", b"a*", 2])
        await settle()
        assert bus.stats()["redis_subscriptions"] == 2

        pub = asyncio.ensure_future(bus.publish("a", 7))
        await settle()
        expect = [cmd(b"PUBLISH", b"a", b"7")] + ([PING] if order == _SELF_AFTER else [])
        assert wire.written[2:] == expect
        copies = [[b"message", b"a", b"7"], [b"pmessage", b"a*", b"a", b"7"]]
        if order == _SELF_BEFORE:
            wire.feed(*copies, 2)
        else:
            wire.feed(2, *copies, b"PONG")
        assert await asyncio.wait_for(pub, 2) == 2
        assert [await sub.__anext__(), await pat.__anext__()] == [7, 7]
        assert sub.pending == 0 and pat.pending == 0  # the second copy was not delivered again

        # no copy comes back (nobody here listens on "b"), and a foreign message follows
        pub = asyncio.ensure_future(bus.publish("b", 1))
        await settle()
        foreign = [b"message", b"a", b"8"]
        if order == _SELF_BEFORE:
            wire.feed(foreign, 1)
        else:
            wire.feed(1, foreign, b"PONG")
        assert await asyncio.wait_for(pub, 2) == 0
        assert await sub.__anext__() == 8

        # two identical publishes in a row are two messages, not copies of one
        pubs = [asyncio.ensure_future(bus.publish("a", 7)) for _ in range(2)]
        await settle()
        one = [b"message", b"a", b"7"]
        if order == _SELF_BEFORE:
            wire.feed(one, 1, one, 1)
        else:
            wire.feed(1, one, 1, one, b"PONG")
        assert await asyncio.gather(*pubs) == [2, 2]  # sub and pat
        assert sub.pending == 2
        await bus.aclose()

    asyncio.run(main())


def test_replies_out_of_step_are_a_lost_connection():
    async def main():
        bus = make_bus(_SELF_BEFORE, _SELF_BEFORE)
        await bus.connect()
        first = bus.wire
        pub = asyncio.ensure_future(bus.publish("x", 1))
        await settle()
        first.feed([b"subscribe", b"x", 1])  # a confirmation nobody asked for
        with pytest.raises(ConnectionError, match="may or may not have been published"):
            await asyncio.wait_for(pub, 2)
        await until(lambda: bus.stats()["connected"] and bus.wire is not first)
        assert bus.stats()["reconnects"] == 1 and first.closed
        await bus.aclose()

    asyncio.run(main())


def test_resubscribes_what_is_local_after_a_reconnect():
    async def main():
        bus = make_bus(_SELF_BEFORE, _SELF_BEFORE)
        subs = [bus.subscribe("r.1"), bus.subscribe("r.*"), bus.subscribe(["r.1", "r.2"])]  # noqa: F841
        await bus.connect()
        first = bus.wire
        await settle()
        assert sorted(first.written) == sorted([cmd(b"SUBSCRIBE", b"r.1"), cmd(b"PSUBSCRIBE", b"r.*"),
                                                cmd(b"SUBSCRIBE", b"r.2")])
        first.feed("EOF")
        await until(lambda: bus.stats()["connected"] and bus.wire is not first)
        await settle()
        assert sorted(bus.wire.written) == sorted(first.written)
        await bus.aclose()

    asyncio.run(main())


def test_redis_py_parser_path(run, redis_server):
    """Without the hiredis fast path the bridge reads through redis-py's parser."""

    async def main():
        async with RedisPubSub(redis_server.url, _fast_reader=False) as bus:
            assert not bus._frames.fast
            sub = bus.subscribe("slow.*")
            assert await bus.publish("slow.1", {"a": 1}) == 1
            bus.publish_nowait("slow.2", [2])
            assert [await sub.__anext__(), await sub.__anext__()] == [{"a": 1}, [2]]
            await bus.sync()
            assert redis_server.numpat() >= 1

    run(main)
