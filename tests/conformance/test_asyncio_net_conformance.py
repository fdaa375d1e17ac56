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


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("module", netconf.SUITES["net"])
def test_cpython_net_module_conforms(module, capsys):
    with capsys.disabled():
        problems = netconf.run_and_report(module, "net")
    assert not problems, "\n\n".join(problems)


def test_expected_failures_have_reasons():
    assert netconf.table_problems("net") == []
