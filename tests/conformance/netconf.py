"""Runs the installed CPython's test.test_asyncio modules on a chosen event loop.

Two suites: "net" (transports, servers, TLS; test_asyncio_net_conformance.py with
net_expected_failures.py) and "core" (tasks, futures, locks, the loop-generic event loop
tests, ...; test_asyncio_core_conformance.py with core_expected_failures.py). Runnable
alone to compare loops:

    python tests/conformance/netconf.py --loop uvcore            # net suite; or asyncio, uvloop
    python tests/conformance/netconf.py --suite core --loop uvcore test_tasks -v

To add a module: put it in SUITES, and if its tests come as a mixin that the module only
instantiates on asyncio's own loops, add the mixin to GENERATED.

Tests that build their loop through test_utils.TestLoop with a time generator (virtual
time) or a mocked selector test asyncio's test doubles, not the loop: they are reported as
"n/a" (not applicable) and counted apart from passes and failures.

Each module runs in a child process that streams one JSON line per test event to a file,
so a crash or a hang (per-test faulthandler watchdog) costs one test, not the module: the
driver marks the test that was running and restarts the child past it.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
from typing import NamedTuple, Optional

SUITES = {
    "net": [
        "test_streams",
        "test_server",
        "test_sendfile",
        "test_ssl",
        "test_sslproto",
        "test_buffered_proto",
        # pipes and subprocesses (their test_events tests run in the core suite)
        "test_subprocess",
        "test_unix_events",
    ],
    "core": [
        "test_tasks",
        "test_futures",
        "test_futures2",
        "test_locks",
        "test_events",
        "test_sock_lowlevel",
        "test_timeouts",
        "test_taskgroups",
        "test_waitfor",
        "test_runners",
        "test_context",
        "test_pep492",
    ],
}
MODULES = SUITES["net"]

# Concrete classes of the CPython modules that pin asyncio's own loops; their mixins are
# re-instantiated below on the loop under test instead.
_PINNED_LOOP_WORDS = ("Selector", "Proactor", "Kqueue", "EPoll", "Poll", "Select", "Watcher")


class Generated(NamedTuple):
    """A test class made from a CPython mixin on the loop under test."""

    name: str  # of the generated class
    base: Optional[str]  # TestCase base, as a path in the module, or None for unittest's
    # the mixin's method that makes the loop; "setUp" for a mixin without a set-up of its
    # own: the generated class's setUp makes self.loop
    loop_method: str


# mixin name -> the class generated from it
GENERATED = {
    "BaseStartServer": Generated("LoopStartServerTests", None, "new_loop"),
    "BaseTestBufferedProtocol": Generated("LoopBufferedProtocolTests", None, "new_loop"),
    "BaseStartTLS": Generated("LoopStartTLSTests", None, "new_loop"),
    "SendfileTestsBase": Generated("LoopSendfileTests", "test_utils.TestCase", "create_event_loop"),
    "EventLoopTestsMixin": Generated("LoopEventTests", "test_utils.TestCase", "create_event_loop"),
    "SubprocessTestsMixin": Generated("LoopSubprocessEventTests", "test_utils.TestCase", "setUp"),
    "SubprocessMixin": Generated("LoopSubprocessTests", "test_utils.TestCase", "setUp"),
    "BaseSockTestsMixin": Generated("LoopSockTests", "test_utils.TestCase", "create_event_loop"),
}

PER_TEST_TIMEOUT = float(os.environ.get("NETCONF_TEST_TIMEOUT", "90"))
PASS_STATUSES = ("pass", "skip", "n/a")
NA_PREFIX = "n/a: "


# ---- loops -------------------------------------------------------------------------------


def make_policy(kind: str):
    import asyncio

    if kind == "asyncio":
        return asyncio.DefaultEventLoopPolicy()
    if kind == "uvloop":
        import uvloop

        return uvloop.EventLoopPolicy()
    if kind == "uvcore":
        import uvcore

        return uvcore.EventLoopPolicy()
    raise ValueError(f"unknown loop kind {kind!r}")


# ---- child: build and run one module's suite -----------------------------------------------


def build_suite(module_name: str, kind: str) -> unittest.TestSuite:
    import asyncio
    import importlib

    mod = importlib.import_module(f"test.test_asyncio.{module_name}")
    policy_factory = lambda: make_policy(kind)  # noqa: E731

    def loop_factory():
        return make_policy(kind).new_event_loop()

    _use_loop_in_fixtures(mod, loop_factory)
    classes = []
    for name, obj in list(vars(mod).items()):
        if not isinstance(obj, type) or obj.__module__ != mod.__name__:
            continue
        if name in GENERATED:
            spec = GENERATED[name]
            base = unittest.TestCase
            if spec.base is not None:
                base = mod
                for part in spec.base.split("."):
                    base = getattr(base, part)
            if spec.loop_method == "setUp":
                ns = {"setUp": _loop_setup(base, loop_factory)}
            else:
                ns = {spec.loop_method: lambda self: loop_factory()}
            ns.update(_loop_neutral_tests(mod, obj))
            cls = type(spec.name, (obj, base), ns)
            cls.__module__ = mod.__name__
            cls.__qualname__ = spec.name
            classes.append(cls)
        elif issubclass(obj, unittest.TestCase):
            if any(word in name for word in _PINNED_LOOP_WORDS):
                continue
            if issubclass(obj, unittest.IsolatedAsyncioTestCase) and hasattr(
                unittest.IsolatedAsyncioTestCase, "loop_factory"
            ):
                # 3.13+: say the loop explicitly rather than through the policy.
                obj = type(name, (obj,), {"loop_factory": staticmethod(loop_factory)})
                obj.__module__ = mod.__name__
                obj.__qualname__ = name
            classes.append(obj)

    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in classes:
        suite.addTests(loader.loadTestsFromTestCase(cls))
    # The modules reset the policy in tearDownModule; the result class re-installs ours
    # before every test, so order does not matter.
    suite._netconf_policy_factory = policy_factory
    asyncio.set_event_loop_policy(policy_factory())
    return suite


def _loop_setup(base, loop_factory):
    def setUp(self):
        base.setUp(self)
        self.loop = loop_factory()
        self.set_event_loop(self.loop)

    return setUp


class NotApplicable(unittest.SkipTest):
    """Raised instead of building an asyncio test double: the test cannot say anything
    about the loop under test. Reported with status "n/a"."""

    def __init__(self, why):
        super().__init__(NA_PREFIX + why)


def _use_loop_in_fixtures(mod, loop_factory):
    """Fixtures of the CPython suite that build a test double of a loop build the loop under
    test instead (only in this child process): test_utils.TestCase.new_test_loop() without
    a virtual-time generator, and the mocked BaseEventLoop of test_runners/test_pep492."""
    from test.test_asyncio import utils as test_utils

    name = mod.__name__.rsplit(".", 1)[-1]
    if name not in SUITES["core"]:
        return  # e.g. test_unix_events tests asyncio's own pipe transports on TestLoop

    def new_test_loop(self, gen=None):
        if gen is not None:
            raise NotApplicable("asserts virtual time of test_utils.TestLoop")
        loop = loop_factory()
        self.set_event_loop(loop)
        return loop

    test_utils.TestCase.new_test_loop = new_test_loop

    if name == "test_runners":
        # asyncio.run() must call the loop's shutdown_asyncgens; the tests check a flag.
        def new_loop(self):
            loop = loop_factory()
            loop.shutdown_ag_run = False
            shutdown_asyncgens = loop.shutdown_asyncgens

            async def flagged_shutdown_asyncgens():
                loop.shutdown_ag_run = True
                await shutdown_asyncgens()

            loop.shutdown_asyncgens = flagged_shutdown_asyncgens
            return loop

        mod.BaseTest.new_loop = new_loop
    elif name == "test_pep492":
        def setUp(self):
            test_utils.TestCase.setUp(self)
            self.loop = loop_factory()
            self.set_event_loop(self.loop)

        mod.BaseTest.setUp = setUp


def _loop_neutral_tests(mod, mixin) -> dict:
    """Tests CPython wrote on its selector-loop subclass of `mixin` that only use the
    public loop API (e.g. test_server's unix-server test): run them on the loop too."""
    found = {}
    for name, obj in vars(mod).items():
        if (isinstance(obj, type) and issubclass(obj, mixin) and obj is not mixin
                and "Select" in name and "Proactor" not in name):
            for attr, value in vars(obj).items():
                if attr.startswith("test_") and callable(value):
                    found.setdefault(attr, value)
    return found


def short_id(test) -> str:
    tid = test.id()
    return tid.replace("test.test_asyncio.", "")


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


class _StreamingResult(unittest.TestResult):
    """Writes start/end events as JSON lines and arms a watchdog around each test."""

    def __init__(self, out, policy_factory, verbose):
        super().__init__()
        self._out = out
        self._policy_factory = policy_factory
        self._verbose = verbose
        self._status = {}

    def _emit(self, **event):
        self._out.write(json.dumps(event) + "\n")
        self._out.flush()

    def startTest(self, test):
        import asyncio
        import faulthandler

        super().startTest(test)
        asyncio.set_event_loop_policy(self._policy_factory())
        self._status[short_id(test)] = ("pass", "")
        self._emit(event="start", id=short_id(test), t=time.monotonic())
        faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)

    def stopTest(self, test):
        import faulthandler

        faulthandler.cancel_dump_traceback_later()
        tid = short_id(test)
        status, detail = self._status.pop(tid, ("pass", ""))
        self._emit(event="end", id=tid, status=status, detail=detail, t=time.monotonic())
        if self._verbose:
            print(f"{tid} ... {status}", file=sys.stderr, flush=True)
        super().stopTest(test)

    def _set(self, test, status, err=None, detail=""):
        if err is not None:
            detail = self._exc_info_to_string(err, test)[-4000:]
        tid = short_id(test)
        if tid not in self._status:
            # Class/module fixtures (setUpClass errors) have no start/stop.
            self._emit(event="start", id=tid, t=time.monotonic())
            self._emit(event="end", id=tid, status=status, detail=detail, t=time.monotonic())
            return
        prev = self._status[tid][0]
        if prev in ("fail", "error") and status in PASS_STATUSES:
            return
        self._status[tid] = (status, detail)

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "fail", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if reason.startswith(NA_PREFIX):
            self._set(test, "n/a", detail=reason[len(NA_PREFIX):])
        else:
            self._set(test, "skip", detail=reason)

    def addExpectedFailure(self, test, err):
        # CPython's own @expectedFailure: counts as passing its own contract.
        super().addExpectedFailure(test, err)
        self._set(test, "pass", detail="cpython-expected-failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "fail", detail="unexpected success of a CPython @expectedFailure")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            status = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(test, status, err)


def child_main(args) -> int:
    suite = build_suite(args.module, args.loop)
    skip = set()
    if args.skip:
        with open(args.skip) as f:
            skip = set(json.load(f))
    only = args.only
    tests = [
        t for t in _iter_tests(suite)
        if short_id(t) not in skip and (not only or any(fnmatch.fnmatch(short_id(t), p) for p in only))
    ]
    run_suite = unittest.TestSuite(tests)
    with open(args.events, "a") as out:
        result = _StreamingResult(out, suite._netconf_policy_factory, args.verbose)
        run_suite.run(result)
    return 0


# ---- driver: run a module in children, survive crashes and hangs ---------------------------


def run_module(module: str, kind: str, *, python: str = sys.executable, only=None,
               verbose=False, max_restarts: int = 30, env=None) -> dict:
    """Run one module on loop `kind`; returns {test_id: (status, detail)} in run order."""
    results: dict = {}
    crashed: list = []
    with tempfile.TemporaryDirectory(prefix="netconf-") as tmp:
        events_path = os.path.join(tmp, "events.jsonl")
        skip_path = os.path.join(tmp, "skip.json")
        err_path = os.path.join(tmp, "stderr.txt")
        for _ in range(max_restarts + 1):
            with open(skip_path, "w") as f:
                json.dump(sorted(set(results) | set(crashed)), f)
            cmd = [python, os.path.abspath(__file__), "--child", "--loop", kind,
                   "--events", events_path, "--skip", skip_path, module]
            for pattern in only or ():
                cmd += ["--only", pattern]
            if verbose:
                cmd.append("-v")
            with open(err_path, "w") as err:
                proc = subprocess.run(cmd, stdout=err, stderr=subprocess.STDOUT if not verbose else None,
                                      env=env, timeout=3600)
            open_test = None
            with open(events_path) as f:
                for line in f:
                    ev = json.loads(line)
                    if ev["event"] == "start":
                        open_test = ev["id"]
                    else:
                        results[ev["id"]] = (ev["status"], ev.get("detail", ""))
                        open_test = None
            open(events_path, "w").close()
            if proc.returncode == 0 and open_test is None:
                break
            with open(err_path, errors="replace") as f:
                tail = f.read()[-3000:]
            if open_test is None:
                results[f"{module}.<child>"] = ("error", f"child exited {proc.returncode}:\n{tail}")
                break
            hung = "Timeout (" in tail
            results[open_test] = ("hang" if hung else "crash",
                                  f"child exited {proc.returncode}:\n{tail}")
            crashed.append(open_test)
    return results


# ---- expected failures ---------------------------------------------------------------------


def classify(results: dict, expected: dict, flaky: dict = None, not_applicable: dict = None) -> dict:
    """Split results into counts and lists against the tables of expected failures, flaky
    tests and tests not applicable to the loop (test ids or fnmatch patterns -> reasons)."""
    flaky = flaky or {}
    not_applicable = not_applicable or {}

    def match(table, tid):
        if tid in table:
            return tid
        for pattern in table:
            if any(c in pattern for c in "*?[") and fnmatch.fnmatch(tid, pattern):
                return pattern
        return None

    out = {"passed": 0, "skipped": 0, "expected_failures": 0, "flaky": 0, "not_applicable": 0,
           "unexpected_failures": [], "unexpected_passes": [], "total": len(results)}
    for tid, (status, detail) in results.items():
        if match(flaky, tid):
            out["flaky"] += 1
            continue
        failing = status not in PASS_STATUSES
        key = match(expected, tid)
        na_key = match(not_applicable, tid)
        if status == "skip":
            out["skipped"] += 1
        elif status == "n/a":
            out["not_applicable"] += 1
        elif not failing:
            # A listed test that passes is listed wrongly (patterns may cover passing tests).
            if (key is not None and key == tid) or (na_key is not None and na_key == tid):
                out["unexpected_passes"].append(tid)
            else:
                out["passed"] += 1
        elif na_key is not None:
            out["not_applicable"] += 1
        elif key is not None:
            out["expected_failures"] += 1
        else:
            out["unexpected_failures"].append((tid, status, detail))
    return out


def format_counts(module: str, c: dict) -> str:
    return (f"{module:<22} total {c['total']:>4}  passed {c['passed']:>4}  skipped {c['skipped']:>3}  "
            f"xfail {c['expected_failures']:>3}  n/a {c.get('not_applicable', 0):>3}  flaky {c['flaky']:>2}  "
            f"FAILED {len(c['unexpected_failures']):>3}  XPASS {len(c['unexpected_passes']):>3}")


def load_tables(suite: str):
    """(expected failures, flaky, not applicable) of a suite, from <suite>_expected_failures.py."""
    import importlib

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    tables = importlib.import_module(f"{suite}_expected_failures")
    return (tables.EXPECTED_FAILURES, getattr(tables, "FLAKY", {}),
            getattr(tables, "NOT_APPLICABLE", {}))


def check_module(module: str, suite: str, kind: str = "uvcore", **kw):
    """Run one module against its suite's tables: (counts, printable problems)."""
    expected, flaky, not_applicable = load_tables(suite)
    results = run_module(module, kind, **kw)
    counts = classify(results, expected, flaky, not_applicable)
    problems = [
        f"{status.upper()}: {tid}\n{detail}" for tid, status, detail in counts["unexpected_failures"]
    ] + [f"XPASS (remove it from {suite}_expected_failures.py): {tid}" for tid in counts["unexpected_passes"]]
    return counts, problems


def run_and_report(module: str, suite: str) -> list:
    """For the pytest wrappers: run a module on uvcore, print its counts, return problems
    (unexpected failures, listed tests that pass, or no test passing at all)."""
    counts, problems = check_module(module, suite)
    print("\n" + format_counts(module, counts), flush=True)
    if counts["passed"] == 0:
        problems.append(f"{module}: no test passed")
    return problems


def table_problems(suite: str) -> list:
    """Entries of a suite's tables that name no module of the suite or give no reason."""
    bad = []
    for table in load_tables(suite):
        for tid, reason in table.items():
            if tid.split(".", 1)[0] not in SUITES[suite]:
                bad.append(f"{tid}: not a module of the {suite} suite")
            if not (isinstance(reason, str) and len(reason) > 10 and "\n" not in reason):
                bad.append(f"{tid}: needs a one-line reason")
    return bad


def module_available(module: str) -> bool:
    """Whether this Python's test suite has the module (some are 3.11+ or 3.12+)."""
    import importlib.util

    try:
        return importlib.util.find_spec(f"test.test_asyncio.{module}") is not None
    except (ImportError, unittest.SkipTest):
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", default=None)
    p.add_argument("--suite", default="net", choices=sorted(SUITES))
    p.add_argument("--loop", default="uvcore", choices=["asyncio", "uvloop", "uvcore"])
    p.add_argument("--only", action="append", help="fnmatch pattern on test ids")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--no-expected", action="store_true", help="ignore the expected-failures table")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--events", help=argparse.SUPPRESS)
    p.add_argument("--skip", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        (args.module,) = args.modules
        return child_main(args)

    expected, flaky, not_applicable = {}, {}, {}
    if args.loop == "uvcore" and not args.no_expected:
        expected, flaky, not_applicable = load_tables(args.suite)
    rc = 0
    for module in args.modules or SUITES[args.suite]:
        t0 = time.monotonic()
        results = run_module(module, args.loop, only=args.only, verbose=args.verbose)
        c = classify(results, expected, flaky, not_applicable)
        print(format_counts(module, c) + f"  ({time.monotonic() - t0:.0f}s)", flush=True)
        for tid, status, detail in c["unexpected_failures"]:
            rc = 1
            print(f"    {status.upper()}: {tid}")
            if args.verbose:
                print("      " + detail.strip().replace("\n", "\n      "))
        for tid in c["unexpected_passes"]:
            rc = 1
            print(f"    XPASS (remove from expected failures): {tid}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
