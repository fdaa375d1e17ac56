"""Scheduling from another thread: checked in debug mode only, as asyncio and uvloop do.

With debug off a cross-thread call_soon/call_later/call_at is a user bug that merely delays
the callback until the loop next wakes; it must neither raise half-way through a Future's
callbacks nor damage the loop's ready queue or timer heap. Each test runs on asyncio's own
loop too, so the expected behaviour is asyncio's, not ours.
"""
import asyncio
import threading

import pytest

import uvcore

THREAD_ERROR = "Non-thread-safe operation invoked on an event loop other than the current one"


@pytest.fixture(params=["uvcore", "asyncio"])
def any_loop(request):
    lp = uvcore.new_event_loop() if request.param == "uvcore" else asyncio.new_event_loop()
    yield lp
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


def run_guarded(loop, coro, limit=10.0):
    """run_until_complete that fails (RuntimeError) instead of hanging past `limit` seconds."""
    guard = loop.call_later(limit, loop.stop)
    try:
        return loop.run_until_complete(coro)
    finally:
        guard.cancel()


def in_thread(fn):
    """Run fn in a fresh thread, wait for it, return (result, exception)."""
    out = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as exc:  # reported to the test, not swallowed
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    assert not t.is_alive()
    return out.get("result"), out.get("error")


def test_event_set_from_another_thread_wakes_the_waiter_at_the_next_wakeup(any_loop):
    loop = any_loop
    errors = []

    async def main():
        ev = asyncio.Event()
        waiter = asyncio.ensure_future(asyncio.wait_for(ev.wait(), timeout=0.5))
        while not ev._waiters:  # the task is suspended on the Event's future
            await asyncio.sleep(0)

        def setter():
            try:
                ev.set()  # wrong (not call_soon_threadsafe), but must not hang the waiter
            except BaseException as exc:
                errors.append(exc)

        threading.Thread(target=setter).start()
        return await waiter

    assert run_guarded(loop, main()) is True
    assert errors == []


def test_call_soon_from_another_thread_runs_at_the_next_wakeup(any_loop):
    loop = any_loop

    async def main():
        ran = loop.create_future()
        handle, error = in_thread(lambda: loop.call_soon(ran.set_result, threading.get_ident()))
        assert error is None and not handle.cancelled()
        loop.call_soon_threadsafe(lambda: None)  # any wake-up
        return await asyncio.wait_for(ran, 5)

    assert run_guarded(loop, main()) != threading.get_ident()


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_timers_from_another_thread_fire(any_loop, method):
    loop = any_loop

    async def main():
        fired = loop.create_future()

        def schedule():
            if method == "call_later":
                return loop.call_later(0.01, fired.set_result, "later")
            return loop.call_at(loop.time() + 0.01, fired.set_result, "later")

        handle, error = in_thread(schedule)
        assert error is None and handle.when() > 0
        # The loop may be blocked with no deadline; the timer counts from its next wake-up.
        loop.call_soon_threadsafe(lambda: None)
        return await asyncio.wait_for(fired, 5)

    assert run_guarded(loop, main()) == "later"


def test_create_task_from_another_thread_runs(any_loop):
    loop = any_loop

    async def child():
        return "done"

    async def main():
        task, error = in_thread(lambda: loop.create_task(child()))
        assert error is None
        loop.call_soon_threadsafe(lambda: None)
        return await asyncio.wait_for(task, 5)

    assert run_guarded(loop, main()) == "done"


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_mode_refuses_other_threads(any_loop, method):
    loop = any_loop
    loop.set_debug(True)

    async def main():
        calls = {
            "call_soon": lambda: loop.call_soon(print),
            "call_later": lambda: loop.call_later(1, print),
            "call_at": lambda: loop.call_at(loop.time() + 1, print),
        }
        return in_thread(calls[method])

    result, error = run_guarded(loop, main())
    assert result is None
    assert isinstance(error, RuntimeError) and str(error) == THREAD_ERROR


def test_not_running_loop_accepts_other_threads_in_debug_mode(any_loop):
    loop = any_loop
    loop.set_debug(True)
    handle, error = in_thread(lambda: loop.call_soon(print))
    assert error is None
    handle.cancel()


def test_many_threads_hammering_call_soon_keep_the_queue_intact(any_loop):
    """Threads push while the loop pops and grows its ring; nothing is lost or reordered."""
    loop = any_loop
    nthreads, per_thread = 4, 3000
    seen = {i: [] for i in range(nthreads)}

    async def main():
        done = loop.create_future()
        remaining = [nthreads * per_thread]

        def record(tid, n):
            seen[tid].append(n)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set_result(None)

        def pusher(tid):
            for n in range(per_thread):
                loop.call_soon(record, tid, n)
                if n % 100 == 0:
                    loop.call_soon_threadsafe(lambda: None)
            loop.call_soon_threadsafe(lambda: None)

        threads = [threading.Thread(target=pusher, args=(i,)) for i in range(nthreads)]
        for t in threads:
            t.start()
        # Keep the loop busy popping its own callbacks while the threads push.
        spin = [0]

        def spinner():
            spin[0] += 1
            if not done.done():
                loop.call_soon(spinner)

        loop.call_soon(spinner)
        await asyncio.wait_for(done, 20)
        for t in threads:
            t.join()

    run_guarded(loop, main(), limit=30)
    for tid in range(nthreads):
        assert seen[tid] == list(range(per_thread))


def test_timers_from_threads_survive_heap_compaction(any_loop):
    """Other threads add timers while the loop cancels most of its own, which makes uvcore
    rebuild its timer heap; every live timer fires exactly once, no cancelled one does."""
    loop = any_loop
    nthreads, per_thread = 3, 400
    fired = []

    async def main():
        done = loop.create_future()
        expected = nthreads * per_thread

        def fire(tag):
            fired.append(tag)
            if len(fired) == expected and not done.done():
                done.set_result(None)

        def cancelled_fire(tag):
            raise AssertionError(f"cancelled timer {tag} ran")

        def adder(tid):
            for n in range(per_thread):
                loop.call_later(0.001 * (n % 7), fire, (tid, n))
                if n % 50 == 0:
                    loop.call_soon_threadsafe(lambda: None)
            loop.call_soon_threadsafe(lambda: None)

        threads = [threading.Thread(target=adder, args=(i,)) for i in range(nthreads)]
        for t in threads:
            t.start()
        for round_ in range(20):
            doomed = [loop.call_later(30, cancelled_fire, (round_, i)) for i in range(300)]
            await asyncio.sleep(0)
            for h in doomed:
                h.cancel()
            await asyncio.sleep(0.001)
        for t in threads:
            t.join()
        await asyncio.wait_for(done, 20)

    run_guarded(loop, main(), limit=30)
    assert sorted(fired) == sorted((t, n) for t in range(nthreads) for n in range(per_thread))
