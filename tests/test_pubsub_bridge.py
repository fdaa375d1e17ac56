"""The backend hook: a bridge learns when a channel or pattern gains its first local
subscriber and loses its last, and injects messages for local delivery (the Redis
bridge of PubSub.from_url sits on this)."""
import asyncio

import pytest

import uvcore
from pubsub_support import collect, run  # noqa: F401


class Recorder:
    def __init__(self):
        self.events = []

    def on_first_subscriber(self, name, is_pattern):
        self.events.append(("+", name, is_pattern))

    def on_last_subscriber(self, name, is_pattern):
        self.events.append(("-", name, is_pattern))


def test_bridge_hears_first_and_last_subscriber_per_channel_and_pattern(run):
    async def main():
        bus = uvcore.PubSub()
        rec = Recorder()
        bus._set_bridge(rec)
        a1 = bus.subscribe("a")
        a2 = bus.subscribe("a")
        p = bus.subscribe("chat.*")
        assert rec.events == [("+", "a", False), ("+", "chat.*", True)]
        await a1.aclose()
        assert rec.events[-1] == ("+", "chat.*", True)
        del a2  # the last "a" subscriber, gone by deallocation
        assert rec.events[-1] == ("-", "a", False)

        async def resolver():
            async for m in bus.subscribe(["chat.*", "b"]):
                yield m

        agen = resolver()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0)
        assert rec.events[-1] == ("+", "b", False)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert rec.events[-1] == ("-", "b", False)
        await bus.aclose()
        assert rec.events[-1] == ("-", "chat.*", True)
        assert p.closed

    run(main)


def test_publish_local_injects_messages_for_local_delivery(run):
    async def main():
        bus = uvcore.PubSub()
        bus._set_bridge(Recorder())
        sub = bus.subscribe("x.*")
        assert await bus.publish_local("x.1", "from-redis") == 1
        assert bus.publish_local_nowait("x.2", "again") == 1
        assert [await sub.__anext__(), await sub.__anext__()] == ["from-redis", "again"]

    run(main)


def test_bridge_hook_errors(run):
    async def main():
        class Failing(Recorder):
            def on_first_subscriber(self, name, is_pattern):
                raise ConnectionError("backend down")

        bus = uvcore.PubSub()
        bus._set_bridge(Failing())
        with pytest.raises(ConnectionError):
            bus.subscribe("a")
        assert bus.stats()["subscribers"] == 0 and bus.stats()["channels"] == 0
        bus._set_bridge(None)
        bus.subscribe("a")

    run(main)


def test_bridge_must_have_both_hooks():
    bus = uvcore.PubSub()
    with pytest.raises(TypeError, match="on_first_subscriber"):
        bus._set_bridge(object())


def test_a_subclass_can_be_its_own_bridge_and_is_collected():
    import weakref

    class Backend(uvcore.PubSub):
        __slots__ = ("events",)

        def on_first_subscriber(self, name, is_pattern):
            self.events.append(name)

        def on_last_subscriber(self, name, is_pattern):
            self.events.append("-" + name)

    bus = Backend()
    bus.events = []
    bus._set_bridge(bus)
    sub = bus.subscribe("q")
    del sub
    assert bus.events == ["q", "-q"]
    ref = weakref.ref(bus)
    del bus
    collect()
    assert ref() is None
