"""Misuse of the PubSub API raises clear TypeError/ValueError, never crashes."""
import pytest

import uvcore


@pytest.fixture
def bus():
    return uvcore.PubSub()


@pytest.mark.parametrize("channel", [None, 1, b"bytes", bytearray(b"x"), object(), [1], ["ok", 2]])
def test_subscribe_rejects_non_str_channels(bus, channel):
    with pytest.raises(TypeError, match="str"):
        bus.subscribe(channel)


@pytest.mark.parametrize("channel", ["", [], ()])
def test_subscribe_rejects_empty_channels(bus, channel):
    with pytest.raises(ValueError):
        bus.subscribe(channel)


@pytest.mark.parametrize("maxsize,exc", [(-1, ValueError), ("10", TypeError), (1.5, TypeError), (True, TypeError)])
def test_subscribe_rejects_bad_maxsize(bus, maxsize, exc):
    with pytest.raises(exc, match="maxsize"):
        bus.subscribe("c", maxsize=maxsize)


@pytest.mark.parametrize("overflow,exc", [("drop", ValueError), ("BLOCK", ValueError), (1, TypeError)])
def test_subscribe_rejects_bad_overflow(bus, overflow, exc):
    with pytest.raises(exc, match="overflow"):
        bus.subscribe("c", overflow=overflow)


def test_subscribe_options_are_keyword_only(bus):
    with pytest.raises(TypeError):
        bus.subscribe("c", 10)
    with pytest.raises(TypeError):
        bus.subscribe()
    with pytest.raises(TypeError):
        bus.subscribe("c", size=3)


def test_broker_defaults_are_validated():
    with pytest.raises(ValueError):
        uvcore.PubSub(maxsize=-5)
    with pytest.raises(ValueError):
        uvcore.PubSub(overflow="sometimes")
    with pytest.raises(TypeError):
        uvcore.PubSub(10)
    bus = uvcore.PubSub(maxsize=2, overflow="drop_newest")
    sub = bus.subscribe("c")
    assert (sub.maxsize, sub.overflow) == (2, "drop_newest")
    assert bus.subscribe("c", maxsize=None, overflow=None).maxsize == 2


@pytest.mark.parametrize("args", [(), ("c",), ("c", 1, 2)])
def test_publish_needs_channel_and_message(bus, args):
    with pytest.raises(TypeError, match="2 arguments"):
        bus.publish(*args)
    with pytest.raises(TypeError, match="2 arguments"):
        bus.publish_nowait(*args)


@pytest.mark.parametrize("channel", [None, 3, b"c"])
def test_publish_rejects_non_str_channels(bus, channel):
    with pytest.raises(TypeError, match="channel must be a str"):
        bus.publish_nowait(channel, "m")
    with pytest.raises(ValueError):
        bus.publish_nowait("", "m")


def test_str_subclasses_are_accepted_as_plain_names(bus):
    class Name(str):
        def __hash__(self):
            raise AssertionError("not used")

    sub = bus.subscribe(Name("c"))
    assert type(sub.channel) is str
    assert bus.publish_nowait(Name("c"), 1) == 1


def test_subscription_cannot_be_made_directly():
    with pytest.raises(TypeError):
        uvcore.Subscription()


def test_numsub_rejects_non_str(bus):
    with pytest.raises(TypeError):
        bus.numsub(1)
    assert bus.numsub("nothing") == 0


def test_anext_outside_a_loop_raises_runtime_error(bus):
    sub = bus.subscribe("c")
    aw = sub.__anext__().__await__()
    with pytest.raises(RuntimeError, match="no running event loop"):
        aw.send(None)
    bus.publish_nowait("c", 1)  # still subscribed, still works
    assert sub.pending == 1


def test_awaitables_support_throw_and_close(bus):
    sub = bus.subscribe("c")
    aw = sub.__anext__().__await__()
    with pytest.raises(KeyError):
        aw.throw(KeyError("x"))
    aw.close()
    ready = bus.publish("c", 1).__await__()
    with pytest.raises(ValueError):
        ready.throw(ValueError)
    with pytest.raises(TypeError):
        ready.throw(1)
    ready.close()
