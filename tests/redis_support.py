"""Helpers for the Redis backend tests: a real redis-server on a free port, and a runner
for each kind of event loop that can open TCP connections.

The server runs without persistence (--save '' --appendonly no) in a temporary directory and
is stopped after the test (or the session). Readiness is a PING that answers, polled.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

import pytest

import uvcore

REDIS_SERVER = shutil.which("redis-server")
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp_command(port: int, *args: str, timeout: float = 2.0, tls: bool = False) -> Any:
    """Run one command with redis-py's sync client (a separate connection)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


class RedisServer:
    """A redis-server child process. start()/stop()/restart() keep the same port."""

    def __init__(self, *, port: Optional[int] = None, extra_args: Sequence[str] = (), password: str = "") -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (make deps installs the Debian package)")
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="uvcore-redis-")
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def args(self) -> List[str]:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def log(self) -> str:
        try:
            return Path(self.dir, "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.01)  # readiness polling interval, not a synchronisation
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: str) -> Any:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None,
                             socket_timeout=5, decode_responses=True)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def numsub(self, channel: str) -> int:
        return int(self.command("PUBSUB", "NUMSUB", channel)[1])

    def numpat(self) -> int:
        return int(self.command("PUBSUB", "NUMPAT"))

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the session (tests use their own channel names)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def own_redis():
    """A redis-server of the test's own, for tests that stop or restart it."""
    server = RedisServer().start()
    yield server
    server.close()


# ------------------------------------------------------------------------- loops


async def _tcp_probe() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    server.close()


def _uvcore_tcp_missing() -> Optional[str]:
    if not hasattr(uvcore, "new_event_loop"):
        return "uvcore.new_event_loop does not exist yet"
    loop = uvcore.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(_tcp_probe(), 5))
    except Exception as exc:  # noqa: BLE001 - anything means "no TCP yet"
        return f"uvcore's loop cannot open TCP connections yet ({type(exc).__name__}: {exc})"
    finally:
        loop.close()
    return None


def _factories():
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop,
            "uvcore": getattr(uvcore, "new_event_loop", None)}


LOOPS = _factories()
_UVCORE_MISSING: List[Optional[str]] = []


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """run(async_fn, timeout=20): run async_fn() on a fresh loop of one kind (redis-py needs
    TCP, so the uvcore variant is skipped until uvcore's loop has its transports)."""
    if request.param == "uvcore":
        if not _UVCORE_MISSING:
            _UVCORE_MISSING.append(_uvcore_tcp_missing())
        if _UVCORE_MISSING[0] is not None:
            pytest.skip(_UVCORE_MISSING[0])
    factory = LOOPS[request.param]

    def runner(async_fn, timeout=20.0):
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(async_fn(), timeout))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    return runner


async def until(predicate, timeout: float = 10.0, step: float = 0.005) -> None:
    """Wait for predicate() to become true (short loop sleeps: the condition depends on
    another process or on Redis, so there is no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), str(REPO), env.get("PYTHONPATH")]))
    return env


async def spawn_python(code: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=child_env(), cwd=str(REPO))
