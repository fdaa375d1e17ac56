"""PubSub.from_url when things go wrong: Redis restarts under a subscription, unreachable
servers, bad URLs and options, credentials; and TLS (rediss://)."""
import asyncio
import logging
import shutil
import socket
import subprocess

import pytest

import uvcore
from redis_support import RedisServer, free_port, own_redis, redis_server, run, until  # noqa: F401

FAST_RETRY = dict(reconnect_delay=0.02, reconnect_max_delay=0.2)


def test_subscribers_keep_iterating_across_a_redis_restart(run, own_redis, caplog):
    async def main():
        import redis.asyncio as aioredis

        bus = uvcore.PubSub.from_url(own_redis.url, publish_timeout=0.3, **FAST_RETRY)
        sub = bus.subscribe("restart.x", maxsize=0)
        received = []
        got = {n: asyncio.Event() for n in (1, 2, 3)}

        async def consume():
            async for msg in sub:
                received.append(msg)
                got[len(received)].set()
                if len(received) == 3:
                    return

        consumer = asyncio.ensure_future(consume())
        assert await bus.publish("restart.x", "before") == 1
        await asyncio.wait_for(got[1].wait(), 5)

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, own_redis.stop)
        await until(lambda: not bus.stats()["connected"])
        with pytest.raises(ConnectionError, match="not connected to Redis"):
            bus.publish_nowait("restart.x", "lost")
        with pytest.raises(ConnectionError, match="not connected to Redis"):
            await bus.publish("restart.x", "lost")  # waits publish_timeout for a connection
        late = bus.subscribe("restart.late")  # subscribed while Redis is away

        await loop.run_in_executor(None, own_redis.start)
        await until(lambda: bus.stats()["connected"])
        await bus.sync()
        assert own_redis.numsub("restart.x") == 1 and own_redis.numsub("restart.late") == 1
        assert bus.stats()["reconnects"] == 1

        client = aioredis.Redis.from_url(own_redis.url)
        try:
            assert await client.publish("restart.x", '"from another client"') == 1
        finally:
            await client.aclose()
        await asyncio.wait_for(got[2].wait(), 5)
        assert await bus.publish("restart.x", "after") == 1
        await asyncio.wait_for(consumer, 5)
        assert received == ["before", "from another client", "after"]
        assert await bus.publish("restart.late", 1) == 1 and await late.__anext__() == 1
        await bus.aclose()

    with caplog.at_level(logging.WARNING, logger="uvcore.redis"):
        run(main, timeout=40)
    assert "lost the connection to Redis" in caplog.text and "reconnected to Redis" in caplog.text


def test_publishes_in_flight_when_redis_dies_fail_clearly(run, own_redis):
    async def main():
        bus = uvcore.PubSub.from_url(own_redis.url, **FAST_RETRY)
        await bus.connect()
        sub = bus.subscribe("inflight.x")  # noqa: F841
        own_redis.command("CLIENT", "PAUSE", "5000", "ALL")  # Redis stops answering
        pubs = [asyncio.ensure_future(bus.publish("inflight.x", i)) for i in range(3)]
        await asyncio.sleep(0.05)
        assert not any(p.done() for p in pubs)
        own_redis.proc.kill()  # and dies without answering
        results = await asyncio.gather(*pubs, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert "may or may not have been published" in str(results[0])
        await bus.aclose()

    run(main, timeout=30)


def test_unreachable_server_gives_a_clear_error(run):
    async def main():
        port = free_port()
        bus = uvcore.PubSub.from_url(f"redis://127.0.0.1:{port}/0", **FAST_RETRY)
        with pytest.raises(ConnectionError, match=rf"cannot connect to Redis at redis://127.0.0.1:{port}/0: .*"):
            await bus.connect()
        with pytest.raises(ConnectionError, match="cannot connect to Redis"):
            await bus.publish("x", 1)
        with pytest.raises(ConnectionError, match="cannot connect to Redis"):
            async with uvcore.PubSub.from_url(f"redis://127.0.0.1:{port}/0"):
                pass
        # subscribing does not raise: the bridge keeps trying in the background
        sub = bus.subscribe("x")
        assert not bus.stats()["connected"]
        await sub.aclose()
        await bus.aclose()

        bus = uvcore.PubSub.from_url("redis://no-such-host.invalid:6379/0")
        with pytest.raises(ConnectionError, match="cannot connect to Redis at redis://no-such-host.invalid"):
            await bus.connect()
        await bus.aclose()

    run(main)


def test_a_server_that_never_answers_times_out(run):
    async def main():
        with socket.socket() as silent:  # accepts connections (backlog) and says nothing
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            bus = uvcore.PubSub.from_url(f"redis://127.0.0.1:{port}/0", connect_timeout=0.3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ConnectionError, match="cannot connect to Redis"):
                await bus.connect()
            assert loop.time() - started < 3
            await bus.aclose()

    run(main)


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://localhost:6379/0", r"scheme must be redis://, rediss:// \(TLS\) or unix://, not http://"),
        ("localhost:6379", "scheme must be"),
        ("redis://", "no host"),
        ("redis://localhost:99999/0", "port must be a number in 1-65535"),
        ("redis://localhost:port/0", "port must be a number in 1-65535"),
        ("redis://localhost:6379/zero", "database must be a number"),
        ("unix://", "needs a socket path"),
        ("redis://localhost:6379/0?no_such_option=1", "bad Redis URL or option"),
    ],
)
def test_bad_urls_are_rejected_at_once(url, message):
    with pytest.raises(ValueError, match=message):
        uvcore.PubSub.from_url(url)


