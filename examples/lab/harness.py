"""Start and stop a lab server in a child process, for the tests and the benchmark.

The child is `python -m examples.lab.server` on a free port; readiness is a TCP connect that
succeeds (polled), never a fixed sleep. Its output goes to a file that errors quote.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class LabServer:
    """A lab server process. Use as a context manager; `stop()` is idempotent."""

    def __init__(
        self,
        *,
        server: str = "fastapi",
        loop: Optional[str] = None,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        extra_args: Sequence[str] = (),
        python_args: Sequence[str] = ("-m", "examples.lab.server"),
        start_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.args: List[str] = [sys.executable, *python_args, "--host", host, "--port", str(self.port)]
        self.args += ["--server", server, "--log-level", "warning"]
        if loop:
            self.args += ["--loop", loop]
        self.args += list(extra_args)
        self.start_timeout = start_timeout
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self._log = tempfile.NamedTemporaryFile(prefix="lab-server-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/graphql"

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> "LabServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while not port_accepts(self.host, self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"lab server exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"lab server did not listen within {self.start_timeout}s:\n{self.output()}")
            time.sleep(0.02)  # polling interval of the readiness check, not a synchronisation
        return self

    def stats(self) -> Dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as response:
            stats: Dict[str, Any] = json.loads(response.read())
            return stats

    def subscribers(self) -> int:
        """Live GraphQL subscriptions: broker subscribers, where subscribers of one room
        share one (see common.server_stats)."""
        return int(self.stats()["subscriptions"])

    def wait_for_subscribers(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the server has exactly `count` live subscriptions (polled through /stats)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.subscribers()
            if seen == count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"server has {seen} live subscriptions, expected {count}")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def __enter__(self) -> "LabServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)
