"""WebSocket fan-out: one shared payload written to many connections as text frames.

`sink_for_transport(transport)` gives a connection's sink once its WebSocket handshake is
done. On a uvcore loop over a plain TCP or Unix socket it is a `FanoutSink`, whose frames
are built and written in C (csrc/wsfanout.c): the payload is referenced, not copied, and a
connection's frames of one loop iteration go out in one vectored write, in order with
everything else written on the connection. Over TLS or on another loop (asyncio, uvloop)
it is a `PyFanoutSink` that writes each frame with `transport.write`; both behave the same.

`fanout(payload, members, suffix=b"")` sends `prefix + payload + suffix` to every
`(sink, prefix)` member; C sinks queue without running Python.

Frames are uncompressed (RSV1 clear), also on connections that negotiated
permessage-deflate: RFC 7692 lets every message choose, and the connection's own
compressed messages keep their compression context since these frames never enter it.
Only complete messages may be in flight: never use a sink while the server is in the
middle of a fragmented message, and never after it sent its close frame (the integrations
in `uvcore.uvicorn` and `uvcore.aiohttp` close the sink first).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from . import _uvcore

__all__ = [
    "FanoutSink",
    "PyFanoutSink",
    "AnySink",
    "sink_for_transport",
    "fanout",
    "frame_header",
    "OVERFLOW_CLOSE_CODE",
    "DEFAULT_MAX_QUEUED",
]

# Sent to a consumer that falls too far behind under the "close" policy: 1008 (policy
# violation, RFC 6455). 1013 ("try again later") says the server is overloaded; here the
# server is fine and the peer did not read fast enough.
OVERFLOW_CLOSE_CODE = 1008
OVERFLOW_CLOSE_REASON = "slow consumer: too many queued bytes"
DEFAULT_MAX_QUEUED = 1024 * 1024

fanout = _uvcore.fanout
frame_header = _uvcore.frame_header

CloseCallback = Callable[[Any, Optional[int]], Any]


class FanoutSink(_uvcore.FanoutSink):
    """A connection's fan-out queue in C, on a uvcore StreamTransport.

    `send(prefix, payload, suffix=b"")` queues one text frame and returns False when it was
    dropped (slow consumer) or the sink is closed. Frames are written at the end of the
    loop iteration, or before anything else the transport is asked to write. `max_queued`
    caps the bytes not yet sent (frames held plus the transport's write buffer); past it,
    `policy="drop_oldest"` drops the oldest frames not yet handed to the socket (never part
    of a frame), `policy="close"` closes the connection with code 1008 (through
    `on_overflow(sink)` when given, else with a close frame and `transport.close()`).
    """

    __slots__ = ()

    @property
    def broken(self) -> bool:
        return self.closed

    async def drain(self) -> None:
        """Hand what is held to the transport now (the cohorts' Sink protocol)."""
        self.flush()


class PyFanoutSink:
    """The same sink for transports the C path cannot write to (TLS, other loops): each
    frame is one `transport.write`, so it is ordered with the connection's other writes.
    The transport's buffer cannot be reached into, so past `max_queued` the
    "drop_oldest" policy drops the new frame instead (the older ones are already in the
    transport); "close" closes as the C sink does."""

    __slots__ = ("transport", "max_queued", "policy", "on_overflow", "sent", "dropped",
                 "close_code", "_closed", "_callbacks", "__weakref__")

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        policy: str = "drop_oldest",
        on_overflow: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        if policy not in ("drop_oldest", "close"):
            raise ValueError(f"policy must be 'drop_oldest' or 'close', not {policy!r}")
        if max_queued <= 0:
            raise ValueError("max_queued must be positive")
        self.transport = transport
        self.max_queued = max_queued
        self.policy = policy
        self.on_overflow = on_overflow
        self.sent = 0
        self.dropped = 0
        self.close_code: Optional[int] = None
        self._closed = transport.is_closing()
        self._callbacks: List[CloseCallback] = []

    @property
    def closed(self) -> bool:
        if not self._closed and self.transport.is_closing():
            self._close(None)
        return self._closed

    broken = closed

    @property
    def queued(self) -> int:
        return 0 if self._closed else self.transport.get_write_buffer_size()

    held = 0

    def send(self, prefix: bytes, payload: bytes, suffix: bytes = b"") -> bool:
        if self.closed:
            return False
        size = len(prefix) + len(payload) + len(suffix)
        queued = self.transport.get_write_buffer_size()
        if queued and queued + size > self.max_queued:
            self.dropped += 1
            if self.policy == "close":
                self._overflow()
            return False
        try:
            self.transport.write(b"".join((frame_header(size), prefix, payload, suffix)))
        except Exception:  # noqa: BLE001 - a broken transport: its protocol sees the loss
            self._close(None)
            return False
        self.sent += 1
        return True

    def flush(self) -> None:
        """Nothing is held: every frame went to the transport at once."""

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self._close(None)

    def add_close_callback(self, cb: CloseCallback) -> None:
        if not callable(cb):
            raise TypeError("the close callback must be callable")
        if self._closed:
            asyncio.get_running_loop().call_soon(cb, self, self.close_code)
        else:
            self._callbacks.append(cb)

    def remove_close_callback(self, cb: CloseCallback) -> int:
        before = len(self._callbacks)
        self._callbacks = [c for c in self._callbacks if c != cb]
        return before - len(self._callbacks)

    def _close(self, code: Optional[int]) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        callbacks, self._callbacks = self._callbacks, []
        if callbacks:
            loop = asyncio.get_running_loop()
            for cb in callbacks:
                loop.call_soon(cb, self, code)

    def _overflow(self) -> None:
        self._close(OVERFLOW_CLOSE_CODE)
        if self.on_overflow is not None:
            self.on_overflow(self)
            return
        reason = OVERFLOW_CLOSE_REASON.encode()
        self.transport.write(bytes((0x88, 2 + len(reason))) + OVERFLOW_CLOSE_CODE.to_bytes(2, "big") + reason)
        self.transport.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<uvcore.PyFanoutSink {state} sent={self.sent} dropped={self.dropped}>"


AnySink = Union[FanoutSink, PyFanoutSink]


def sink_for_transport(
    transport: asyncio.BaseTransport,
    *,
    max_queued: int = DEFAULT_MAX_QUEUED,
    policy: str = "drop_oldest",
    on_overflow: Optional[Callable[[Any], Any]] = None,
) -> AnySink:
    """The fan-out sink for a connection whose WebSocket handshake is complete: the C sink
    on a uvcore stream transport, the Python one otherwise (TLS, asyncio, uvloop)."""
    if isinstance(transport, _uvcore.StreamTransport):
        return FanoutSink(transport, max_queued=max_queued, policy=policy, on_overflow=on_overflow)
    return PyFanoutSink(transport, max_queued=max_queued, policy=policy, on_overflow=on_overflow)  # type: ignore[arg-type]

