"""Helpers shared by the tests/test_queue_*.py files: the loops a queue must work on."""
import asyncio

import pytest

import uvcore

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency
    uvloop = None

LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "uvcore": uvcore.new_event_loop,
}
if uvloop is not None:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop

QUEUE_CLASSES = [uvcore.Queue, uvcore.LifoQueue, uvcore.PriorityQueue]


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run(request):
    """run(coro) runs coro to completion on a fresh loop of the parametrised kind."""
    factory = LOOP_FACTORIES[request.param]
    loops = []

    def _run(coro, timeout=10):
        lp = factory()
        loops.append(lp)
        try:
            return lp.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            lp.run_until_complete(lp.shutdown_asyncgens())
            lp.close()

    _run.kind = request.param
    return _run
