"""Shared pytest configuration for uvcore's suite."""
import asyncio
import socket

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
