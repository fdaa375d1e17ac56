"""create_datagram_endpoint for uvcore.Loop: UDP and Unix datagram sockets.

The cold path lives here (resolving addresses, creating, binding and connecting the socket,
as asyncio does); the transport itself is _uvcore.UDPTransport, in C on uv_udp_t.
DatagramMixin is one of uvcore.Loop's bases.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
import warnings
import weakref
from asyncio import futures, trsock

from . import _uvcore

__all__ = ["UDPTransport"]

logger = logging.getLogger("asyncio")

UDPTransport = _uvcore.UDPTransport

_unset = object()


def _numeric_addr_info(host, port, family, proto):
    """getaddrinfo's answer for a numeric host (no resolver round trip), else None."""
    if host in (None, "") or not isinstance(host, (str, bytes)):
        return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(port, int):
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    for fam in (socket.AF_INET, socket.AF_INET6):
        if family not in (0, socket.AF_UNSPEC, fam):
            continue
        try:
            socket.inet_pton(fam, host.partition("%")[0])
        except OSError:
            continue
        if fam == socket.AF_INET6 and "%" in host:
            return None  # a scope id: let getaddrinfo resolve it
        addr = (host, port) if fam == socket.AF_INET else (host, port, 0, 0)
        return [(fam, socket.SOCK_DGRAM, proto or socket.IPPROTO_UDP, "", addr)]
    return None


def _set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        )


class LiveHandlesMixin:
    """Transports and processes whose libuv handle is open are released when the loop closes
    (their handles must be closed before the uv loop is). Kept in a WeakSet: an open handle
    holds its object alive, so an entry lives exactly as long as the handle."""

    def _track_handle(self, obj):
        live = self.__dict__.get("_uvc_live")
        if live is None:
            live = self._uvc_live = weakref.WeakSet()
        live.add(obj)

    def _close(self):
        live = self.__dict__.get("_uvc_live")
        if live:
            for obj in list(live):
                obj._loop_closing()
            live.clear()
        super()._close()


class DatagramMixin:
    """Loop.create_datagram_endpoint."""

    async def create_datagram_endpoint(
        self,
        protocol_factory,
        local_addr=None,
        remote_addr=None,
        *,
        family=0,
        proto=0,
        flags=0,
        reuse_address=_unset,
        reuse_port=None,
        allow_broadcast=None,
        sock=None,
    ):
        """Create a datagram endpoint: (transport, protocol), as asyncio does."""
        if reuse_address is not _unset:
            # 3.9/3.10 still take the argument (True is refused, False deprecated); later
            # Pythons removed it.
            if sys.version_info >= (3, 11):
                raise TypeError(
                    "create_datagram_endpoint() got an unexpected keyword argument 'reuse_address'"
                )
            if reuse_address:
                raise ValueError(
                    "Passing `reuse_address=True` is no longer supported, as the usage of "
                    "SO_REUSEPORT in UDP poses a significant security concern."
                )
            warnings.warn(
                "The *reuse_address* parameter has been deprecated as of 3.5.10 and is "
                "scheduled for removal in 3.11.",
                DeprecationWarning,
                stacklevel=2,
            )
        if sock is not None:
            bad_type = (
                sock.type == socket.SOCK_STREAM
                if sys.version_info >= (3, 13)
                else sock.type != socket.SOCK_DGRAM
            )
            if bad_type:
                raise ValueError(f"A UDP Socket was expected, got {sock!r}")
            if local_addr or remote_addr or family or proto or flags or reuse_port or allow_broadcast:
                opts = dict(
                    local_addr=local_addr,
                    remote_addr=remote_addr,
                    family=family,
                    proto=proto,
                    flags=flags,
                    reuse_port=reuse_port,
                    allow_broadcast=allow_broadcast,
                )
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used when sock is specified. ({problems})"
                )
            sock.setblocking(False)
            r_addr = None
        else:
            sock, r_addr = await self._datagram_socket(
                local_addr, remote_addr, family, proto, flags, reuse_port, allow_broadcast
            )
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self.get_debug():
            if local_addr:
                logger.info(
                    "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                    local_addr, remote_addr, transport, protocol,
                )
            else:
                logger.debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)", remote_addr, transport, protocol
                )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _datagram_socket(self, local_addr, remote_addr, family, proto, flags, reuse_port,
                               allow_broadcast):
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            addr_pairs_info = (((family, proto), (None, None)),)
        elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr and local_addr[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(os.stat(local_addr).st_mode):
                        os.remove(local_addr)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", local_addr, err)
            addr_pairs_info = (((family, proto), (local_addr, remote_addr)),)
        else:
            addr_infos = {}  # (family, proto) -> [local, remote], in resolution order
            for idx, addr in ((0, local_addr), (1, remote_addr)):
                if addr is None:
                    continue
                if not (isinstance(addr, tuple) and len(addr) == 2):
                    raise TypeError("2-tuple is expected")
                infos = _numeric_addr_info(addr[0], addr[1], family, proto)
                if infos is None:
                    infos = await self.getaddrinfo(
                        *addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags
                    )
                if not infos:
                    raise OSError("getaddrinfo() returned empty list")
                for fam, _, pro, _, address in infos:
                    addr_infos.setdefault((fam, pro), [None, None])[idx] = address
            addr_pairs_info = [
                (key, pair)
                for key, pair in addr_infos.items()
                if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
            ]
            if not addr_pairs_info:
                raise ValueError("can not get address information")

        exceptions = []
        for (family, proto), (local_address, remote_address) in addr_pairs_info:
            sock = None
            r_addr = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM, proto=proto)
                if reuse_port:
                    _set_reuseport(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                if remote_addr:
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    r_addr = remote_address
            except OSError as exc:
                if sock is not None:
                    sock.close()
                exceptions.append(exc)
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            else:
                return sock, r_addr
        raise exceptions[0]

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        extra = dict(extra or {})
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        transport = UDPTransport._create(self, sock, protocol, address, extra)
        self._track_handle(transport)
        self.call_soon(protocol.connection_made, transport)
        # only start reading when connection_made() has been called
        self.call_soon(transport._start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport
