"""Helpers for the PubSub tests: run a coroutine on each kind of event loop.

Every PubSub behaviour is checked on asyncio's default loop, on uvloop, and on uvcore's own
loop once uvcore.new_event_loop exists.
"""
import asyncio
import gc

import pytest

import uvcore


def _loop_factories():
    factories = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a test dependency
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    if hasattr(uvcore, "new_event_loop"):
        factories["uvcore"] = uvcore.new_event_loop
    return factories


LOOPS = _loop_factories()


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """run(async_fn, timeout=10): run async_fn() to completion on a fresh loop of one kind."""
    factory = LOOPS[request.param]

    def runner(async_fn, timeout=10.0):
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(async_fn(), timeout))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    return runner


async def until(predicate, timeout=5.0):
    """Yield to the loop until predicate() is true (no sleeping: each step is one loop turn)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0)


def collect():
    for _ in range(3):
        gc.collect()
