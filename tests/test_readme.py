"""The README's Quick start runs as written: each of its Python snippets is extracted and
run in a fresh interpreter (so uvcore.install() cannot leak into other tests), and what it
prints shows that the code ran on a uvcore loop."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    """The text of the README's `## title` section, up to the next `## ` heading."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def python_snippets(title: str) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```", section(title), re.S | re.M)


QUICK_START = python_snippets("Quick start")


def snippet_with(text: str) -> str:
    """The one Quick start snippet containing `text`."""
    found = [code for code in QUICK_START if text in code]
    assert len(found) == 1, f"{len(found)} Quick start snippets contain {text!r}"
    return found[0]


def run_snippet(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"snippet failed:\n{code}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("index", range(len(QUICK_START)))
def test_every_quick_start_snippet_runs(index):
    code = QUICK_START[index]
    if "asyncio.Runner" in code and sys.version_info < (3, 11):
        pytest.skip("asyncio.Runner is new in Python 3.11")
    run_snippet(code)


def test_quick_start_shows_run_runner_install_queue_and_pubsub():
    assert len(QUICK_START) >= 4
    for text in ("uvcore.run(main())", "asyncio.Runner(loop_factory=uvcore.new_event_loop)", "uvcore.install()",
                 "uvcore.Queue(", "uvcore.PubSub()"):
        assert any(text in code for code in QUICK_START), text


def test_quick_start_run_gathers_on_a_uvcore_loop():
    out = run_snippet(snippet_with("asyncio.gather("))
    assert "<class 'uvcore._loop.Loop'>" in out
    assert "['a after 0.5s', 'b after 0.5s', 'c after 0.5s']" in out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in Python 3.11")
def test_quick_start_runner_uses_the_uvcore_loop_factory():
    out = run_snippet(snippet_with("asyncio.Runner(")).splitlines()
    assert out[0] == "Loop"
    assert out[1].startswith("<Loop running=False closed=False")


def test_quick_start_install_makes_asyncio_run_use_uvcore():
    out = run_snippet(snippet_with("uvcore.install()") + "\nassert type(loop).__module__ == 'uvcore._loop'\n")
    assert out.splitlines()[0] == "Loop"


def test_quick_start_queue_and_pubsub():
    out = run_snippet(snippet_with("uvcore.PubSub()"))
    assert out.splitlines() == [
        "{'job': 'a', 'result': 'A'}",
        "{'job': 'b', 'result': 'B'}",
        "{'job': 'c', 'result': 'C'}",
    ]


def test_shared_subscriptions_example_serves_tenants_apart():
    """The Shared GraphQL subscriptions example, run as written (on a free port): two
    subscribers of one tenant (both protocols) share one execution, a third tenant's
    subscriber never sees their prices."""
    import asyncio
    import json
    import socket
    import tempfile
    import time
    import urllib.request

    import websockets

    (code,) = python_snippets("Shared GraphQL subscriptions")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "port=8000" in code
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code.replace("port=8000", f"port={port}"))
    proc = subprocess.Popen([sys.executable, f.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.05)  # polling interval of the readiness check

        def set_price(tenant: str, cents: int) -> int:
            body = json.dumps({"query": 'mutation($t: String!, $c: Int!) { setPrice(tenant: $t, symbol: "UV", cents: $c) }',
                               "variables": {"t": tenant, "c": cents}}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(json.loads(response.read())["data"]["setPrice"])

        async def subscriber(tenant: str, protocol: str):
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[protocol])
            await ws.send(json.dumps({"type": "connection_init", "payload": {"tenant": tenant}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            start = "subscribe" if protocol == "graphql-transport-ws" else "start"
            await ws.send(json.dumps({"id": tenant + protocol, "type": start,
                                      "payload": {"query": "subscription { prices { symbol cents } }"}}))
            return ws

        async def scenario():
            acme = [await subscriber("acme", p) for p in ("graphql-transport-ws", "graphql-ws")]
            globex = await subscriber("globex", "graphql-transport-ws")
            # Each tenant's cohort holds one broker subscription: a publish reaches it once.
            deadline = time.monotonic() + 20
            while (await asyncio.to_thread(set_price, "acme", 0), await asyncio.to_thread(set_price, "globex", 0)) != (1, 1):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            for ws in acme + [globex]:  # drain the probes
                while json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"]["data"]["prices"]["cents"] != 0:
                    pass
            assert await asyncio.to_thread(set_price, "acme", 101) == 1
            assert await asyncio.to_thread(set_price, "globex", 202) == 1
            for ws in acme:
                got = json.loads(await asyncio.wait_for(ws.recv(), 10))
                while got["payload"]["data"]["prices"]["cents"] == 0:  # a later probe
                    got = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert got["payload"] == {"data": {"prices": {"symbol": "UV", "cents": 101}}}
            got = json.loads(await asyncio.wait_for(globex.recv(), 10))
            while got["payload"]["data"]["prices"]["cents"] == 0:
                got = json.loads(await asyncio.wait_for(globex.recv(), 10))
            assert got["payload"] == {"data": {"prices": {"symbol": "UV", "cents": 202}}}
            for ws in acme + [globex]:
                await ws.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        proc.terminate()
        proc.wait(15)
        Path(f.name).unlink()
