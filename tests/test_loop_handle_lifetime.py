"""Handles from call_soon/call_later: arguments, reuse and garbage collection.

Queued handles are not tracked by the cyclic GC (the loop reports what they hold) and dead
ones are reused; these tests pin down that nothing leaks, nothing is freed too early and the
arguments arrive unchanged."""
import asyncio
import contextvars
import gc
import os
import signal
import sys
import weakref

import pytest

import uvcore


class Obj:
    pass


@pytest.fixture
def loop():
    loop = uvcore.new_event_loop()
    yield loop
    loop.close()


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize("nargs", [0, 1, 3, 4, 7])
def test_callbacks_get_their_arguments_and_args_reads_them(loop, nargs):
    got = []
    args = tuple(Obj() for _ in range(nargs))
    h = loop.call_soon(lambda *a: got.append(a), *args)
    assert h._args == args
    run_briefly(loop)
    assert got == [args]
    t = loop.call_later(0, lambda *a: got.append(a), *args)
    assert t._args == args
    loop.run_until_complete(asyncio.sleep(0.001))
    assert got == [args, args]


def test_arguments_are_released_once_the_handle_ran(loop):
    arg = Obj()
    ref = weakref.ref(arg)
    loop.call_soon(lambda a: None, arg, 2, 3)
    del arg
    assert ref() is not None  # the queued handle holds it
    run_briefly(loop)
    assert ref() is None


def test_cancel_releases_callback_and_arguments(loop):
    arg = Obj()
    ref = weakref.ref(arg)
    h = loop.call_later(30, lambda a: None, arg)
    del arg
    h.cancel()
    assert ref() is None
    assert h._args == ()


def test_cycle_through_a_kept_handle_is_collected_after_it_ran(loop):
    class Holder:
        def cb(self):
            pass

    holder = Holder()
    holder.handle = loop.call_soon(holder.cb)  # holder -> handle -> bound method -> holder
    ref = weakref.ref(holder)
    del holder
    run_briefly(loop)
    gc.collect()
    assert ref() is None


def test_cycle_through_a_kept_timer_handle_is_collected_after_cancel(loop):
    class Holder:
        def cb(self):
            pass

    holder = Holder()
    holder.timer = loop.call_later(30, holder.cb)
    holder.other = loop.call_later(40, holder.cb)
    holder.timer.cancel()  # not the last in the heap: stays there, cancelled
    ref = weakref.ref(holder)
    del holder
    loop.close()
    gc.collect()
    assert ref() is None


def test_unclosed_dropped_loop_with_pending_callbacks_is_collected():
    loop = uvcore.new_event_loop()
    loop.call_soon(loop.stop)  # loop -> queued handle -> bound method -> loop
    loop.call_later(30, loop.time)
    ref = weakref.ref(loop)
    del loop
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert ref() is None


def test_objects_reachable_only_from_queued_handles_survive_collection(loop):
    payload = [Obj() for _ in range(3)]
    refs = [weakref.ref(o) for o in payload]
    got = []
    loop.call_soon(got.append, payload)
    loop.call_later(0, got.append, payload)
    del payload
    for _ in range(3):
        gc.collect()
    assert all(r() is not None for r in refs)
    loop.run_until_complete(asyncio.sleep(0.001))
    assert len(got) == 2 and got[0] is got[1]
    del got
    gc.collect()
    assert all(r() is None for r in refs)


def test_each_handle_runs_in_its_own_copy_of_the_callers_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))
        var.set(tag)

    def start():
        var.set("caller")
        h1 = loop.call_soon(cb, "a")
        loop.call_soon(cb, "b")
        ctx = h1.get_context()
        assert ctx[var] == "caller"
        assert ctx is h1.get_context()
        loop.call_soon(seen.append, ("ctx after a", ctx))

    loop.call_soon(start, context=contextvars.copy_context())
    run_briefly(loop)
    run_briefly(loop)
    assert seen[:2] == [("a", "caller"), ("b", "caller")]
    ctx = seen[2][1]
    assert ctx[var] == "a"  # a ran in h1's context and set the variable there
    gc.collect()


def test_context_from_get_context_outlives_the_handle(loop):
    var = contextvars.ContextVar("var")
    var.set(Obj())
    h = loop.call_soon(lambda: None)
    ctx = h.get_context()
    run_briefly(loop)
    del h
    gc.collect()
    assert isinstance(ctx[var], Obj)
    assert ctx.run(var.get) is ctx[var]


def test_cancelled_timers_leave_the_heap(loop):
    timers = [loop.call_later(30 + i, lambda: None) for i in range(5)]
    assert loop._timer_count == 5
    timers[-1].cancel()  # latest deadline: leaves at once
    timers[0].cancel()  # earliest: stays until the heap drops it
    assert loop._timer_count == 3
    assert len(loop._scheduled) == 4
    for t in timers[1:4]:
        t.cancel()
    assert loop._timer_count == 0
    for _ in range(100_000):
        loop.call_later(30, lambda: None).cancel()
    assert len(loop._scheduled) <= 4


def test_many_handles_reused_keep_their_own_state(loop):
    out = []
    for round_ in range(3):
        for i in range(2000):
            loop.call_soon(out.append, (round_, i))
        run_briefly(loop)
    assert out == [(r, i) for r in range(3) for i in range(2000)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_signal_handler_runs_while_the_loop_is_busy(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")

    async def busy():
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100_000):
            if got:
                return True
            await asyncio.sleep(0)
        return False

    try:
        assert loop.run_until_complete(busy())
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["usr1"]


def test_threadsafe_callbacks_reach_a_busy_loop(loop):
    import threading

    got = []

    async def busy():
        threading.Thread(target=loop.call_soon_threadsafe, args=(got.append, 1)).start()
        for _ in range(1_000_000):
            if got:
                return True
            await asyncio.sleep(0)
        return False

    assert loop.run_until_complete(busy())
