"""Helpers shared by the lab tests (tests/test_lab_*.py), and a check of the helpers."""
from __future__ import annotations

from examples.lab.harness import LabServer, free_port, port_accepts


def lab_server(**kwargs) -> LabServer:
    """A lab server (`python -m examples.lab.server`) on a free port; a context manager."""
    return LabServer(**kwargs)


def test_free_port_is_free_and_server_readiness_is_polled():
    port = free_port()
    assert not port_accepts("127.0.0.1", port)
    with lab_server() as server:
        assert port_accepts("127.0.0.1", server.port)
        assert server.subscribers() == 0
    assert server.proc is not None and server.proc.poll() is not None
