"""Expected failures of CPython's network test.test_asyncio modules on uvcore.

Each entry: test id (module.Class.test, fnmatch patterns allowed) -> one-line reason.
A uvcore bug is listed only until it is fixed, with a reference to its NET_FINDINGS entry;
an entry that starts passing fails the conformance test so the list stays honest.
"""

EXPECTED_FAILURES: dict = {
    # pipes and subprocesses
    "test_subprocess.LoopSubprocessTests.test_popen_error":
        "mocks subprocess.Popen, which uvcore does not use (children start with uv_spawn)",
    "test_subprocess.LoopSubprocessTests.test_popen_error_with_stdin_pipe":
        "mocks subprocess.Popen, which uvcore does not use (children start with uv_spawn)",
}

# Tests whose outcome depends on timing on a loaded 2-core machine or on the tests run
# before them: either outcome is accepted (and not counted as passed).
FLAKY: dict = {
}
