"""The lab server's command line: loop choice (uvcore by default), front ends, the page,
shutdown. --redis is tested against a real redis-server in test_redis_lab.py."""
from __future__ import annotations

import os
import re
import signal
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_lab_support import lab_server  # noqa: E402

from examples.lab.server import parse_args  # noqa: E402


def test_defaults_are_localhost_8000_uvcore_fastapi_in_memory():
    args = parse_args([])
    assert (args.host, args.port, args.loop, args.server, args.redis) == ("127.0.0.1", 8000, "uvcore", "fastapi", None)


def test_bad_port_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        parse_args(["--port", "70000"])


@pytest.mark.parametrize("server", ["fastapi", "aiohttp"])
def test_default_loop_is_uvcore(server):
    with lab_server(server=server) as lab:
        stats = lab.stats()
    assert stats["server"] == server
    assert stats["loop"] == "uvcore._loop.Loop"


@pytest.mark.parametrize("loop, expected", [("asyncio", "asyncio."), ("uvloop", "uvloop.")])
def test_explicit_loops_serve(loop, expected):
    with lab_server(server="aiohttp", loop=loop) as lab:
        assert lab.stats()["loop"].startswith(expected)


def test_page_at_root_is_self_contained():
    with lab_server() as lab:
        with urllib.request.urlopen(lab.url + "/", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/html")
            page = response.read().decode()
    assert "graphql-transport-ws" in page and "connection_init" in page
    # No CDN, no external resource of any kind.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "https://" not in page and "http://" not in page


@pytest.mark.parametrize("server", ["fastapi", "aiohttp"])
def test_sigterm_stops_the_server(server):
    lab = lab_server(server=server).start()
    try:
        code = lab.stop(timeout=15)
    finally:
        lab.__exit__(None, None, None)
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM)
