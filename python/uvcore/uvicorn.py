"""uvicorn WebSocket protocol with a fan-out sink for each connection.

    config = uvicorn.Config(app, ws=FanoutWebSocketProtocol, loop="none")
    uvcore.run(uvicorn.Server(config).serve())

`FanoutWebSocketProtocol` is uvicorn's own websockets (sans-I/O) protocol - handshake,
incoming frames, pings, permessage-deflate and the closing handshake are all uvicorn's -
plus one thing: once the app accepts, `scope["extensions"]["uvcore.fanout"]["sink"]` is the
connection's sink (`uvcore.wsfanout`), which writes shared-payload text frames straight to
the transport (in C on uvcore's own transports; over TLS or on other loops through
`transport.write`). The sink closes before the server sends or answers a close frame, and
when the connection is lost, so no frame ever follows the close.

Subclass to change the slow-consumer settings (`fanout_max_queued`, `fanout_policy`).
"""
from __future__ import annotations

from typing import Any, Optional

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .wsfanout import DEFAULT_MAX_QUEUED, OVERFLOW_CLOSE_CODE, OVERFLOW_CLOSE_REASON, AnySink, sink_for_transport

__all__ = ["FanoutWebSocketProtocol", "fanout_sink", "EXTENSION", "UVICORN_TESTED"]

# The scope extension the app reads the sink from.
EXTENSION = "uvcore.fanout"

# The methods overridden here are uvicorn's WebSocketsSansIOProtocol internals, not a
# documented API: tests/test_wsfanout_uvicorn.py fails loudly outside this range.
UVICORN_TESTED = (">=0.30", "<0.60")


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `ws=` protocol class: WebSocketsSansIOProtocol plus a fan-out sink."""

    fanout_max_queued: int = DEFAULT_MAX_QUEUED
    fanout_policy: str = "drop_oldest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fanout_sink: Optional[AnySink] = None
        self._fanout_ext: dict[str, Any] = {"sink": None}

    # -- the sink's lifetime ---------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = self._fanout_ext

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "websocket.close":
            self._fanout_close()
        await super().send(message)
        if (
            kind == "websocket.accept"
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.transport.is_closing()
            and self.fanout_sink is None
        ):
            self.fanout_sink = sink_for_transport(
                self.transport,
                max_queued=self.fanout_max_queued,
                policy=self.fanout_policy,
                on_overflow=self._fanout_overflow,
            )
            self._fanout_ext["sink"] = self.fanout_sink

    def data_received(self, data: bytes) -> None:
        if self.fanout_sink is None:
            super().data_received(data)
            return
        # A close frame from the peer is answered inside receive_data (queued for the next
        # write) and a protocol error queues ours: close the sink before either goes out.
        self.conn.receive_data(data)
        if self.conn.close_rcvd is not None or self.conn.close_sent is not None or self.conn.parser_exc is not None:
            self._fanout_close()
        if self.conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        self.handle_events()

    def keepalive_timeout(self) -> None:
        self._fanout_close()
        super().keepalive_timeout()

    def shutdown(self) -> None:
        self._fanout_close()
        super().shutdown()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._fanout_close()
        super().connection_lost(exc)

    def _fanout_close(self) -> None:
        sink = self.fanout_sink
        if sink is not None and not sink.closed:
            sink.close()

    def _fanout_overflow(self, sink: Any) -> None:
        """The "close" policy: the peer fell behind by more than fanout_max_queued bytes."""
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(OVERFLOW_CLOSE_CODE, OVERFLOW_CLOSE_REASON)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": OVERFLOW_CLOSE_CODE, "reason": OVERFLOW_CLOSE_REASON})
        self.transport.close()
        # A peer that reads nothing would keep the backlog (and the connection) forever.
        self.loop.call_later(self.close_timeout, self.transport.abort)


def fanout_sink(scope: dict[str, Any]) -> Optional[AnySink]:
    """The connection's sink from an ASGI scope, or None (another server, or not accepted)."""
    ext = scope.get("extensions") or {}
    entry = ext.get(EXTENSION)
    return entry.get("sink") if entry else None

