# Type stubs for uvcore._net: TCP/Unix connections and servers (the C transports in _uvcore).
import asyncio
import socket
import ssl as _ssl
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import _uvcore

__all__ = ["Server"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_SSL = _ssl.SSLContext | bool | None
_ProtocolFactory = Callable[[], asyncio.BaseProtocol]

StreamTransport = _uvcore.StreamTransport

class Server(asyncio.AbstractServer):
    """A listening server (what create_server/create_unix_server return), as asyncio's."""
    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: Iterable[socket.socket],
                 protocol_factory: _ProtocolFactory, ssl_context: _ssl.SSLContext | None, backlog: int,
                 ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None,
                 unix_inodes: dict[str, Any] | None = None) -> None: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def is_serving(self) -> bool: ...
    @property
    def sockets(self) -> tuple[socket.socket, ...]: ...
    def close(self) -> None: ...
    def close_clients(self) -> None: ...
    def abort_clients(self) -> None: ...
    async def start_serving(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def wait_closed(self) -> None: ...

class NetworkMixin:
    """Loop's connection, server, TLS and sendfile methods."""
    async def create_connection(
        self, protocol_factory: Callable[[], _P], host: str | None = None, port: int | str | None = None, *,
        ssl: _SSL = None, family: int = 0, proto: int = 0, flags: int = 0, sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None, server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None, interleave: int | None = None, all_errors: bool = False,
    ) -> tuple[asyncio.Transport, _P]: ...
    async def create_unix_connection(
        self, protocol_factory: Callable[[], _P], path: str | None = None, *, ssl: _SSL = None,
        sock: socket.socket | None = None, server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _P]: ...
    async def connect_accepted_socket(
        self, protocol_factory: Callable[[], _P], sock: socket.socket, *, ssl: _SSL = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _P]: ...
    async def create_server(
        self, protocol_factory: _ProtocolFactory, host: str | Iterable[str] | None = None,
        port: int | str | None = None, *, family: int = ..., flags: int = ...,
        sock: socket.socket | Iterable[socket.socket] | None = None, backlog: int = 100, ssl: _SSL = None,
        reuse_address: bool | None = None, reuse_port: bool | None = None, keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server: ...
    async def create_unix_server(
        self, protocol_factory: _ProtocolFactory, path: str | None = None, *, sock: socket.socket | None = None,
        backlog: int = 100, ssl: _SSL = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, start_serving: bool = True, cleanup_socket: bool = ...,  # True from Python 3.13 on, as asyncio
    ) -> Server: ...
    async def start_tls(
        self, transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol, sslcontext: _ssl.SSLContext, *,
        server_side: bool = False, server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None: ...
    async def sendfile(self, transport: asyncio.WriteTransport, file: Any, offset: int = 0,
                       count: int | None = None, *, fallback: bool = True) -> int: ...
