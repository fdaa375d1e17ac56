"""aiohttp WebSocketResponse with a fan-out sink for its connection.

    ws = FanoutWebSocketResponse()
    await ws.prepare(request)
    ws.fanout_sink.send(prefix, payload, suffix)     # or uvcore.wsfanout.fanout(...)

Everything else is aiohttp's own WebSocketResponse (handshake, permessage-deflate, pings,
closing). The sink writes shared-payload text frames straight to `request.transport`: in C
on uvcore's own transports, through `transport.write` over TLS or on other loops. It closes
before the response sends its close frame and when the transport closes.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from aiohttp import web

from .wsfanout import DEFAULT_MAX_QUEUED, OVERFLOW_CLOSE_CODE, OVERFLOW_CLOSE_REASON, AnySink, sink_for_transport

__all__ = ["FanoutWebSocketResponse"]


class FanoutWebSocketResponse(web.WebSocketResponse):
    """`web.WebSocketResponse` plus `fanout_sink` once prepared (None before, or when the
    request has no transport)."""

    def __init__(
        self,
        *args: Any,
        fanout_max_queued: int = DEFAULT_MAX_QUEUED,
        fanout_policy: str = "drop_oldest",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fanout_sink: Optional[AnySink] = None
        self._fanout_max_queued = fanout_max_queued
        self._fanout_policy = fanout_policy

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        transport = request.transport
        if self.fanout_sink is None and transport is not None and not transport.is_closing() and not self.closed:
            self.fanout_sink = sink_for_transport(
                transport,
                max_queued=self._fanout_max_queued,
                policy=self._fanout_policy,
                on_overflow=self._fanout_overflow,
            )
        return writer

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        sink = self.fanout_sink
        if sink is not None and not sink.closed:
            sink.close()
        return await super().close(code=code, message=message, drain=drain)

    def _fanout_overflow(self, sink: Any) -> None:
        """The "close" policy: the peer fell behind by more than the cap."""
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(
            self.close(code=OVERFLOW_CLOSE_CODE, message=OVERFLOW_CLOSE_REASON.encode(), drain=False)
        )
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: "set[Any]" = set()
