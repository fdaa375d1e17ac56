"""CPython's network test.test_asyncio modules (streams, server, sendfile, ssl, sslproto,
buffered_proto, subprocess, unix_events, and test_events' UDP/pipe/subprocess tests) pass on uvcore.Loop, except for the entries of net_expected_failures.py.

The modules run in child processes (netconf.py) so a crash or hang costs one test; the
counts of each module are printed. An expected failure that passes fails this test too,
so the table only ever lists what is still broken.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netconf  # noqa: E402
from net_expected_failures import EXPECTED_FAILURES, FLAKY  # noqa: E402

import asyncio  # noqa: E402

import uvcore  # noqa: E402

# Until the stream transports are on main there is nothing to check.
needs_transports = pytest.mark.skipif(
    uvcore.Loop.create_server is asyncio.AbstractEventLoop.create_server,
    reason="uvcore.Loop has no stream transports yet (issue 3)",
)


@needs_transports
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("module", netconf.MODULES)
def test_cpython_net_module_conforms(module, capsys):
    results = netconf.run_module(module, "uvcore")
    counts = netconf.classify(results, EXPECTED_FAILURES, FLAKY)
    with capsys.disabled():
        print("\n" + netconf.format_counts(module, counts), flush=True)
    problems = [
        f"{status.upper()}: {tid}\n{detail}" for tid, status, detail in counts["unexpected_failures"]
    ] + [f"XPASS (remove it from net_expected_failures.py): {tid}" for tid in counts["unexpected_passes"]]
    assert not problems, "\n\n".join(problems)
    assert counts["passed"] > 0


def test_expected_failures_have_reasons():
    for table in (EXPECTED_FAILURES, FLAKY):
        for tid, reason in table.items():
            assert tid.split(".", 1)[0] in netconf.MODULES, tid
            assert isinstance(reason, str) and len(reason) > 10 and "\n" not in reason, tid