def test_bad_arguments():
    with pytest.raises(TypeError, match="url must be a str"):
        uvcore.PubSub.from_url(b"redis://localhost")
    with pytest.raises(ValueError, match="unknown codec 'yaml'"):
        uvcore.PubSub.from_url("redis://localhost", codec="yaml")
    with pytest.raises(TypeError, match="codec must be"):
        uvcore.PubSub.from_url("redis://localhost", codec=(len,))
    with pytest.raises(ValueError, match="connect_timeout must be a number > 0"):
        uvcore.PubSub.from_url("redis://localhost", connect_timeout=0)
    with pytest.raises(ValueError, match="publish_timeout must be a number >= 0 or None"):
        uvcore.PubSub.from_url("redis://localhost", publish_timeout=-1)
    with pytest.raises(ValueError, match="overflow must be"):
        uvcore.PubSub.from_url("redis://localhost", overflow="sometimes")
    bus = uvcore.PubSub.from_url("redis://:secret@localhost/0")
    with pytest.raises(TypeError, match="channel must be a str"):
        bus.publish_nowait(1, "x")
    with pytest.raises(ValueError, match="must not be empty"):
        bus.publish_nowait("", "x")
    with pytest.raises(ConnectionError, match=r"redis://:\*\*\*@localhost/0"):  # no loop yet, no password shown
        asyncio.run(_publish_nowait(bus))


async def _publish_nowait(bus):
    bus.publish_nowait("x", 1)


def test_passwords_and_acl_users(run):
    server = RedisServer(password="s3cret").start()
    try:
        server.command("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "&*", "+@all")
        good = [server.url, f"redis://alice:alicepw@127.0.0.1:{server.port}/0"]
        bad = [f"redis://:wrong@127.0.0.1:{server.port}/0", f"redis://alice:nope@127.0.0.1:{server.port}/0"]

        async def main():
            for url in good:
                async with uvcore.PubSub.from_url(url) as bus:
                    sub = bus.subscribe("acl.x")
                    assert await bus.publish("acl.x", url) == 1 and await sub.__anext__() == url
            for url in bad:
                bus = uvcore.PubSub.from_url(url)
                with pytest.raises(ConnectionError, match="refused the credentials") as info:
                    await bus.connect()
                assert "wrong" not in str(info.value) and "nope" not in str(info.value)
                await bus.aclose()
            bus = uvcore.PubSub.from_url(f"redis://127.0.0.1:{server.port}/0")  # no password
            with pytest.raises(ConnectionError, match=f"127.0.0.1:{server.port}"):
                await bus.connect()
            await bus.aclose()

        run(main)
    finally:
        server.close()


def test_acl_refusing_a_channel_is_counted_not_fatal(run):
    server = RedisServer(password="pw").start()
    try:
        server.command("ACL", "SETUSER", "bob", "on", ">bobpw", "resetchannels", "&allowed.*", "+@all")

        async def main():
            async with uvcore.PubSub.from_url(f"redis://bob:bobpw@127.0.0.1:{server.port}/0") as bus:
                denied = bus.subscribe("secret.x")
                ok = bus.subscribe("allowed.x")
                with pytest.raises(RuntimeError, match="Redis refused PUBLISH"):
                    await bus.publish("secret.x", 1)
                assert await bus.publish("allowed.x", 2) == 1 and await ok.__anext__() == 2
                assert bus.stats()["errors"] == 2 and denied.pending == 0

        run(main)
    finally:
        server.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_rediss_tls(run, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    port = free_port()
    server = RedisServer(port=free_port(), extra_args=[
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]).start()
    try:
        async def main():
            url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
            async with uvcore.PubSub.from_url(url) as bus:
                sub = bus.subscribe("tls.*")
                assert await bus.publish("tls.x", {"secure": True}) == 1
                assert await sub.__anext__() == {"secure": True}
            bus = uvcore.PubSub.from_url(f"rediss://127.0.0.1:{port}/0")  # not trusting the cert
            with pytest.raises(ConnectionError, match="cannot connect to Redis at rediss://"):
                await bus.connect()
            await bus.aclose()

        run(main)
    finally:
        server.close()
