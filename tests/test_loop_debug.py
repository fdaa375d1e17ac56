"""Debug mode: handles remember where they were created (source traceback)."""
import sys


def _line_of_call():
    return sys._getframe(1).f_lineno


def test_handle_source_traceback_ends_at_the_caller(loop):
    loop.set_debug(True)
    here = __file__
    cases = [
        (loop.call_soon(print), _line_of_call() - 0),
        (loop.call_soon_threadsafe(print), _line_of_call() - 0),
        (loop.call_later(10, print), _line_of_call() - 0),
        (loop.call_at(loop.time() + 10, print), _line_of_call() - 0),
    ]
    for handle, line in cases:
        filename, lineno, funcname = handle._source_traceback[-1][:3]
        assert (filename, funcname) == (here, "test_handle_source_traceback_ends_at_the_caller")
        assert lineno == line
        handle.cancel()


# ---- slow-callback warnings: asyncio's text (base_events._format_handle) ----------------

import asyncio  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

import uvcore  # noqa: E402

SLOW = 0.02  # slow_callback_duration; each slow callback busy-waits longer than this


def _busy(seconds=SLOW * 1.5):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _slow_task():
    _busy()
    await asyncio.sleep(0)
    _busy()


class _Owner:
    def meth(self):
        _busy()


async def _slow_scenario():
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = SLOW
    loop.call_soon(_busy)
    loop.call_soon(functools.partial(_busy, SLOW * 1.5))
    loop.call_soon(_Owner().meth)
    loop.call_later(0.001, _busy, SLOW * 1.5)
    await asyncio.create_task(_slow_task(), name="slowpoke")
    await asyncio.sleep(0.01)


def _slow_messages(factory, caplog):
    caplog.clear()
    loop = factory()
    loop.set_debug(True)
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.run_until_complete(_slow_scenario())
    finally:
        loop.close()
    found = []
    for rec in caplog.records:
        text = rec.getMessage()
        if text.startswith("Executing "):
            text = re.sub(r"took \d+\.\d{3} seconds$", "took N seconds", text)
            found.append(re.sub(r"when=[0-9.]+", "when=T", text))
    return sorted(found)


def test_slow_callback_warnings_read_as_asyncios(caplog):
    expected = _slow_messages(asyncio.new_event_loop, caplog)
    got = _slow_messages(uvcore.new_event_loop, caplog)
    assert len(expected) == 6
    assert got == expected


@pytest.mark.parametrize("factory", [uvcore.new_event_loop, asyncio.new_event_loop], ids=["uvcore", "asyncio"])
def test_slow_task_step_names_the_task(factory, caplog):
    messages = _slow_messages(factory, caplog)
    tasks = [m for m in messages if m.startswith("Executing <Task ")]
    assert len(tasks) == 2, messages
    assert any(re.match(r"Executing <Task pending name='slowpoke' coro=<_slow_task\(\) running at ", m)
               for m in tasks)
    assert any(re.match(r"Executing <Task finished name='slowpoke' coro=<_slow_task\(\) done, ", m)
               for m in tasks)
    assert not any("TaskStepMethWrapper" in m for m in messages)
    handles = [m for m in messages if m.startswith("Executing <Handle _busy(")]
    assert handles and all(f" created at {__file__}:" in m for m in handles)


@pytest.mark.parametrize("factory", [uvcore.new_event_loop, asyncio.new_event_loop], ids=["uvcore", "asyncio"])
@pytest.mark.parametrize("debug", [False, True])
def test_handle_repr_is_asyncios(factory, debug):
    loop = factory()
    loop.set_debug(debug)
    try:
        h = loop.call_soon(_busy, 0.5)
        t = loop.call_later(10, _busy, 0.25)
        text, timer_text = repr(h), repr(t)
        h.cancel()
        t.cancel()
    finally:
        loop.close()
    # arguments shown as asyncio shows them (from 3.13 only in debug mode)
    args_shown = debug or sys.version_info < (3, 13)
    assert text.startswith("<Handle _busy(0.5) at " if args_shown else "<Handle _busy() at ")
    assert timer_text.startswith("<TimerHandle when=")
    assert ("_busy(0.25) at " if args_shown else "_busy() at ") in timer_text
    assert (" created at " in text) is debug
