"""The Redis bridge reads three private attributes of a connected redis-py asyncio
Connection (``_reader``, ``_writer``, ``_parser``) so that hiredis parses batches off the
stream and commands are written without a coroutine each. redis-py offers no public way to
do that, so the range of redis-py the bridge was tested with is pinned in pyproject.toml.
These tests fail loudly, with what changed and what to do, when an installed redis-py does
not have what the bridge reads."""
import asyncio
import re
from pathlib import Path

import pytest

import uvcore
from redis_support import redis_server  # noqa: F401

redis = pytest.importorskip("redis")

REPO = Path(__file__).resolve().parents[1]
WHAT_TO_DO = ("uvcore's Redis bridge (python/uvcore/_redis.py, _FrameReader) reads it: adapt the "
              "bridge to this redis-py, run tests/test_redis_*.py, then widen the redis-py range "
              "pinned in pyproject.toml")


def _pinned_specs():
    """Every redis requirement in pyproject.toml (the redis, test and bench extras)."""
    text = (REPO / "pyproject.toml").read_text()
    return re.findall(r'"redis\[hiredis\]([^"]*)"', text)


def test_every_extra_pins_the_same_bounded_range():
    specs = _pinned_specs()
    assert len(specs) >= 3, specs
    assert len(set(specs)) == 1, f"the redis extras disagree on the redis-py range: {specs}"
    assert "<" in specs[0], f"redis-py must have an upper bound (the bridge uses private attributes): {specs[0]}"


def test_installed_redis_py_is_in_the_pinned_range():
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_pinned_specs()[0])
    assert redis.__version__ in spec, (
        f"redis-py {redis.__version__} is outside the tested range {spec}; {WHAT_TO_DO}")


def test_connected_connection_has_what_the_bridge_reads(redis_server):  # noqa: F811
    from redis.asyncio.connection import ConnectionPool

    from uvcore._redis import _FrameReader

    async def main():
        pool = ConnectionPool.from_url(redis_server.url, protocol=3)
        conn = pool.make_connection()
        await conn.connect()
        try:
            reader = getattr(conn, "_reader", None)
            writer = getattr(conn, "_writer", None)
            parser = getattr(conn, "_parser", None)
            assert isinstance(reader, asyncio.StreamReader), (
                f"redis-py {redis.__version__}: Connection._reader is {reader!r}, not an "
                f"asyncio.StreamReader; {WHAT_TO_DO}")
            assert isinstance(writer, asyncio.StreamWriter), (
                f"redis-py {redis.__version__}: Connection._writer is {writer!r}, not an "
                f"asyncio.StreamWriter; {WHAT_TO_DO}")
            assert callable(getattr(parser, "set_pubsub_push_handler", None)), (
                f"redis-py {redis.__version__}: Connection._parser ({type(parser).__name__}) has no "
                f"set_pubsub_push_handler(); {WHAT_TO_DO}")
            # And the bridge, on this connection, takes its fast path and reads a real reply.
            frames = _FrameReader(conn)
            assert frames.fast, f"hiredis fast path not taken with redis-py {redis.__version__}; {WHAT_TO_DO}"
            frames.write([b"*1\r\n$4\r\nPING\r\n"])
            assert await asyncio.wait_for(frames.read(), 5) == [b"PONG"]
        finally:
            await conn.disconnect()
            await pool.disconnect()

    uvcore.run(asyncio.wait_for(main(), 20))


def test_slow_path_parser_hook_reads_a_push(redis_server):  # noqa: F811
    """Without hiredis the bridge hands redis-py's parser a push handler: a published
    message must come back through it as a push frame."""
    from redis.asyncio.connection import ConnectionPool

    from uvcore._redis import _FrameReader, _Push, _pack

    async def main():
        pool = ConnectionPool.from_url(redis_server.url, protocol=3)
        conn = pool.make_connection()
        await conn.connect()
        try:
            frames = _FrameReader(conn, fast=False)
            assert not frames.fast
            frames.write([_pack(b"SUBSCRIBE", b"uvcore-private-api"), _pack(b"PUBLISH", b"uvcore-private-api", b"x")])
            seen = []
            while not any(isinstance(f, _Push) and f and f[0] == b"message" for f in seen):
                seen.extend(await asyncio.wait_for(frames.read(), 5))
            assert [b"message", b"uvcore-private-api", b"x"] in seen
        finally:
            await conn.disconnect()
            await pool.disconnect()

    uvcore.run(asyncio.wait_for(main(), 20))
