"""uvicorn protocol classes with two of the lab's limits (see limits.Limits):

- `header_timeout`: a connection must deliver each request head within it (uvicorn's own
  keep-alive timer stops as soon as any byte arrives, so one byte every few seconds - a
  slowloris - would hold a connection for ever);
- `max_outbound_bytes`: a WebSocket client that stops reading is closed with 1008 once that
  much is queued for it (uvicorn would otherwise wait on it for ever), and aborted if it does
  not take the close frame within CLOSE_GRACE. With the fan-out on, the WebSocket class is
  uvcore.uvicorn's FanoutWebSocketProtocol, whose C fan-out sink gets the same cap with its
  "close" policy.

Both subclass uvicorn's classes and use attributes that are not uvicorn's documented API
(`cycle`, `conn`, `queue`, `close_sent`, `close_timer`): the tested uvicorn range is pinned
in pyproject.toml and tests/test_lab_limits.py checks the attributes, so a uvicorn that
changes them fails there loudly.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional, Tuple, Type

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from uvcore.uvicorn import FanoutWebSocketProtocol

from .limits import CLOSE_GRACE, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, Counters, Limits, bound_send_buffer

log = logging.getLogger("lab.limits")


def guarded_protocols(
    limits: Limits, counters: Counters, fanout: bool = True
) -> Tuple[Type[H11Protocol], Type[WebSocketsSansIOProtocol]]:
    """The (http, ws) protocol classes to give uvicorn.Config for these limits; with
    fanout, the WebSocket one is uvcore.uvicorn's FanoutWebSocketProtocol."""
    ws_base: Type[WebSocketsSansIOProtocol] = FanoutWebSocketProtocol if fanout else WebSocketsSansIOProtocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer: Optional[asyncio.TimerHandle] = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm_head_timer()  # the next request's head starts arriving
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle or self.transport.get_protocol() is not self:
                self._cancel_head_timer()  # a complete head: a request (or a WebSocket) started

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return
            counters.header_timeouts += 1
            log.info("closing a connection that sent no complete request head in %gs", limits.header_timeout)
            self.transport.close()

    class GuardedWebSocketProtocol(ws_base):  # type: ignore[valid-type,misc]
        # With fanout, the connection's C fan-out sink (uvcore.uvicorn) closes at the same cap.
        fanout_max_queued = limits.max_outbound_bytes
        fanout_policy = "close"

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            # pause_writing() then means: more than max_outbound_bytes are queued.
            transport.set_write_buffer_limits(high=limits.max_outbound_bytes)
            bound_send_buffer(transport, limits)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self.handshake_complete and not self.close_sent and not self.disconnected:
                self._close_slow_consumer()

        def _fanout_overflow(self, sink: Any) -> None:  # FanoutWebSocketProtocol's "close" policy
            if not self.close_sent and not self.transport.is_closing():
                counters.slow_consumers_disconnected += 1
                log.warning("closing a WebSocket with %d: its client left %d bytes unread", CLOSE_SLOW_CONSUMER, sink.queued)
            super()._fanout_overflow(sink)

        def _close_slow_consumer(self) -> None:
            counters.slow_consumers_disconnected += 1
            queued = self.transport.get_write_buffer_size()
            log.warning("closing a WebSocket with %d: its client left %d bytes unread", CLOSE_SLOW_CONSUMER, queued)
            if fanout:
                self._fanout_close()  # no fan-out frame may follow the close frame
            # The close frame goes behind the backlog: a client that reads again gets both.
            self.conn.send_close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            # Sends waiting for the buffer to drain then fail as on a lost connection.
            self.disconnected = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_SLOW_CONSUMER})
            self.close_timer = self.loop.call_later(CLOSE_GRACE, self.transport.abort)

    return GuardedH11Protocol, GuardedWebSocketProtocol


# What the classes above rely on beyond uvicorn's documented API (checked by the tests).
UVICORN_ATTRIBUTES = {
    H11Protocol: ("cycle", "transport", "loop"),
    WebSocketsSansIOProtocol: ("conn", "queue", "close_sent", "close_timer", "handshake_complete", "disconnected", "transport", "loop"),
}
