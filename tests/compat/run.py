"""`make compat`: upstream test suites, from their sdists on PyPI at pinned versions, with
uvcore as the event loop (tests/compat/uvcore_compat.py makes it asyncio's default loop).

Each suite is downloaded once into build/compat/ (pip download --no-binary :all:), run from
its own source tree (PYTHONPATH: the sdist's package, not an installed copy, so tests and
code are the same version) with pytest and a JUnit report, then compared with
tests/compat/expected_failures.txt, strictly:
  - a failure or error not listed fails the run;
  - a listed test that passes fails the run (the list cannot go stale);
  - a listed test that did not run at all fails the run;
  - except that an entry whose reason starts with "flaky:" may pass or fail;
  - a suite in which no test made a uvcore loop fails the run.
Prints per-suite counts. `python tests/compat/run.py [--suite anyio] [--loop asyncio]`;
--loop asyncio runs the same selection on asyncio's own loop (to tell uvcore's failures
from the environment's) and does not compare.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = REPO / "build" / "compat"
EXPECTED = HERE / "expected_failures.txt"

# What runs, and why only that: CI has about 8 minutes for this on 2 cores.
# websockets is not here: its sdists carry no runnable loop-level tests (17.x prunes tests/;
# 13-15 ship a partial sans-I/O tree without tests/__init__.py and tests/utils.py, so not
# even those import); uvcore's own tests/test_real_servers.py runs websockets on uvcore.
SUITES = {
    "anyio": {
        "pin": "anyio==4.16.0",
        "pythonpath": "src",
        # The asyncio backend's public behaviour: tasks, cancellation, synchronisation,
        # sockets (TCP, UDP, Unix, TLS), streams, threads, subprocesses, signals. Left out:
        # test_pytest_plugin (pytester subprocesses with 3 s timeouts, about pytest, not the
        # loop), to_process/to_interpreter (worker processes), fileio/tempfile (threads only).
        "args": ["tests/test_taskgroups.py", "tests/test_synchronization.py", "tests/test_sockets.py",
                 "tests/streams", "tests/test_to_thread.py", "tests/test_from_thread.py",
                 "tests/test_subprocesses.py", "tests/test_signals.py", "tests/test_lowlevel.py",
                 "tests/test_eventloop.py", "tests/test_debugging.py", "tests/test_contextmanagers.py",
                 "tests/test_futures.py", "tests/test_concurrency_utils.py",
                 # this machine's /etc/hosts maps localhost to 127.0.0.1 only: the ipv6 and
                 # dual-stack cases fail on asyncio's own loop too. test_user_group_arguments:
                 # blockbuster allows Popen's blocking exec-error os.read only inside asyncio's
                 # subprocess_exec, and uvcore's Popen path (user/group/umask) makes the same
                 # read; the failure leaves a running Popen whose ResourceWarning then fails
                 # whichever test the garbage collector happens to run in.
                 "-k", "not ipv6 and not dualstack and not test_user_group_arguments"],
        "env": {},
    },
    "aiohttp": {
        "pin": "aiohttp==3.14.5",
        "pythonpath": ".",
        # Real clients and servers over loopback: HTTP client and server, WebSocket client
        # and server. Pure-Python mode (the sdist's C parsers are not built).
        "args": ["tests/test_client_functional.py", "tests/test_web_functional.py",
                 "tests/test_web_websocket_functional.py", "tests/test_client_ws_functional.py",
                 "-m", "not dev_mode and not autobahn and not internal"],
        "env": {"AIOHTTP_NO_EXTENSIONS": "1"},
    },
}


def fetch(pin: str) -> Path:
    """The extracted sdist for `pin` (name==version), downloaded on first use."""
    name, version = pin.split("==")
    root = CACHE / f"{name}-{version}"
    if root.exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "--disable-pip-version-check", "-d", str(CACHE), pin], check=True)
    (archive,) = CACHE.glob(f"{name}-{version}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data") if sys.version_info >= (3, 12) else tar.extractall(CACHE)
    return root


def expected_failures() -> dict[str, dict[str, str]]:
    """{suite: {test id: reason}}; an entry without a one-line reason is an error."""
    out: dict[str, dict[str, str]] = {name: {} for name in SUITES}
    for number, line in enumerate(EXPECTED.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        entry, sep, reason = line.partition("  # ")
        suite, _, test = entry.strip().partition(" ")
        if not sep or not reason.strip() or suite not in SUITES or not test:
            raise SystemExit(f"{EXPECTED}:{number}: want '<suite> <test id>  # reason', got {line!r}")
        out[suite][test.strip()] = reason.strip()
    return out


def outcomes(junit: Path) -> dict[str, str]:
    """{test id: passed|failed|skipped} from a pytest JUnit report (errors count as failed)."""
    result = {}
    for case in ET.parse(junit).iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        test = f"{classname}::{name}" if classname else name
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        if result.get(test) != "failed":  # a teardown error after a pass is a failure
            result[test] = state
    return result


def compare(name: str, results: dict[str, str], listed: dict[str, str]) -> list[str]:
    """What is wrong with a uvcore run of suite `name` given its expected failures."""
    problems = []
    failed = {t for t, s in results.items() if s == "failed"}
    for test in sorted(failed - set(listed)):
        problems.append(f"{name}: {test} failed on uvcore and is not in {EXPECTED.name}")
    for test, reason in sorted(listed.items()):
        state = results.get(test)
        if state is None:
            problems.append(f"{name}: {test} is listed in {EXPECTED.name} but did not run")
        elif state == "passed" and not reason.startswith("flaky:"):
            problems.append(f"{name}: {test} passes now: remove it from {EXPECTED.name} ({reason})")
    return problems


def run_suite(name: str, loop: str) -> tuple[dict[str, str], dict[str, int], float]:
    spec = SUITES[name]
    root = fetch(spec["pin"])
    out = CACHE / "reports"
    out.mkdir(exist_ok=True)
    junit, counts = out / f"{name}-{loop}.xml", out / f"{name}-{loop}.json"
    env = dict(os.environ, **spec["env"])
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(root / spec["pythonpath"]), str(REPO / "python")])
    env["UVCORE_COMPAT_COUNTS"] = str(counts)
    env["UVCORE_COMPAT_LOOP"] = loop
    cmd = [sys.executable, "-m", "pytest", *spec["args"], "-p", "uvcore_compat", "-p", "no:cacheprovider",
           "-o", "addopts=", "-o", "junit_family=xunit1", "--junitxml", str(junit), "-q", "--tb=line",
           "--timeout", "60", "-W", "ignore::DeprecationWarning"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if not junit.exists():
        raise SystemExit(f"{name}: pytest produced no report (exit {proc.returncode})\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:]
    print(f"{name} ({spec['pin']}, {elapsed:.0f}s): {tail[0] if tail else ''}", flush=True)
    return outcomes(junit), json.loads(counts.read_text()), elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES))
    parser.add_argument("--loop", default="uvcore", choices=["uvcore", "asyncio"])
    args = parser.parse_args()
    expected = expected_failures()
    problems: list[str] = []
    rows = []
    for name in args.suite or list(SUITES):
        results, counts, elapsed = run_suite(name, args.loop)
        listed = expected[name]
        passed = sum(1 for s in results.values() if s == "passed")
        failed = {t for t, s in results.items() if s == "failed"}
        skipped = sum(1 for s in results.values() if s == "skipped")
        xfail = failed & set(listed)
        rows.append((name, SUITES[name]["pin"], passed, len(xfail), len(failed - xfail), skipped,
                     counts["tests_with_uvcore"], counts["other_loops"], elapsed))
        if args.loop != "uvcore":
            for test in sorted(failed):
                print(f"  {args.loop} fails: {name} {test}")
            continue
        problems += compare(name, results, listed)
        if counts["tests_with_uvcore"] == 0:
            problems.append(f"{name}: no test made a uvcore loop: the suite did not run on uvcore")
    print(f"\n| suite | passed | xfail (listed) | failed (unlisted) | skipped | tests on a uvcore loop "
          f"| other loops made | time |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, pin, passed, xfail, failed, skipped, on_uvcore, others, elapsed in rows:
        print(f"| {pin} | {passed} | {xfail} | {failed} | {skipped} | {on_uvcore} | {others} | {elapsed:.0f}s |")
    if problems:
        print("\ncompat FAILED:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    print("\ncompat: every failure is listed with its reason, and every listed test still fails")
    return 0


if __name__ == "__main__":
    sys.exit(main())
