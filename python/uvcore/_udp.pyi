# Type stubs for uvcore._udp: create_datagram_endpoint over the C UDPTransport.
import asyncio
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from . import _uvcore

__all__ = ["UDPTransport"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

UDPTransport = _uvcore.UDPTransport

class LiveHandlesMixin:
    """Transports and processes whose libuv handle is open are released when the loop closes."""

class DatagramMixin:
    """Loop.create_datagram_endpoint."""
    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], _P], local_addr: tuple[str, int] | str | None = None,
        remote_addr: tuple[str, int] | str | None = None, *, family: int = 0, proto: int = 0, flags: int = 0,
        reuse_address: bool | None = ..., reuse_port: bool | None = None, allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[asyncio.DatagramTransport, _P]: ...
