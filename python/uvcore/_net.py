"""Network methods of uvcore.Loop: TCP and Unix connections and servers, TLS, sendfile.

The cold parts live here: name resolution (loop.getaddrinfo, with a fast path for numeric
addresses), socket creation and options, binding, connecting, the Server object and TLS on
asyncio's own SSLProtocol. The data path is C: _uvcore.StreamTransport (csrc/stream.c) adopts
the connected socket, _uvcore.Listener (csrc/server.c) accepts connections.
"""
from __future__ import annotations

import asyncio
import collections.abc
import errno
import functools
import itertools
import logging
import os
import socket
import stat
import sys
import threading
from asyncio import constants, sslproto, staggered, trsock

from . import _uvcore

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - CPython without OpenSSL
    _ssl = None

__all__ = ["Server"]

logger = logging.getLogger("asyncio")

StreamTransport = _uvcore.StreamTransport

_HAS_IPV6 = hasattr(socket, "AF_INET6")
_SSL_SHUTDOWN_TIMEOUT = sys.version_info >= (3, 11)  # SSLProtocol's ssl_shutdown_timeout
_WAIT_CLOSED_FOR_CLIENTS = sys.version_info >= (3, 12)  # wait_closed waits for connections
# asyncio removes a Unix server's socket file on close() from 3.13 on (cleanup_socket=True);
# before, the file stays. The default follows the running Python.
_UNIX_SERVER_CLEANUP = sys.version_info >= (3, 13)
_SENDFILE_CHUNK = 256 * 1024


# ---- helpers ----------------------------------------------------------------------------


def _set_result_unless_cancelled(fut, result):
    if not fut.cancelled():
        fut.set_result(result)


def _check_ssl_socket(sock):
    if _ssl is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _check_ssl_timeouts(ssl, handshake, shutdown):
    if handshake is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if shutdown is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def _numeric_addrinfo(host, port, family, type_, proto, flowinfo=0, scopeid=0):
    """The getaddrinfo() entry for a numeric host without asking the resolver, or None.

    A thread-pool round trip per connection would dominate connect time otherwise."""
    if host is None or not hasattr(socket, "inet_pton"):
        return None
    if type_ == socket.SOCK_STREAM:
        want_proto = socket.IPPROTO_TCP
    elif type_ == socket.SOCK_DGRAM:
        want_proto = socket.IPPROTO_UDP
    else:
        return None
    if proto not in (0, want_proto):
        return None
    if port is None or port == b"" or port == "":
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str) or "%" in host:
        return None  # scoped IPv6 addresses need the resolver for the interface index
    if family == socket.AF_UNSPEC:
        families = [socket.AF_INET, socket.AF_INET6] if _HAS_IPV6 else [socket.AF_INET]
    elif family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
        families = [family]
    else:
        return None
    for af in families:
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if af == socket.AF_INET:
            return af, type_, want_proto, "", (host, port)
        return af, type_, want_proto, "", (host, port, flowinfo, scopeid)
    return None


def _interleave(infos, first_family_count=1):
    """Reorder addresses so families alternate (RFC 8305), first family first."""
    by_family = collections.OrderedDict()
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    ordered = []
    if first_family_count > 1:
        ordered.extend(groups[0][: first_family_count - 1])
        groups[0] = groups[0][first_family_count - 1 :]
    for batch in itertools.zip_longest(*groups):
        ordered.extend(info for info in batch if info is not None)
    return ordered


def _bind_error(exc, address):
    return OSError(
        exc.errno,
        f"error while attempting to bind on address {address!r}: {str(exc.strerror).lower()}",
    )


class _SSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSL protocol, keeping the socket's extra info past connection_lost.

    SSLProtocol answers get_extra_info from its transport and drops the transport when the
    connection is lost. uvcore can read a whole short exchange (reply, EOF, close) in the
    poll that completes the handshake, before create_connection returns; the caller must
    still see the sockname/peername it would see on asyncio's selector loop."""

    def connection_made(self, transport):
        for name in ("sockname", "peername", "socket"):
            value = transport.get_extra_info(name)
            if value is not None:
                self._extra.setdefault(name, value)
        super().connection_made(transport)


