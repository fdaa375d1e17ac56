"""put()/get() that need not wait finish in their first send: no Future, no loop round trip.
Only an operation that must suspend asks the loop for a Future."""
import asyncio

import pytest

import uvcore
from queue_support import run  # noqa: F401  (fixture)


def _count_futures(loop):
    made = []
    real = loop.create_future

    def create_future():
        fut = real()
        made.append(fut)
        return fut

    loop.create_future = create_future
    return made


def test_ready_put_and_get_create_no_future_and_do_not_yield(run):
    async def main():
        loop = asyncio.get_running_loop()
        made = _count_futures(loop)
        ran = []
        loop.call_soon(ran.append, "other callback")
        q = uvcore.Queue(maxsize=100)
        for i in range(100):
            await q.put(i)
        got = [await q.get() for _ in range(100)]
        # Had any await gone through the loop, the callback above would have run.
        assert ran == []
        assert made == []
        return got

    assert run(main()) == list(range(100))


def test_only_a_suspending_get_gets_a_future(run):
    async def main():
        loop = asyncio.get_running_loop()
        made = _count_futures(loop)
        q = uvcore.Queue()
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        assert len(made) == 1 and list(q._getters) == made
        await q.put("x")
        assert await getter == "x"
        assert len(made) == 1

    run(main())


def test_send_returns_the_value_in_stop_iteration():
    q = uvcore.Queue()
    q.put_nowait((1, 2))  # a tuple must come back whole, not as StopIteration's args
    op = q.get()
    with pytest.raises(StopIteration) as info:
        op.send(None)
    assert info.value.value == (1, 2)


def test_next_drives_the_operation_too():
    q = uvcore.Queue()
    op = q.put("a")
    with pytest.raises(StopIteration):
        next(op)
    op = q.get()
    with pytest.raises(StopIteration) as info:
        next(op)
    assert info.value.value == "a"


def test_an_awaitable_cannot_be_reused():
    q = uvcore.Queue()
    q.put_nowait(1)
    op = q.get()
    with pytest.raises(StopIteration):
        op.send(None)
    with pytest.raises(RuntimeError, match="already awaited"):
        op.send(None)


def test_an_operation_runs_when_awaited_not_when_created(run):
    async def main():
        q = uvcore.Queue()
        op = q.get()  # created on an empty queue
        q.put_nowait(5)
        return await op

    assert run(main()) == 5


def test_throw_before_start_raises_and_consumes_nothing():
    q = uvcore.Queue()
    q.put_nowait(1)
    op = q.get()
    with pytest.raises(KeyError):
        op.throw(KeyError("x"))
    with pytest.raises(ValueError):
        op.throw(ValueError, ValueError("v"), None)
    assert q.qsize() == 1
    op.close()


def test_throw_rejects_non_exceptions():
    op = uvcore.Queue().get()
    with pytest.raises(TypeError):
        op.throw(42)
    with pytest.raises(TypeError):
        op.throw(ValueError("a"), "b")
