"""Expected failures of CPython's network test.test_asyncio modules on uvcore.

Each entry: test id (module.Class.test, fnmatch patterns allowed) -> one-line reason.
A uvcore bug is listed only until it is fixed, with a reference to its NET_FINDINGS entry;
an entry that starts passing fails the conformance test so the list stays honest.
"""

EXPECTED_FAILURES: dict = {
    # Not part of issue 3: pipes arrive with issue 8 (then this XPASSes: remove it).
    "test_streams.StreamTests.test_read_all_from_pipe_reader":
        "needs loop.connect_read_pipe (pipes: issue 8)",
}

# Tests whose outcome depends on timing on a loaded 2-core machine or on the tests run
# before them: either outcome is accepted (and not counted as passed).
FLAKY: dict = {
    "test_streams.StreamTests.test_unclosed_resource_warnings":
        "3.13: sees a 2nd ResourceWarning from the pipe the failing pipe test left (issue 8)",
}
