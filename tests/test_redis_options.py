"""PubSub.from_url options: a unix:// URL connects to a redis-server listening on a Unix
socket, and duration options must be finite, positive numbers (inf, NaN, negative values and
bools are refused at once, naming the option)."""
import math
import os

import pytest

import uvcore
from redis_support import RedisServer, run  # noqa: F401


@pytest.fixture
def unix_redis():
    server = RedisServer()
    path = os.path.join(server.dir, "redis.sock")
    server.extra_args += ["--unixsocket", path, "--unixsocketperm", "700"]
    server.start()
    yield server, path
    server.close()


@pytest.mark.parametrize("query", ["", "?db=0"])
def test_a_unix_socket_url_connects_and_delivers(run, unix_redis, query):
    server, path = unix_redis

    async def main():
        async with uvcore.PubSub.from_url(f"unix://{path}{query}") as bus:
            sub = bus.subscribe("unix.x")
            assert await bus.publish("unix.x", {"over": "unix"}) == 1
            assert await sub.__anext__() == {"over": "unix"}
            await bus.sync()
            return bus.stats()

    stats = run(main)
    assert stats["connected"] and stats["received"] == 1


def test_a_unix_socket_url_reaches_the_socket_not_tcp(run, unix_redis):
    server, path = unix_redis

    async def main():
        bus = uvcore.PubSub.from_url(f"unix://{path}")
        try:
            await bus.connect()
            name = bus._conn.client_name
            return [line for line in server.command("CLIENT", "LIST").splitlines() if f"name={name}" in line]
        finally:
            await bus.aclose()

    (line,) = run(main)
    assert f"addr={path}:0" in line, line


def test_an_unreachable_unix_socket_is_a_connection_error(run, tmp_path):
    async def main():
        bus = uvcore.PubSub.from_url(f"unix://{tmp_path}/nobody.sock", connect_timeout=1)
        try:
            with pytest.raises(ConnectionError, match="cannot connect to Redis at unix://"):
                await bus.connect()
        finally:
            await bus.aclose()

    run(main)


DURATIONS = ["connect_timeout", "reconnect_delay", "reconnect_max_delay", "health_check_interval"]


@pytest.mark.parametrize("option", DURATIONS + ["publish_timeout"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1, -0.5, True, "1", 10**400],
                         ids=["inf", "-inf", "nan", "-1", "-0.5", "True", "str", "10**400"])
def test_non_finite_negative_or_non_numeric_durations_are_refused(option, value):
    with pytest.raises(ValueError, match=rf"{option} must be a number .*finite, in seconds.*not"):
        uvcore.PubSub.from_url("redis://localhost", **{option: value})


@pytest.mark.parametrize("option", DURATIONS)
def test_zero_is_refused_where_a_delay_must_be_positive(option):
    with pytest.raises(ValueError, match=rf"{option} must be a number > 0"):
        uvcore.PubSub.from_url("redis://localhost", **{option: 0})


def test_finite_durations_are_accepted():
    bus = uvcore.PubSub.from_url("redis://localhost", connect_timeout=0.5, publish_timeout=0,
                                 reconnect_delay=1, reconnect_max_delay=60.0, health_check_interval=3600)
    assert bus._reconnect_delay == 1.0 and bus._publish_timeout == 0.0


def test_the_reconnect_backoff_doubles_up_to_its_cap_and_survives_a_long_outage():
    bus = uvcore.PubSub.from_url("redis://localhost", reconnect_delay=0.1, reconnect_max_delay=2)
    for attempt, most in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (2000, 2.0), (10**6, 2.0)]:
        delay = bus._backoff(attempt)
        assert most / 2 <= delay <= most, (attempt, delay)
