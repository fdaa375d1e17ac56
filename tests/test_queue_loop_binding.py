"""A queue binds to the running loop at its first wait, as asyncio's queues do; using it
from another loop then raises RuntimeError, while operations that need not wait work
anywhere (and without any loop)."""
import asyncio
import sys

import pytest

import uvcore
from queue_support import LOOP_FACTORIES


def test_nowait_operations_need_no_loop():
    q = uvcore.Queue()
    q.put_nowait(1)
    assert q.get_nowait() == 1
    q.task_done()
    assert q._loop is None


def test_ready_awaits_do_not_bind():
    q = uvcore.Queue()
    for name in sorted(LOOP_FACTORIES):
        lp = LOOP_FACTORIES[name]()
        try:
            lp.run_until_complete(q.put(name))
            assert lp.run_until_complete(q.get()) == name
        finally:
            lp.close()
    assert q._loop is None


@pytest.mark.parametrize("first", sorted(LOOP_FACTORIES))
def test_waiting_on_a_second_loop_raises(first):
    q = uvcore.Queue()
    lp1 = LOOP_FACTORIES[first]()
    lp2 = asyncio.new_event_loop()
    try:
        async def wait_then_feed():
            getter = asyncio.ensure_future(q.get())
            await asyncio.sleep(0)
            q.put_nowait("x")
            return await getter

        assert lp1.run_until_complete(wait_then_feed()) == "x"
        assert q._loop is lp1
        with pytest.raises(RuntimeError, match="bound to a different event loop"):
            lp2.run_until_complete(q.get())
    finally:
        lp1.close()
        lp2.close()


def test_waiting_outside_a_loop_is_a_clear_error():
    op = uvcore.Queue().get()
    with pytest.raises(RuntimeError, match="no running event loop"):
        op.send(None)


@pytest.mark.skipif(sys.version_info >= (3, 10), reason="loop= exists only up to Python 3.9")
def test_loop_argument_on_39_binds_with_a_deprecation_warning():
    lp = asyncio.new_event_loop()
    try:
        with pytest.warns(DeprecationWarning):
            q = uvcore.Queue(loop=lp)
        assert q._loop is lp
    finally:
        lp.close()


@pytest.mark.skipif(sys.version_info < (3, 10), reason="Python 3.9 still accepts loop=")
def test_loop_argument_is_rejected_from_310():
    with pytest.raises(TypeError):
        uvcore.Queue(loop=None)
