"""_redis: the Redis backend of uvcore.PubSub (``PubSub.from_url("redis://...")``).

The C broker stays the local fan-out; this bridge keeps one Redis SUBSCRIBE per channel and
one PSUBSCRIBE per pattern that has local subscribers (it hears about them through the
broker's _set_bridge hooks), sends publishes to Redis and delivers what comes back with
publish_local(), so every process sees one order. It speaks RESP3 on a single redis-py
asyncio connection (hiredis parses), and reconnects with backoff when Redis goes away.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import pickle
import random
import threading
import urllib.parse
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from . import _pubsub

__all__ = ["RedisPubSub"]

log = logging.getLogger("uvcore.redis")

Codec = Union[str, Tuple[Callable[[Any], Union[bytes, str]], Callable[[bytes], Any]]]


# ---------------------------------------------------------------------------- codecs


_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json_encode(obj: Any) -> bytes:
    return _json_encoder.encode(obj).encode()


def _pickle_encode(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def _bytes_encode(obj: Any) -> bytes:
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"the 'bytes' codec publishes bytes-like messages, not {type(obj).__name__}")


def _bytes_decode(data: bytes) -> bytes:
    return data


_json_decoder = json.JSONDecoder()
_json_scan = _json_decoder.scan_once


def _json_decode(data: bytes) -> Any:
    # json.loads(bytes) spends most of its time guessing the encoding; messages are UTF-8.
    text = data.decode()
    try:
        obj, end = _json_scan(text, 0)
    except StopIteration:
        return _json_decoder.decode(text)  # leading space, or the error with its position
    if end != len(text):
        return _json_decoder.decode(text)  # trailing space, or "Extra data"
    return obj


_CODECS: Dict[str, Tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "json": (_json_encode, _json_decode),
    "pickle": (_pickle_encode, pickle.loads),
    "bytes": (_bytes_encode, _bytes_decode),
}


def _make_codec(codec: Codec) -> Tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]:
    if isinstance(codec, str):
        try:
            encode, decode = _CODECS[codec]
        except KeyError:
            raise ValueError(
                f"unknown codec {codec!r}: use 'json', 'pickle', 'bytes' or an (encode, decode) pair"
            ) from None
        return codec, encode, decode
    if isinstance(codec, tuple) and len(codec) == 2 and all(callable(f) for f in codec):
        user_encode, decode = codec

        def encode(obj: Any) -> bytes:
            data = user_encode(obj)
            if isinstance(data, str):
                return data.encode()
            if isinstance(data, (bytes, bytearray, memoryview)):
                return bytes(data)
            raise TypeError(f"the codec's encode() must return bytes or str, not {type(data).__name__}")

        return "custom", encode, decode
    raise TypeError(
        f"codec must be 'json', 'pickle', 'bytes' or an (encode, decode) pair of callables, not {codec!r}"
    )


# ---------------------------------------------------------------------------- options


def _check_seconds(name: str, value: Any, expected: str, ok: Callable[[float], bool]) -> None:
    """A duration option: a real number (not a bool), finite (inf would never fire, NaN
    compares false everywhere), and in range; ValueError naming the option otherwise."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} must be {expected} (finite, in seconds), not {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or not ok(value):
        raise ValueError(f"{name} must be {expected} (finite, in seconds), not {value!r}")


# ---------------------------------------------------------------------------- URLs

_SCHEMES = ("redis", "rediss", "unix")


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _check_url(url: Any) -> str:
    """Validate what redis-py would accept silently or report vaguely; ValueError if bad."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'redis://localhost:6379/0', not {type(url).__name__}")
    shown = _redacted(url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {shown!r}: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"bad Redis URL {shown!r}: the scheme must be redis://, rediss:// (TLS) or unix://, "
            f"not {parts.scheme + '://' if parts.scheme else 'missing'}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"bad Redis URL {shown!r}: unix:// needs a socket path (unix:///run/redis.sock)")
    else:
        if not parts.hostname:
            raise ValueError(f"bad Redis URL {shown!r}: no host (expected redis://host:port/db)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad Redis URL {shown!r}: the port must be a number in 1-65535") from None
        if port == 0:
            raise ValueError(f"bad Redis URL {shown!r}: the port must be a number in 1-65535")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError(f"bad Redis URL {shown!r}: the database must be a number (redis://host:port/0)")
    return url


# ---------------------------------------------------------------------------- the wire

# What a command expects back. Commands are sent on one connection and Redis answers them
# in order, so a FIFO of these entries pairs replies with commands. (P)(UN)SUBSCRIBE is
# answered by a confirmation push; PUBLISH and PING by a plain reply; either may instead
# get an error reply (an ACL refusal, say).
_SUB, _PUB, _PING = 0, 1, 2

# Where Redis puts the pushes that a PUBLISH sends to the publishing connection itself:
# before its reply (Redis <= 7.0) or after it (7.2 deferred them). Probed on connect.
_SELF_BEFORE, _SELF_AFTER, _SELF_NONE = "before", "after", "none"

_PING_CMD = b"*1\r\n$4\r\nPING\r\n"


def _pack(*args: bytes) -> bytes:
    """One RESP command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n" % len(a))
        out.append(a)
        out.append(b"\r\n")
    return b"".join(out)


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


