"""CPython's core test.test_asyncio modules (tasks, futures, locks, the loop-generic event
loop tests, sock_lowlevel, timeouts, taskgroups, wait_for, runners, context, pep492) pass
on uvcore.Loop, except for the entries of core_expected_failures.py.

Each module runs in child processes with uvcore's policy installed (netconf.py); the
counts are printed per module: passed, skipped by CPython itself, expected failures
(xfail), and n/a (tests of asyncio's own test doubles or private internals). An entry of
the tables that passes fails this test too, so they only ever list what still fails.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netconf  # noqa: E402


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("module", netconf.SUITES["core"])
def test_cpython_core_module_conforms(module, capsys):
    if not netconf.module_available(module):
        pytest.skip(f"this Python's test suite has no test.test_asyncio.{module}")
    with capsys.disabled():
        problems = netconf.run_and_report(module, "core")
    assert not problems, "\n\n".join(problems)


def test_core_tables_have_reasons():
    assert netconf.table_problems("core") == []
