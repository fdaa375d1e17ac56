"""Bad arguments thrown at every public method of Loop, Queue, PubSub, Subscription and the
stream/UDP transports: each call raises an ordinary exception (TypeError, ValueError, ...) or
succeeds harmlessly; nothing crashes, and the objects still work afterwards."""
from __future__ import annotations

import asyncio
import inspect
import itertools
import socket

import pytest

import uvcore

BAD = [None, -1, 0, 2**70, -(2**70), 1.5, float("nan"), float("inf"), "", "x" * 10_000, b"\0",
       bytearray(b"ab"), memoryview(b"ab"), [], (), {}, object(), Exception("e"), type, ...]

# Methods that would wait forever, install process-wide state or spawn processes whatever
# the arguments are; they have their own argument tests in the suite.
SKIP = {"run_forever", "add_signal_handler", "remove_signal_handler", "subprocess_exec",
        "subprocess_shell", "set_default_executor", "set_task_factory", "set_exception_handler",
        "set_debug", "close", "stop", "__init__", "__new__", "__init_subclass__", "__class_getitem__",
        "__subclasshook__", "__reduce__", "__reduce_ex__", "__setattr__", "__delattr__",
        "__getattribute__", "__getstate__", "__setstate__", "__format__", "__dir__", "__sizeof__",
        "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__repr__", "__str__",
        "__del__", "__aexit__", "abort", "aclose", "shutdown", "shutdown_asyncgens", "shutdown_default_executor"}


def public_methods(obj):
    for name in sorted(dir(obj)):
        if name in SKIP or (name.startswith("_") and not name.startswith("__")):
            continue
        try:
            attr = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property refusing is fine
            continue
        if callable(attr) and not inspect.isclass(attr):
            yield name, attr


def argument_lists():
    yield ()
    for v in BAD:
        yield (v,)
    for a, b in itertools.product(BAD[:8], repeat=2):
        yield (a, b)
    yield tuple(BAD[:4])


def hammer(obj, tally, loop=None):
    calls = 0
    for name, method in public_methods(obj):
        for args in argument_lists():
            if loop is not None:
                # Anything scheduled by a call that succeeded must not pile up.
                for h in list(getattr(loop, "_ready_handles", ())):
                    h.cancel()
            try:
                result = method(*args)
            except (TypeError, ValueError, OverflowError, RuntimeError, OSError, AttributeError,
                    KeyError, IndexError, NotImplementedError, asyncio.QueueEmpty, asyncio.QueueFull,
                    uvcore.QueueShutDown) as exc:
                assert str(exc) or isinstance(exc, (asyncio.QueueEmpty, asyncio.QueueFull,
                                                    uvcore.QueueShutDown, KeyError, NotImplementedError)), (name, args)
            else:
                if inspect.iscoroutine(result):
                    result.close()
                elif isinstance(result, (asyncio.Handle, asyncio.TimerHandle)):
                    result.cancel()
                elif hasattr(result, "close") and inspect.isawaitable(result):
                    result.close()
            calls += 1
    tally["bad_inputs"] += calls
    return calls


def test_loop_methods_refuse_bad_arguments_cleanly(tally):
    loop = uvcore.new_event_loop()
    try:
        n = hammer(loop, tally, loop)
        # Still a working loop.
        assert loop.run_until_complete(asyncio.sleep(0.001, "fine")) == "fine"
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert n > 1000


@pytest.mark.parametrize("cls", [uvcore.Queue, uvcore.LifoQueue, uvcore.PriorityQueue])
def test_queue_methods_refuse_bad_arguments_cleanly(cls, tally):
    async def main():
        q = cls(maxsize=1000)
        hammer(q, tally)
        while not q.empty():
            try:
                q.get_nowait()
            except TypeError:  # a PriorityQueue of mixed types cannot order them, as heapq
                q._queue.clear()
        await q.put("ok")
        return await q.get()

    assert uvcore.run(main()) == "ok"


def test_queue_constructor_refuses_bad_maxsize(tally):
    for v in BAD:
        try:
            uvcore.Queue(v)
        except (TypeError, ValueError, OverflowError):
            pass
        tally["bad_inputs"] += 1


def test_pubsub_and_subscription_methods_refuse_bad_arguments_cleanly(tally):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe("c", maxsize=4)
        hammer(bus, tally)
        hammer(sub, tally)
        for v in BAD:
            for kw in ("maxsize", "overflow"):
                if kw == "maxsize" and v is not None and not isinstance(v, float) and v == 0:
                    continue  # maxsize=0 is valid: unbounded
                with pytest.raises((TypeError, ValueError, OverflowError)):
                    bus.subscribe("c", **{kw: v}) if v is not None else bus.subscribe(v)
                tally["bad_inputs"] += 1
        # Still a working broker.
        fresh = bus.subscribe("fresh")
        assert await bus.publish("fresh", "ok") == 1
        got = await fresh.__anext__()
        await bus.aclose()
        return got

    assert uvcore.run(main()) == "ok"


def test_transport_methods_refuse_bad_arguments_cleanly(tally):
    # Transports accept some odd values as asyncio's do (set_protocol(anything), write_eof()),
    # so the hammered ones may end up closed; what matters is no crash, and that the loop
    # and new transports still work afterwards.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            for obj in (tr, udp):
                hammer(obj, tally)
        finally:
            tr.close()
            udp.close()
            b.close()
        await asyncio.sleep(0.01)
        c, d = socket.socketpair()
        d.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=c)
        writer.write(b"still")
        got = await loop.sock_recv(d, 100)
        writer.close()
        d.close()
        return got

    assert uvcore.run(main()) == b"still"