class _Entry:
    __slots__ = ("kind", "fut", "channel", "data")

    def __init__(self, kind: int, fut: Optional[asyncio.Future], channel: bytes = b"", data: bytes = b"") -> None:
        self.kind = kind
        self.fut = fut
        self.channel = channel
        self.data = data

    def resolve(self, value: Any) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(value)

    def fail(self, exc: BaseException) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)


class _Push(list):
    """A push frame seen through redis-py's parser (when hiredis is not there)."""

    __slots__ = ()


class _FrameReader:
    """Reads RESP3 frames off a connected redis-py Connection, as many as are buffered.

    With hiredis the stream is parsed here in batches (no coroutine per frame); otherwise
    redis-py's own parser is used, one frame at a time. Push frames come out as lists;
    replies as int/bytes, errors as exception instances.

    It reads redis-py's private Connection._reader, _writer and _parser (no public API gives
    the stream): pyproject.toml pins the tested redis-py range and
    tests/test_redis_private_api.py fails loudly when a redis-py changes them.
    """

    def __init__(self, conn: Any, fast: bool = True) -> None:
        self._conn = conn
        self._hiredis = None
        stream = getattr(conn, "_reader", None)
        if fast and isinstance(stream, asyncio.StreamReader):
            try:
                import hiredis
            except ImportError:
                hiredis = None
            if hiredis is not None:
                self._hiredis = hiredis.Reader()
                self._stream = stream
        if self._hiredis is None:
            conn._parser.set_pubsub_push_handler(self._on_push)
        # Reads block until a frame comes and writes are not timed: liveness is the bridge's
        # health check, and a timeout here would only cost a task per call.
        conn.socket_timeout = None
        writer = getattr(conn, "_writer", None)
        self._writer = writer if isinstance(writer, asyncio.StreamWriter) else None

    def write(self, commands: List[bytes]) -> None:
        """Queue packed commands on the socket, in order, without waiting."""
        if self._writer is not None:
            if self._writer.is_closing():
                return  # the reader is about to see the connection end
            self._writer.writelines(commands)
        else:
            asyncio.get_running_loop().create_task(self._conn.send_packed_command(commands, check_health=False))

    @property
    def fast(self) -> bool:
        return self._hiredis is not None

    @staticmethod
    async def _on_push(response: Any) -> _Push:
        return _Push(response)

    async def read(self) -> List[Any]:
        if self._hiredis is not None:
            reader = self._hiredis
            frames = []
            while True:
                frame = reader.gets()
                if frame is False:
                    if frames:
                        return frames
                    data = await self._stream.read(262144)
                    if not data:
                        raise ConnectionError("Redis closed the connection")
                    reader.feed(data)
                    continue
                frames.append(frame)
        from redis.exceptions import ResponseError

        try:
            frame = await self._conn.read_response(disable_decoding=True, timeout=None, push_request=True)
        except ResponseError as exc:
            return [exc]
        return [frame]


# ---------------------------------------------------------------------------- the backend