def _make_ssl_protocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                       handshake_timeout, shutdown_timeout, call_connection_made=True):
    kwargs = {"ssl_handshake_timeout": handshake_timeout}
    if _SSL_SHUTDOWN_TIMEOUT:
        kwargs["ssl_shutdown_timeout"] = shutdown_timeout
    return _SSLProtocol(
        loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
        call_connection_made=call_connection_made, **kwargs,
    )


class _SendfileFlow(asyncio.Protocol):
    """Stands in for the user's protocol while sendfile's fallback writes, so the write
    buffer's pause/resume callbacks can pace the copy; the user's protocol comes back after."""

    def __init__(self, loop, transport):
        self._loop = loop
        self._transport = transport
        self._proto = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._was_paused = bool(getattr(transport, "_protocol_paused", False))
        self._ready = loop.create_future() if self._was_paused else None
        transport.pause_reading()
        transport.set_protocol(self)

    async def drain(self):
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._ready is not None:
            await self._ready

    def connection_made(self, transport):
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc):
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc or ConnectionError("Connection is closed by peer"))
        self._proto.connection_lost(exc)

    def pause_writing(self):
        if self._ready is None:
            self._ready = self._loop.create_future()

    def resume_writing(self):
        if self._ready is not None:
            if not self._ready.done():
                self._ready.set_result(False)
            self._ready = None

    def data_received(self, data):
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self):
        raise RuntimeError("Invalid state: reading should be paused")

    def restore(self):
        self._transport.set_protocol(self._proto)
        if self._resume_reading:
            self._transport.resume_reading()
        if self._ready is not None:
            self._ready.cancel()
        if self._was_paused:
            self._proto.resume_writing()


# ---- Server ----------------------------------------------------------------------------


class Server(asyncio.AbstractServer):
    """A listening server (what create_server/create_unix_server return), as asyncio's."""

    def __init__(self, loop, sockets, protocol_factory, ssl_context, backlog,
                 ssl_handshake_timeout, ssl_shutdown_timeout, unix_inodes=None):
        self._loop = loop
        self._sockets = list(sockets)
        self._backlog = backlog
        self._serving = False
        self._serving_forever_fut = None
        self._waiters = []
        self._clients = set()
        self._unix_inodes = unix_inodes or {}
        if ssl_context is not None:
            user_factory = protocol_factory

            def protocol_factory():
                return _make_ssl_protocol(
                    loop, user_factory(), ssl_context, None, True, None,
                    ssl_handshake_timeout, ssl_shutdown_timeout,
                )

        self._listeners = []
        try:
            for sock in self._sockets:
                self._listeners.append(_uvcore.Listener(loop, sock, protocol_factory, self, backlog))
        except BaseException:
            for listener in self._listeners:
                listener.close()
            raise

    def __repr__(self):
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # called by transports (csrc/stream.c)
    def _attach(self, transport):
        self._clients.add(transport)

    def _detach(self, transport):
        self._clients.discard(transport)
        if not self._clients and self._sockets is None:
            self._wakeup()

    def _wakeup(self):
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _start_serving(self):
        if self._serving or self._sockets is None:
            return
        self._check_thread()
        self._serving = True
        for listener in self._listeners:
            listener.listen()

    def get_loop(self):
        return self._loop

    def is_serving(self):
        return self._serving

    @property
    def sockets(self):
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def _check_thread(self):
        tid = self._loop._thread_id
        if tid is not None and tid != threading.get_ident():
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def close(self):
        """Stop listening and close the listening sockets; connections stay open."""
        sockets = self._sockets
        if sockets is None:
            return
        self._check_thread()
        self._sockets = None
        paths = []
        for sock in sockets:
            if sock in self._unix_inodes:
                try:
                    paths.append((sock.getsockname(), self._unix_inodes[sock]))
                except OSError:
                    pass
        for listener in self._listeners:
            listener.close()
        for sock in sockets:
            sock.close()  # already detached from its fd: this only marks it closed
        for path, inode in paths:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        self._listeners = []
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if not self._clients:
            self._wakeup()

    def close_clients(self):
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self):
        for transport in list(self._clients):
            transport.abort()

    async def start_serving(self):
        self._start_serving()
        await asyncio.sleep(0)

    async def serve_forever(self):
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self):
        """Wait until the server is closed (and, on Python 3.12+, its connections too)."""
        if self._waiters is None:
            return
        if not _WAIT_CLOSED_FOR_CLIENTS and self._sockets is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()


