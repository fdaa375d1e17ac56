"""Shared by the reliability suite: a tally of the faults injected and bad inputs fed, printed
at the end of the run, so a reader sees how much was exercised."""
from __future__ import annotations

import collections

import pytest

TALLY: "collections.Counter[str]" = collections.Counter()


@pytest.fixture
def tally():
    """tally["faults"] += n for each fault injected, tally["bad_inputs"] += n for each bad input."""
    return TALLY


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        terminalreporter.write_sep("-", "uvcore reliability counts")
        for key in sorted(TALLY):
            terminalreporter.write_line(f"{key}: {TALLY[key]}")
