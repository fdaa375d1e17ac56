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
