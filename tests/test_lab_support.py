"""Helpers shared by the lab tests (tests/test_lab_*.py), plus checks of the helpers.

`server_launch()` says how to start the lab server. While uvcore.PubSub has not landed,
it boots the server with a tiny in-test stand-in broker patched onto the uvcore module;
the shipped server always imports uvcore.PubSub itself.
"""
from __future__ import annotations

import sys
from typing import Tuple

import uvcore

from examples.lab.harness import LabServer, free_port, port_accepts

STANDIN_PUBSUB = r'''
import asyncio, weakref

class _Subscription:
    def __init__(self, bus, channel, maxsize):
        self._bus, self.channel, self._queue = bus, channel, asyncio.Queue(maxsize)
        # Weak links, as the real broker's borrowed ones: it never keeps a subscription alive.
        bus._subs.setdefault(channel, weakref.WeakSet()).add(self)
    def _leave(self):
        subs = self._bus._subs.get(self.channel)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self._bus._subs[self.channel]
    def __aiter__(self):
        return self
    def __anext__(self):
        # Not a coroutine method: a Python frame holding `self` would keep the subscription
        # alive through a cancelled waiter's traceback (the C iterator has no frame).
        return _next(self._queue)
    async def aclose(self):
        self._leave()
    async def __aenter__(self):
        return self
    async def __aexit__(self, *exc):
        self._leave()
    def __del__(self):
        self._leave()

_END = object()

async def _next(queue):
    item = await queue.get()
    if item is _END:
        raise StopAsyncIteration
    return item

class PubSub:
    def __init__(self):
        self._subs = {}
        self._published = 0
    def subscribe(self, channel, *, maxsize=1024, overflow="drop_oldest"):
        return _Subscription(self, channel, maxsize)
    async def publish(self, channel, message):
        self._published += 1
        subs = list(self._subs.get(channel, ()))
        for sub in subs:
            if sub._queue.full():
                sub._queue.get_nowait()
            sub._queue.put_nowait(message)
        return len(subs)
    def stats(self):
        return {"channels": len(self._subs), "subscribers": sum(map(len, self._subs.values())),
                "published": self._published}
    async def aclose(self):
        for subs in list(self._subs.values()):
            for sub in subs:
                sub._queue.put_nowait(_END)
        self._subs.clear()

'''

STANDIN = (
    "import runpy, sys, uvcore\n"
    + STANDIN_PUBSUB
    + "\nuvcore.PubSub = PubSub\n"
    + "sys.argv[0] = 'examples.lab.server'\n"
    + "runpy.run_module('examples.lab.server', run_name='__main__', alter_sys=True)\n"
)


def has_real_pubsub() -> bool:
    return hasattr(uvcore, "PubSub")


def server_launch() -> Tuple[str, ...]:
    """python arguments that start the lab server (the real one once uvcore.PubSub exists)."""
    if has_real_pubsub():
        return ("-m", "examples.lab.server")
    return ("-c", STANDIN)


def lab_server(**kwargs) -> LabServer:
    return LabServer(python_args=server_launch(), **kwargs)


def test_free_port_is_free_and_server_readiness_is_polled():
    port = free_port()
    assert not port_accepts("127.0.0.1", port)
    with lab_server() as server:
        assert port_accepts("127.0.0.1", server.port)
        assert server.subscribers() == 0
    assert server.proc is not None and server.proc.poll() is not None


if __name__ == "__main__":
    sys.exit("run with pytest")
