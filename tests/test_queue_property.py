"""Property: any sequence of queue operations behaves exactly as on asyncio's queues.
Random programs (nowait calls, put/get/join tasks, cancellations, loop turns, shutdowns where
asyncio has them) run once with asyncio's classes and once with uvcore's; the observable
traces (results, exception types, task outcomes, sizes, contents) must be identical."""
import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import uvcore

HAS_SHUTDOWN = hasattr(asyncio.Queue, "shutdown")

_op = st.one_of(
    st.tuples(st.just("put_nowait"), st.integers(0, 9)),
    st.tuples(st.just("get_nowait")),
    st.tuples(st.just("put"), st.integers(0, 9)),
    st.tuples(st.just("get")),
    st.tuples(st.just("join")),
    st.tuples(st.just("task_done")),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("turn")),
    st.tuples(st.just("state")),
    *([st.tuples(st.just("shutdown"), st.booleans())] if HAS_SHUTDOWN else []),
)
_program = st.tuples(
    st.sampled_from(["Queue", "LifoQueue", "PriorityQueue"]),
    st.integers(0, 4),
    st.lists(_op, max_size=50),
)


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the exception's type is part of the observable behaviour
        return ("raised", type(exc).__name__)


def _task_state(task):
    if not task.done():
        return "pending"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return ("raised", type(exc).__name__) if exc else ("ok", task.result())


def _snapshot(q):
    return (q.qsize(), q.empty(), q.full(), list(q._queue), q._unfinished_tasks,
            len(q._getters), len(q._putters))


async def _execute(module, kind, maxsize, ops):
    q = getattr(module, kind)(maxsize)
    trace, tasks = [], []
    for op in ops:
        name = op[0]
        if name == "put_nowait":
            trace.append(_outcome(q.put_nowait, op[1]))
        elif name == "get_nowait":
            trace.append(_outcome(q.get_nowait))
        elif name == "task_done":
            trace.append(_outcome(q.task_done))
        elif name == "shutdown":
            trace.append(_outcome(q.shutdown, op[1]))
        elif name == "put":
            tasks.append(asyncio.ensure_future(q.put(op[1])))
        elif name == "get":
            tasks.append(asyncio.ensure_future(q.get()))
        elif name == "join":
            tasks.append(asyncio.ensure_future(q.join()))
        elif name == "cancel" and tasks:
            trace.append(("cancel", tasks[op[1] % len(tasks)].cancel()))
        elif name == "turn":
            await asyncio.sleep(0)
            trace.append(("tasks", [_task_state(t) for t in tasks]))
        elif name == "state":
            trace.append(("state", _snapshot(q)))
    for _ in range(3):
        await asyncio.sleep(0)
    trace.append(("end", [_task_state(t) for t in tasks], _snapshot(q)))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    trace.append(("drained", _snapshot(q)))
    return trace


def _run(module, program, loop_factory=asyncio.new_event_loop):
    loop = loop_factory()
    try:
        return loop.run_until_complete(_execute(module, *program))
    finally:
        loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_program)
def test_uvcore_queues_trace_like_asyncios(program):
    assert _run(uvcore, program) == _run(asyncio, program)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_program)
def test_uvcore_queues_on_uvcore_loop_trace_like_asyncios(program):
    assert _run(uvcore, program, uvcore.new_event_loop) == _run(asyncio, program)
