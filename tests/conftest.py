"""Shared pytest configuration for uvcore's suite."""
import asyncio
import signal
import socket
import threading

import pytest

import uvcore


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test; skipped on the 3.13 and ASan runs")


@pytest.fixture
def loop():
    """A fresh uvcore loop, closed after the test."""
    lp = uvcore.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


@pytest.fixture
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _current_wakeup_fd():
    # signal.set_wakeup_fd both sets and reports; put the old value straight back.
    old = signal.set_wakeup_fd(-1)
    if old != -1:
        signal.set_wakeup_fd(old, warn_on_full_buffer=False)
    return old


@pytest.fixture(autouse=True)
def signal_wakeup_fd_restored():
    """A loop that stops or closes must give back the signal wake-up fd it found; a stale one
    breaks the next loop (uvloop refuses to restore an fd that was since reused)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = _current_wakeup_fd()
    yield
    after = _current_wakeup_fd()
    if after != before:
        signal.set_wakeup_fd(before)
        pytest.fail(f"the test left signal.set_wakeup_fd at {after} (was {before})", pytrace=False)