class RedisPubSub(_pubsub.PubSub):
    """A uvcore.PubSub whose messages go through Redis; made by ``PubSub.from_url(url)``.

    Same API as the in-memory broker. Differences, all from Redis pub/sub itself:
    ``await publish()`` returns once Redis has the message and, when this process has
    subscribers for it, once it has come back and been delivered to them; it returns the
    number of local subscriptions that received it. ``publish_nowait()`` sends without
    waiting and returns None. Delivery is at most once: what is published while the
    connection to Redis is down is lost for this process.
    """

    __slots__ = (
        "_url", "_shown_url", "_codec_name", "_encode", "_decode", "_pool", "_redis_options",
        "_connect_timeout", "_publish_timeout", "_reconnect_delay", "_reconnect_max_delay",
        "_health_check_interval", "_fast_reader",
        "_loop", "_thread", "_runner", "_conn", "_frames", "_flush_scheduled", "_connected",
        "_attempt_waiters", "_last_error", "_ever_connected", "_closing",
        "_outbox", "_pending", "_self_order",
        "_await_self", "_names", "_last_rx",
        "_reconnects", "_decode_errors", "_received", "_redis_published", "_redis_subscriptions",
        "_errors",
    )

    def __new__(cls, url: str, **options: Any) -> "RedisPubSub":
        maxsize = options.get("maxsize", 1024)
        overflow = options.get("overflow", "drop_oldest")
        return super().__new__(cls, maxsize=maxsize, overflow=overflow)

    def __init__(
        self,
        url: str,
        *,
        codec: Codec = "json",
        maxsize: int = 1024,
        overflow: str = "drop_oldest",
        connect_timeout: float = 5.0,
        publish_timeout: Optional[float] = None,
        reconnect_delay: float = 0.05,
        reconnect_max_delay: float = 5.0,
        health_check_interval: float = 30.0,
        **redis_options: Any,
    ) -> None:
        self._url = _check_url(url)
        self._shown_url = _redacted(url)
        self._codec_name, self._encode, self._decode = _make_codec(codec)
        for name, value in (("connect_timeout", connect_timeout), ("reconnect_delay", reconnect_delay),
                            ("reconnect_max_delay", reconnect_max_delay),
                            ("health_check_interval", health_check_interval)):
            _check_seconds(name, value, "a number > 0", lambda v: v > 0)
        if publish_timeout is not None:
            _check_seconds("publish_timeout", publish_timeout, "a number >= 0 or None", lambda v: v >= 0)
        self._connect_timeout = float(connect_timeout)
        self._publish_timeout = float(connect_timeout if publish_timeout is None else publish_timeout)
        self._reconnect_delay = float(reconnect_delay)
        self._reconnect_max_delay = float(max(reconnect_max_delay, reconnect_delay))
        self._health_check_interval = float(health_check_interval)
        self._fast_reader = bool(redis_options.pop("_fast_reader", True))
        self._redis_options = redis_options
        self._pool = self._make_pool()

        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[int] = None
        self._runner: Optional[asyncio.Task] = None
        self._conn: Any = None
        self._frames: Optional[_FrameReader] = None
        self._flush_scheduled = False
        self._connected: Optional[asyncio.Event] = None
        self._attempt_waiters: List[asyncio.Future] = []
        self._last_error: Optional[BaseException] = None
        self._ever_connected = False
        self._closing = False
        self._outbox: List[bytes] = []
        self._pending: Deque[_Entry] = collections.deque()
        self._self_order = _SELF_NONE
        self._await_self: Optional[_Entry] = None
        self._names: Dict[bytes, str] = {}
        self._last_rx = 0.0
        self._reconnects = 0
        self._decode_errors = 0
        self._received = 0
        self._redis_published = 0
        self._redis_subscriptions = 0
        self._errors = 0
        self._set_bridge(self)

    def _make_pool(self) -> Any:
        try:
            from redis.asyncio.connection import ConnectionPool
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ImportError(
                "uvcore.PubSub.from_url needs redis-py with hiredis: pip install 'uvcore[redis]'"
            ) from exc
        options: Dict[str, Any] = dict(
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0),  # the bridge has its own reconnect loop
            client_name=f"uvcore-pubsub-{uuid.uuid4().hex[:8]}",
        )
        if not self._url.startswith("unix:"):
            # TCP only: redis-py's Unix socket connection refuses the keyword.
            options["socket_keepalive"] = True
        options.update(self._redis_options)
        options["protocol"] = 3
        try:
            pool = ConnectionPool.from_url(self._url, **options)
            pool.make_connection()  # checks the options now rather than on connect
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad Redis URL or option for {self._shown_url!r}: {exc}") from None
        return pool

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._conn is not None else "disconnected")
        s = super().stats()
        return (f"<uvcore.PubSub redis={self._shown_url!r} {state} channels={s['channels']} "
                f"patterns={s['patterns']} subscribers={s['subscribers']}>")

    # ------------------------------------------------------------------ public API

    async def connect(self) -> None:
        """Connect now (otherwise the first subscribe or publish does).

        Raises ConnectionError with the reason when the attempt fails (server unreachable,
        bad credentials, not Redis 6+); the bridge then keeps retrying in the background.
        """
        self._check_open("connect")
        self._start()
        if self._conn is not None:
            return
        fut = asyncio.get_running_loop().create_future()
        self._attempt_waiters.append(fut)
        await fut

    async def publish(self, channel: str, message: Any) -> int:
        """Send message to Redis on channel; returns the number of local subscriptions that
        received it when it came back (0 if this process has none for the channel).

        Waits up to publish_timeout (default connect_timeout) for a connection to Redis,
        then raises ConnectionError.
        """
        data, chan = self._prepare_publish(channel, message, "publish")
        if self._conn is None:
            await self._wait_connected("publish")
        fut = self._loop.create_future()
        self._send(_pack(b"PUBLISH", chan, data), _Entry(_PUB, fut, chan, data))
        return await fut

    def publish_nowait(self, channel: str, message: Any) -> None:  # type: ignore[override]
        """Send message to Redis without waiting; returns None (the local receiver count is
        only known when the message comes back). Raises ConnectionError when not connected."""
        data, chan = self._prepare_publish(channel, message, "publish_nowait")
        if self._conn is None:
            raise ConnectionError(self._unavailable("publish_nowait"))
        self._send(_pack(b"PUBLISH", chan, data), _Entry(_PUB, None, chan, data))

    async def sync(self) -> None:
        """Wait until Redis has processed every subscribe, unsubscribe and publish this
        process issued before the call (a PING round trip on the bridge's connection).

        After ``sub = bus.subscribe(ch); await bus.sync()``, messages that any process
        publishes on ch reach sub.
        """
        self._check_open("sync")
        if self._conn is None:
            await self._wait_connected("sync")
        fut = self._loop.create_future()
        self._send(_PING_CMD, _Entry(_PING, fut))
        await fut

    def stats(self) -> Dict[str, Any]:
        """The broker's counters plus the bridge's: connected, reconnects, decode_errors,
        received (messages from Redis delivered here), redis_published, redis_subscriptions
        (channels+patterns Redis has this process subscribed to), errors (refused commands)."""
        s = super().stats()
        s.update(
            backend="redis",
            connected=self._conn is not None,
            reconnects=self._reconnects,
            decode_errors=self._decode_errors,
            received=self._received,
            redis_published=self._redis_published,
            redis_subscriptions=self._redis_subscriptions,
            errors=self._errors,
        )
        return s

    async def aclose(self) -> None:  # type: ignore[override]
        """End every subscription, flush what was published, close the connection."""
        if self._closing:
            await self._stop_runner()
            return
        self._closing = True
        await super().aclose()
        if self._conn is not None and self._thread == threading.get_ident():
            try:  # let already published messages reach Redis
                await asyncio.wait_for(self.sync(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass
        await self._stop_runner()

    async def __aenter__(self) -> "RedisPubSub":  # type: ignore[override]
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:  # type: ignore[override]
        await self.aclose()
        return False

    # ------------------------------------------------------------------ bridge hooks
    # Called by the C broker synchronously, possibly from a finalizer: only queue work.

    def on_first_subscriber(self, name: str, is_pattern: bool) -> None:
        self._hook(b"PSUBSCRIBE" if is_pattern else b"SUBSCRIBE", name)

    def on_last_subscriber(self, name: str, is_pattern: bool) -> None:
        self._hook(b"PUNSUBSCRIBE" if is_pattern else b"UNSUBSCRIBE", name)

    def _hook(self, command: bytes, name: str) -> None:
        if self._closing:
            return
        if self._loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop yet: the first connection subscribes to all local names
            self._start()
        if self._loop.is_closed():
            return  # subscriptions collected after their loop ended: the connection is gone
        if self._thread != threading.get_ident():
            self._loop.call_soon_threadsafe(self._hook, command, name)
            return
        if self._conn is not None:
            self._send(_pack(command, _name_bytes(name)), _Entry(_SUB, None))
        # else: (re)connecting; the connection subscribes to what is local when it is up

    # ------------------------------------------------------------------ helpers

    def _check_open(self, what: str) -> None:
        if self.closed or self._closing:
            raise RuntimeError(f"{what}() on a closed PubSub")

    def _prepare_publish(self, channel: Any, message: Any, what: str) -> Tuple[bytes, bytes]:
        if not isinstance(channel, str):
            raise TypeError(f"channel must be a str, not {type(channel).__name__}")
        if not channel:
            raise ValueError("channel must not be empty")
        self._check_open(what)
        data = self._encode(message)
        self._start()
        return data, _name_bytes(channel)

    def _unavailable(self, what: str) -> str:
        why = f": {self._last_error}" if self._last_error is not None else ""
        return f"{what}(): not connected to Redis at {self._shown_url}{why}"

    async def _wait_connected(self, what: str) -> None:
        if not self._ever_connected:
            await self.connect()  # the first attempt's error is the clearest one
            return
        try:
            await asyncio.wait_for(self._connected.wait(), self._publish_timeout)
        except asyncio.TimeoutError:
            raise ConnectionError(self._unavailable(what)) from None
        if self._conn is None:  # closed while waiting
            self._check_open(what)
            raise ConnectionError(self._unavailable(what))

    def _send(self, command: bytes, entry: _Entry) -> None:
        # The two appends must stay together: a finalizer may queue a command at any
        # allocation, and commands and entries must keep the same order.
        self._outbox.append(command)
        self._pending.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what was queued during this loop iteration in one go."""
        self._flush_scheduled = False
        frames = self._frames
        if frames is None or not self._outbox:
            return
        if self._self_order == _SELF_AFTER and self._pending[-1].kind == _PUB:
            # Our own copy of a publish comes after its reply: make sure a frame follows it.
            self._outbox.append(_PING_CMD)
            self._pending.append(_Entry(_PING, None))
        out, self._outbox = self._outbox, []
        frames.write(out)

    # ------------------------------------------------------------------ connection life

    def _start(self) -> None:
        """Bind to the running loop and start the connection task (once)."""
        if self._runner is not None:
            if self._loop is not asyncio.get_running_loop():
                raise RuntimeError("this Redis PubSub is used by another event loop")
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread = threading.get_ident()
        self._connected = asyncio.Event()
        self._runner = loop.create_task(self._run())

    async def _stop_runner(self) -> None:
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._fail_waiters(RuntimeError("the PubSub was closed"))
        if self._connected is not None:
            self._connected.set()  # wakes publishers waiting for a connection: they see it closed

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._attempt_waiters = self._attempt_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    async def _run(self) -> None:
        """Connect, serve, and on loss reconnect with exponential backoff, until closed."""
        attempt = 0
        try:
            while not self._closing:
                try:
                    conn, frames = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure: report, back off, retry
                    self._last_error = exc
                    self._fail_waiters(exc)
                    attempt += 1
                    delay = self._backoff(attempt)
                    log.warning("%s; retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if self._ever_connected:
                    self._reconnects += 1
                    log.warning("reconnected to Redis at %s after %d attempt(s)", self._shown_url, attempt + 1)
                attempt = 0
                self._ever_connected = True
                self._last_error = None
                try:
                    await self._serve(conn, frames)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    self._last_error = exc
                    if not self._closing:
                        log.warning("lost the connection to Redis at %s: %s; reconnecting", self._shown_url, exc)
        finally:
            self._connected.clear()

    def _backoff(self, attempt: int) -> float:
        """The pause before reconnect attempt number attempt + 1: doubling from
        reconnect_delay up to reconnect_max_delay, with jitter. The exponent is capped, or
        a long outage (some 1,000 attempts) would overflow the float and end the bridge."""
        delay = min(self._reconnect_max_delay, self._reconnect_delay * 2.0 ** min(attempt - 1, 60))
        return delay * random.uniform(0.5, 1.0)

    async def _open(self) -> Tuple[Any, _FrameReader]:
        """A connected, probed connection subscribed to every local channel and pattern."""
        from redis.exceptions import AuthenticationError, RedisError, ResponseError

        conn = self._pool.make_connection()
        try:
            try:
                await conn.connect()
            except AuthenticationError as exc:
                raise ConnectionError(f"Redis at {self._shown_url} refused the credentials: {exc}") from exc
            except ResponseError as exc:
                if "HELLO" in str(exc).upper() or "unknown command" in str(exc):
                    raise ConnectionError(
                        f"Redis at {self._shown_url} does not speak RESP3 (Redis 6 or later is needed): {exc}"
                    ) from exc
                raise ConnectionError(f"Redis at {self._shown_url} refused the connection: {exc}") from exc
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                raise ConnectionError(f"cannot connect to Redis at {self._shown_url}: {reason}") from exc
            frames = _FrameReader(conn, self._fast_reader)
            self._self_order = await self._probe(conn, frames)
        except BaseException:
            await self._drop(conn)
            raise
        return conn, frames

    async def _probe(self, conn: Any, frames: _FrameReader) -> str:
        """Find where this server puts a connection's own messages relative to the PUBLISH
        reply (it changed in Redis 7.2), so publish() can count its local receivers: try it
        on a private channel, or if an ACL forbids that, go by the version HELLO reports."""
        probe = b"__uvcore:probe:" + uuid.uuid4().hex.encode()
        commands = [_pack(b"SUBSCRIBE", probe), _pack(b"PUBLISH", probe, b""), _pack(b"UNSUBSCRIBE", probe),
                    _pack(b"HELLO", b"3")]
        await conn.send_packed_command(commands, check_health=False)
        seen: List[str] = []
        answers = 0  # the four commands get four answers; the message push is extra
        hello: Any = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        while answers < 4:
            remaining = deadline - loop.time()
            try:
                batch = await asyncio.wait_for(frames.read(), remaining if remaining > 0 else 0)
            except asyncio.TimeoutError:
                raise ConnectionError(
                    f"Redis at {self._shown_url} did not answer within {self._connect_timeout}s") from None
            for frame in batch:
                if isinstance(frame, list) and frame and frame[0] == b"message":
                    seen.append("push")
                    continue
                answers += 1
                if isinstance(frame, Exception):
                    seen.append("error")
                elif isinstance(frame, int):
                    seen.append("reply")
                elif isinstance(frame, dict):
                    hello = frame
        return self._order_from(seen, hello)

    @staticmethod
    def _order_from(seen: List[str], hello: Any) -> str:
        if "error" not in seen:
            if seen[:2] == ["push", "reply"]:
                return _SELF_BEFORE
            if seen[:2] == ["reply", "push"]:
                return _SELF_AFTER
            return _SELF_NONE
        version = hello.get(b"version", b"0")
        try:
            major_minor = tuple(int(x) for x in bytes(version).split(b".")[:2])
        except ValueError:
            return _SELF_NONE
        return _SELF_AFTER if major_minor >= (7, 2) else _SELF_BEFORE

    async def _drop(self, conn: Any) -> None:
        try:
            await conn.disconnect(nowait=True)
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    async def _serve(self, conn: Any, frames: _FrameReader) -> None:
        """Subscribe to what is local, then read until the connection fails."""
        self._outbox = []
        self._pending = collections.deque()
        self._await_self = None
        self._conn = conn
        self._frames = frames
        for name in super().channels():
            self._send(_pack(b"SUBSCRIBE", _name_bytes(name)), _Entry(_SUB, None))
        for name in super().patterns():
            self._send(_pack(b"PSUBSCRIBE", _name_bytes(name)), _Entry(_SUB, None))
        self._connected.set()
        waiters, self._attempt_waiters = self._attempt_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        tasks = [loop.create_task(self._read_loop(frames)), loop.create_task(self._health_loop())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            raise ConnectionError("the connection to Redis ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._connected.clear()
            self._conn = None
            self._frames = None
            self._redis_subscriptions = 0
            lost = ConnectionError(
                f"the connection to Redis at {self._shown_url} was lost before Redis confirmed; "
                "the message may or may not have been published"
            )
            if self._await_self is not None:
                self._await_self.resolve(0)
                self._await_self = None
            pending, self._pending = self._pending, collections.deque()
            self._outbox = []
            for entry in pending:
                entry.fail(lost)
            await self._drop(conn)

    async def _health_loop(self) -> None:
        """A connection that stops answering (a dead peer, a cut cable) is dropped."""
        interval = self._health_check_interval
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            if loop.time() - self._last_rx < interval:
                continue
            self._send(_PING_CMD, _Entry(_PING, None))
            sent = loop.time()
            await asyncio.sleep(interval)
            if self._last_rx < sent:
                raise ConnectionError(f"Redis at {self._shown_url} did not answer a PING within {interval}s")

    async def _read_loop(self, frames: _FrameReader) -> None:
        # The hot path: everything it needs is in local variables.
        loop = asyncio.get_running_loop()
        read = frames.read
        # A full subscriber with overflow="block" queues its message in its own pending
        # queue: this reader never waits, so other channels, publish() replies and the
        # health check's PING answers keep flowing.
        publish_local_queued = self.publish_local_queued
        decode = self._decode
        names = self._names
        # The last message delivered since the last reply or confirmation: one PUBLISH
        # reaches this connection once per matching subscription (the channel and each
        # pattern), back to back, and only the first copy is delivered.
        g_channel: Optional[bytes] = None
        g_data: Optional[bytes] = None
        g_keys: List[Optional[bytes]] = []
        g_count = 0
        while True:
            batch = await read()
            self._last_rx = loop.time()
            received = 0
            for frame in batch:
                if not isinstance(frame, list):
                    self._on_reply(frame, g_channel, g_data, g_count)
                    g_channel = g_data = None
                    continue
                kind = frame[0]
                if kind == b"message":
                    key, channel, data = None, frame[1], frame[2]
                elif kind == b"pmessage":
                    key, channel, data = frame[1], frame[2], frame[3]
                else:
                    if self._on_control(frame):
                        g_channel = g_data = None
                    continue
                if channel == g_channel and key not in g_keys and data == g_data:
                    g_keys.append(key)
                    continue
                name = names.get(channel)
                if name is None:
                    if len(names) > 4096:
                        names.clear()
                    name = names[channel] = channel.decode("utf-8", "surrogateescape")
                received += 1
                try:
                    msg = decode(data)
                except Exception as exc:  # noqa: BLE001 - a bad message must not stop the bridge
                    n = 0
                    self._decode_error(name, exc)
                else:
                    try:
                        n = publish_local_queued(name, msg)
                    except RuntimeError:
                        if self.closed:
                            return
                        raise
                g_channel, g_data, g_keys, g_count = channel, data, [key], n
                own = self._await_self
                if own is not None:
                    self._await_self = None
                    own.resolve(n if (own.channel == channel and own.data == data) else 0)
            self._received += received

    def _decode_error(self, name: str, exc: Exception) -> None:
        self._decode_errors += 1
        if self._decode_errors <= 10 or self._decode_errors % 1000 == 0:
            log.warning("cannot decode a message on %r with the %s codec (%d so far): %r",
                        name, self._codec_name, self._decode_errors, exc)

    def _on_control(self, frame: List[Any]) -> bool:
        """A confirmation of (p)(un)subscribe (True), or another kind of push (ignored)."""
        kind = bytes(frame[0])
        if kind not in (b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe"):
            return False
        self._settle_self()
        if len(frame) > 2 and isinstance(frame[2], int):
            self._redis_subscriptions = frame[2]
        if not self._pending or self._pending[0].kind != _SUB:
            raise ConnectionError(f"out of step with Redis: unexpected {kind.decode()} confirmation")
        self._pending.popleft()
        return True

    def _settle_self(self) -> None:
        own = self._await_self
        if own is not None:  # our message did not come back to us: no local receivers
            self._await_self = None
            own.resolve(0)

    def _on_reply(self, frame: Any, g_channel: Optional[bytes], g_data: Optional[bytes], g_count: int) -> None:
        """A reply; g_* describe the message delivered just before it, if any."""
        self._settle_self()
        if not self._pending:
            raise ConnectionError(f"out of step with Redis: unexpected reply {frame!r}")
        entry = self._pending.popleft()
        if isinstance(frame, Exception):
            self._errors += 1
            if entry.kind == _PUB:
                entry.fail(RuntimeError(f"Redis refused PUBLISH to {entry.channel.decode(errors='replace')!r}: {frame}"))
            else:
                log.error("Redis refused a command of the bridge: %s", frame)
                entry.fail(RuntimeError(f"Redis refused the command: {frame}"))
        elif entry.kind == _PUB:
            self._redis_published += 1
            order = self._self_order
            if order == _SELF_AFTER:
                if entry.fut is not None:
                    self._await_self = entry
            elif order == _SELF_BEFORE and g_channel == entry.channel and g_data == entry.data:
                entry.resolve(g_count)
            else:
                entry.resolve(0)
        elif entry.kind == _PING:
            entry.resolve(None)
        else:
            raise ConnectionError(f"out of step with Redis: reply {frame!r} to a subscribe")
