"""The loop gives back the signal wake-up fd it found: after a run, after the last
add_signal_handler is removed, and at close. A stale fd left installed breaks the next loop
(uvloop cannot restore it; the C signal handler writes into a reused number)."""
import asyncio
import signal
import socket

import uvloop

import uvcore
from conftest import _current_wakeup_fd


def test_run_leaves_the_wakeup_fd_as_found():
    a, b = socket.socketpair()
    a.setblocking(False)
    signal.set_wakeup_fd(a.fileno())
    try:
        loop = uvcore.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0))
        assert _current_wakeup_fd() == a.fileno()
        loop.close()
        assert _current_wakeup_fd() == a.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        a.close()
        b.close()


def test_handler_added_before_run_then_removed_gives_the_fd_back():
    loop = uvcore.new_event_loop()
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
    assert _current_wakeup_fd() != -1  # ours, so the signal is not lost before the run

    async def main():
        signal.raise_signal(signal.SIGUSR1)
        for _ in range(1000):
            if got:
                return
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert got == [1]
    assert _current_wakeup_fd() != -1  # still ours: the handler is still there
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert _current_wakeup_fd() == -1
    loop.close()
    assert _current_wakeup_fd() == -1


def test_close_with_handlers_gives_the_fd_back_and_uvloop_runs_next():
    loop = uvcore.new_event_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert _current_wakeup_fd() == -1
    # uvloop saves and restores the wake-up fd it finds: a stale one made it fail here
    other = uvloop.new_event_loop()
    try:
        assert other.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        other.close()


def test_found_fd_closed_meanwhile_leaves_none():
    a, b = socket.socketpair()
    a.setblocking(False)
    signal.set_wakeup_fd(a.fileno())
    loop = uvcore.new_event_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    a.close()
    b.close()
    loop.close()
    assert _current_wakeup_fd() == -1
