"""Expected failures of CPython's core test.test_asyncio modules on uvcore.

Each entry: test id (module.Class.test, fnmatch patterns allowed) -> one-line reason.
EXPECTED_FAILURES lists what uvcore does not do yet, each with why;
NOT_APPLICABLE lists tests of asyncio's own implementation (private attributes and
methods of BaseEventLoop, mocks of asyncio's modules) that cannot pass on another loop and
say nothing about it. A listed test that passes fails the conformance test, so the tables
only ever list what still fails. (Tests on test_utils.TestLoop's virtual time are n/a
without a listing: the runner reports them itself.)
"""

_ALL_TASK_CLASSES = "test_tasks.*"  # the C/Py Task x Future variants (only they have these tests)

EXPECTED_FAILURES: dict = {
    "test_events.LoopEventTests.test_unclosed_pipe_transport":
        "loop.close() closes open pipe transports (libuv handles die with the loop): repr says closed",
}

NOT_APPLICABLE: dict = {
    # asyncio.base_events.logger is patched: uvcore logs the same text to the same "asyncio"
    # logger, but through its own module's reference to it.
    "test_futures.*.test_future_exception_never_retrieved": "patches asyncio.base_events.logger",
    "test_futures.*.test_future_exception_never_retrieved_debug": "patches asyncio.base_events.logger",
    "test_futures.*.test_tb_logger_exception_unretrieved": "patches asyncio.base_events.logger",
    _ALL_TASK_CLASSES + ".test_error_in_call_soon": "patches asyncio.base_events.logger",
    # Private BaseEventLoop internals.
    _ALL_TASK_CLASSES + ".test_log_destroyed_pending_task": "steps the loop with BaseEventLoop._run_once",
    "test_tasks.*GatherTests.test_*": "drains BaseEventLoop._ready (the selector loop's ready deque)",
    "test_events.LoopEventTests.test_timeout_rounding": "counts calls of BaseEventLoop._run_once",
    "test_events.LoopEventTests.test_prompt_cancellation":
        "ends with BaseEventLoop._stop_serving (private); its cancellation checks pass before it",
    "test_events.LoopEventTests.test_create_server_multiple_hosts_ipv*":
        "mocks asyncio.base_events.socket and BaseEventLoop._start_serving",
    "test_runners.RunTests.test_asyncio_run_debug":
        "patches private asyncio.coroutines._is_debug_mode; uvcore reads the same settings itself",
}

# Either outcome accepted (not counted as passed).
FLAKY: dict = {}