# ---- the Loop mixin ----------------------------------------------------------------------


class NetworkMixin:
    """create_connection/create_server and friends for uvcore.Loop."""

    # -- resolving and connecting --

    async def _resolve(self, address, *, family=0, type=socket.SOCK_STREAM, proto=0, flags=0):
        host, port = address[:2]
        info = _numeric_addrinfo(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await self.getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)

    async def _connect_socket(self, sock, address):
        """Connect a non-blocking socket, waiting for writability through libuv."""
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()

        def on_writable():
            self.remove_writer(fd)
            if fut.done():
                return
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fut.set_exception(OSError(err, f"Connect call failed {address}"))
            else:
                fut.set_result(None)

        self.add_writer(fd, on_writable)
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                self.remove_writer(fd)
            fut = None  # no cycle through a raised exception's traceback

    async def _connect_addrinfo(self, errors, info, local_infos):
        family, type_, proto, _, address = info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_infos is not None:
                bind_errors = []
                for lfamily, _, _, _, laddr in local_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        bind_errors.append(_bind_error(exc, laddr))
                else:
                    if bind_errors:
                        errors.extend(bind_errors[:-1])
                        raise bind_errors[-1]
                    raise OSError(f"no matching local address with family={family} found")
            await self._connect_socket(sock, address)
            return sock
        except OSError as exc:
            errors.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise

    async def _make_connection(self, sock, protocol_factory, ssl, server_hostname, server_side,
                               ssl_handshake_timeout, ssl_shutdown_timeout):
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl
            ssl_protocol = _make_ssl_protocol(
                self, protocol, sslcontext, waiter, server_side, server_hostname,
                ssl_handshake_timeout, ssl_shutdown_timeout,
            )
            transport = StreamTransport(self, sock, ssl_protocol)
            app_transport = ssl_protocol._app_transport
        else:
            transport = app_transport = StreamTransport(self, sock, protocol)
            # after connection_made and the start of reading, as asyncio orders them
            self.call_soon(_set_result_unless_cancelled, waiter, None)
        try:
            await waiter
        except BaseException:
            transport.close()
            waiter = None
            raise
        return app_transport, protocol

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None,
                                family=0, proto=0, flags=0, sock=None, local_addr=None,
                                server_hostname=None, ssl_handshake_timeout=None,
                                ssl_shutdown_timeout=None, happy_eyeballs_delay=None,
                                interleave=None, all_errors=False):
        """Open a TCP connection; returns (transport, protocol). Addresses are tried in
        turn, or staggered by happy_eyeballs_delay seconds (RFC 8305) when it is given."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._resolve((host, port), family=family, type=socket.SOCK_STREAM,
                                        proto=proto, flags=flags)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            local_infos = None
            if local_addr is not None:
                local_infos = await self._resolve(local_addr, family=family,
                                                  type=socket.SOCK_STREAM, proto=proto,
                                                  flags=flags)
                if not local_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = _interleave(infos, interleave)
            errors = []
            if happy_eyeballs_delay is None or len(infos) == 1:
                for info in infos:
                    try:
                        sock = await self._connect_addrinfo(errors, info, local_infos)
                        break
                    except OSError:
                        continue
            else:
                # RFC 8305: start the next attempt after the delay while earlier ones run;
                # the first socket to connect wins, the others are cancelled (and closed).
                sock, _, _ = await staggered.staggered_race(
                    [functools.partial(self._connect_addrinfo, errors, info, local_infos)
                     for info in infos],
                    happy_eyeballs_delay,
                    loop=self,
                )
            if sock is None:
                try:
                    if all_errors and sys.version_info >= (3, 11):
                        raise ExceptionGroup("create_connection failed", errors)  # noqa: F821
                    if len(errors) == 1 or all(str(e) == str(errors[0]) for e in errors):
                        raise errors[0]
                    raise OSError("Multiple exceptions: {}".format(", ".join(str(e) for e in errors)))
                finally:
                    errors = None
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await self._make_connection(sock, protocol_factory, ssl, server_hostname, False,
                                           ssl_handshake_timeout, ssl_shutdown_timeout)

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        """Open a Unix socket connection; returns (transport, protocol)."""
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self._connect_socket(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        return await self._make_connection(sock, protocol_factory, ssl, server_hostname, False,
                                           ssl_handshake_timeout, ssl_shutdown_timeout)

    async def connect_accepted_socket(self, protocol_factory, sock, *, ssl=None,
                                      ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """Wrap a socket accepted elsewhere into a transport; returns (transport, protocol)."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        _check_ssl_socket(sock)
        return await self._make_connection(sock, protocol_factory, ssl, "", True,
                                           ssl_handshake_timeout, ssl_shutdown_timeout)

    # -- servers --

    async def create_server(self, protocol_factory, host=None, port=None, *,
                            family=socket.AF_UNSPEC, flags=socket.AI_PASSIVE, sock=None,
                            backlog=100, ssl=None, reuse_address=None, reuse_port=None,
                            keep_alive=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, start_serving=True):
        """Listen on host (a name, an address, a list of them, or None for all) and port."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            _check_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = sys.platform != "cygwin"
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = list(host)
            infos = await asyncio.gather(
                *[self._server_addrinfo(h, port, family, flags) for h in hosts]
            )
            infos = list(dict.fromkeys(itertools.chain.from_iterable(infos)))
            sockets = self._bind_server_sockets(infos, reuse_address, reuse_port, keep_alive)
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        try:
            for s in sockets:
                s.setblocking(False)
            server = Server(self, sockets, protocol_factory, ssl, backlog,
                            ssl_handshake_timeout, ssl_shutdown_timeout)
        except BaseException:
            if sock is None:
                for s in sockets:
                    s.close()
            raise
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        if self.get_debug():
            logger.info("%r is serving", server)
        return server

    async def _server_addrinfo(self, host, port, family, flags):
        infos = await self._resolve((host, port), family=family, type=socket.SOCK_STREAM,
                                    flags=flags)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    def _bind_server_sockets(self, infos, reuse_address, reuse_port, keep_alive):
        sockets = []
        done = False
        try:
            for af, socktype, proto, _, address in infos:
                try:
                    sock = socket.socket(af, socktype, proto)
                except OSError:
                    if self.get_debug():
                        logger.warning("create_server() failed to create socket.socket(%r, %r, %r)",
                                       af, socktype, proto, exc_info=True)
                    continue
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    if not hasattr(socket, "SO_REUSEPORT"):
                        raise ValueError("reuse_port not supported by socket module")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, True)
                if keep_alive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    # one socket per family, as asyncio: no dual-stack IPv6 socket
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    sock.bind(address)
                except OSError as exc:
                    err = _bind_error(exc, address)
                    if exc.errno == errno.EADDRNOTAVAIL:
                        # the family is not configured on this host (no IPv6, say): skip it
                        sockets.pop()
                        sock.close()
                        if self.get_debug():
                            logger.warning(str(err))
                        continue
                    raise err from None
            if not sockets:
                raise OSError(f"could not bind on any address out of {[i[4] for i in infos]!r}")
            done = True
        finally:
            if not done:
                for sock in sockets:
                    sock.close()
        return sockets

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100,
                                 ssl=None, ssl_handshake_timeout=None,
                                 ssl_shutdown_timeout=None, start_serving=True,
                                 cleanup_socket=_UNIX_SERVER_CLEANUP):
        """Listen on a Unix socket path (or an abstract name starting with a NUL). close()
        removes the socket file when cleanup_socket is true (asyncio's default from 3.13)."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        own_sock = path is not None
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if path and path[0] not in (0, "\x00"):
                # a socket file left by an earlier server that did not clean up
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", path, exc)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        inodes = {}
        if cleanup_socket:
            name = sock.getsockname()
            if name and name[0] not in (0, "\x00"):
                try:
                    inodes[sock] = os.stat(name).st_ino
                except OSError:
                    pass
        try:
            sock.setblocking(False)
            server = Server(self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout,
                            ssl_shutdown_timeout, unix_inodes=inodes)
        except BaseException:
            if own_sock:
                sock.close()
            raise
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server

    # -- TLS --

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                        server_hostname=None, ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        """Upgrade an open connection to TLS; returns the new (TLS) transport."""
        if _ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, _ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = _make_ssl_protocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout, ssl_shutdown_timeout, call_connection_made=False,
        )
        # no data may reach the TLS protocol before its connection_made
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resume.cancel()
            raise
        return ssl_protocol._app_transport

    # -- sendfile --

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file over a transport: os.sendfile on plain uvcore transports, else (or
        if that is not possible) reads and writes."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        if isinstance(transport, StreamTransport):
            mode = constants._SendfileMode.TRY_NATIVE
        else:
            mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        self._check_sendfile_args(file, offset, count)
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except asyncio.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    @staticmethod
    def _check_sendfile_args(file, offset, count):
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def _sendfile_native(self, transport, file, offset, count):
        if not hasattr(os, "sendfile"):
            raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            in_fd = file.fileno()
        except (AttributeError, OSError) as exc:
            raise asyncio.SendfileNotAvailableError("not a regular file") from exc
        try:
            size = os.fstat(in_fd).st_size
        except OSError:
            raise asyncio.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else size
        if not blocksize:
            return 0
        resume_reading = transport.is_reading()
        transport.pause_reading()
        # our writes must be out before the kernel sends file data behind them
        await transport._make_empty_waiter()
        fd = transport._fileno
        sent_total = 0
        try:
            while True:
                todo = (count - sent_total) if count else (size - offset - sent_total)
                if todo <= 0:
                    break
                try:
                    sent = os.sendfile(fd, in_fd, offset + sent_total, min(todo, 1 << 30))
                except (BlockingIOError, InterruptedError):
                    await self._wait_writable(fd)
                    continue
                except OSError as exc:
                    if sent_total == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK):
                        raise asyncio.SendfileNotAvailableError("os.sendfile() failed") from exc
                    raise
                if sent == 0:
                    break  # end of file
                sent_total += sent
            return sent_total
        finally:
            if sent_total > 0:
                file.seek(offset + sent_total)
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()

    async def _wait_writable(self, fd):
        fut = self.create_future()

        def ready():
            if not fut.done():
                fut.set_result(None)

        self.add_writer(fd, ready)
        try:
            await fut
        finally:
            self.remove_writer(fd)

    async def _sendfile_fallback(self, transport, file, offset, count):
        if offset:
            file.seek(offset)
        blocksize = min(count, _SENDFILE_CHUNK) if count else _SENDFILE_CHUNK
        buf = bytearray(blocksize)
        total = 0
        flow = _SendfileFlow(self, transport)
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = memoryview(buf)[:blocksize]
                n = await self.run_in_executor(None, file.readinto, view)
                if not n:
                    return total
                await flow.drain()
                transport.write(bytes(view[:n]))
                total += n
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            flow.restore()
