"""tests/compat/run.py's own rules (the upstream suites themselves run in `make compat`):
the expected-failure file's format, and strictness both ways."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "compat"))
import run as compat  # noqa: E402


def test_every_entry_has_a_suite_and_a_reason(tmp_path, monkeypatch):
    listed = compat.expected_failures()
    assert set(listed) == set(compat.SUITES)
    assert all(reason for entries in listed.values() for reason in entries.values())
    bad = tmp_path / "x.txt"
    bad.write_text("anyio tests.test_x::test_y\n")
    monkeypatch.setattr(compat, "EXPECTED", bad)
    with pytest.raises(SystemExit, match="reason"):
        compat.expected_failures()
    bad.write_text("nosuch tests.test_x::test_y  # why\n")
    with pytest.raises(SystemExit, match="suite"):
        compat.expected_failures()


def test_compare_is_strict_both_ways():
    results = {"a": "passed", "b": "failed", "c": "failed", "d": "passed", "f": "passed"}
    listed = {"b": "known", "d": "fixed since", "e": "gone", "f": "flaky: timing"}
    problems = compat.compare("s", results, listed)
    assert any("c failed on uvcore and is not in" in p for p in problems)
    assert any("d passes now" in p for p in problems)
    assert any("e is listed" in p and "did not run" in p for p in problems)
    assert not any(p.startswith("s: b ") or p.startswith("s: f ") for p in problems)
    assert len(problems) == 3


def test_outcomes_from_junit(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_a.T" name="test_ok[asyncio]"/>'
        '<testcase classname="tests.test_a.T" name="test_bad[asyncio]"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped message="s"/></testcase>'
        '<testcase classname="tests.test_a" name="test_teardown"/>'
        '<testcase classname="tests.test_a" name="test_teardown"><error message="t"/></testcase>'
        '</testsuite></testsuites>')
    assert compat.outcomes(report) == {
        "tests.test_a.T::test_ok[asyncio]": "passed", "tests.test_a.T::test_bad[asyncio]": "failed",
        "tests.test_a::test_skip": "skipped", "tests.test_a::test_teardown": "failed"}
