"""Every lecture script in examples/lecture/ runs to completion, as a child process:
once as written (uvcore.run on uvcore's loop) and once with uvcore.run swapped for
asyncio.run, which shows the scripts are plain asyncio code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LECTURE = REPO / "examples" / "lecture"

# script -> lines its output must contain
SCRIPTS = {
    "01_gather_vs_sequential.py": ["sequential:", "gather:", "faster"],
    "02_async_sleep_vs_time_sleep.py": ["time.sleep froze the loop"],
    "03_async_iterator.py": ["class: 3", "generator: 1", "async comprehension: [16, 4]"],
    "04_aiohttp_client_server.py": ["GET /:", "['ada', 'grace', 'linus']", "GET /users/99: 404"],
    "05_aiohttp_websocket.py": ["client got: echo: HELLO", "server closed the socket"],
    "06_pubsub_manager.py": ["PubSubManager: published 'one' to 2", "uvcore.PubSub: published"],
    "07_queue_producer_consumer.py": ["20 jobs done"],
    "08_error_handling.py": ["gather raised: api-2", "2 ok, 1 failed", "timed out"],
    "09_websocket_pubsub_push.py": ["alice received", "bob received", "no subscribers"],
}


def test_every_lecture_script_is_tested():
    assert sorted(p.name for p in LECTURE.glob("*.py")) == sorted(SCRIPTS)


def command(script: Path, loop: str):
    if loop == "uvcore":
        return [sys.executable, str(script)]
    # The same script on asyncio's own loop: uvcore.run becomes asyncio.run.
    boot = "import asyncio, runpy, sys, uvcore\nuvcore.run = asyncio.run\n"
    boot += f"sys.argv = [{str(script)!r}]\nrunpy.run_path({str(script)!r}, run_name='__main__')\n"
    return [sys.executable, "-c", boot]


@pytest.mark.parametrize("loop", ["uvcore", "asyncio"])
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_lecture_script_runs(name, loop):
    expected = SCRIPTS[name]
    result = subprocess.run(command(LECTURE / name, loop), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{name} failed on {loop}:\n{result.stdout}\n{result.stderr}"
    for line in expected:
        assert line in result.stdout, f"{line!r} not in the output of {name}:\n{result.stdout}"
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr, result.stderr
