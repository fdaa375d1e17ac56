"""pytest plugin loaded (-p uvcore_compat) into the upstream suites that tests/compat/run.py
runs: uvcore becomes asyncio's default loop (uvcore.install(), so asyncio.new_event_loop()
and asyncio.Runner() make uvcore loops, which is how AnyIO's "asyncio" backend and aiohttp's
"pyloop" loop get theirs), the other loop parametrizations (uvloop, trio, eager tasks) are
deselected, and the loops each test made are counted so the run can prove it ran on uvcore."""
import asyncio
import json
import os

import pytest

import uvcore
from uvcore import _loop

_counts = {"uvcore_loops": 0, "other_loops": 0, "tests_with_uvcore": 0, "tests": 0}
_per_test = [0, 0]
_uvcore_init = _loop.Loop.__init__
_base_init = asyncio.BaseEventLoop.__init__


def _counting_uvcore_init(self):
    _per_test[0] += 1
    _uvcore_init(self)


def _counting_base_init(self, *args, **kwargs):
    _per_test[1] += 1
    _base_init(self, *args, **kwargs)


_loop.Loop.__init__ = _counting_uvcore_init
asyncio.BaseEventLoop.__init__ = _counting_base_init

# parameter ids that mean "another event loop than asyncio's default"
_OTHER_LOOPS = ("uvloop", "trio", "eager", "winloop")


def pytest_configure(config):
    # UVCORE_COMPAT_LOOP=asyncio: the same run on asyncio's loop, to tell the environment's
    # failures from uvcore's (tests/compat/run.py --loop asyncio)
    if os.environ.get("UVCORE_COMPAT_LOOP", "uvcore") == "uvcore":
        uvcore.install()


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "id", "") or ""
        (drop if any(name in params for name in _OTHER_LOOPS) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _per_test[0] = _per_test[1] = 0
    yield
    _counts["tests"] += 1
    _counts["uvcore_loops"] += _per_test[0]
    _counts["other_loops"] += _per_test[1]
    if _per_test[0]:
        _counts["tests_with_uvcore"] += 1


def pytest_sessionfinish(session):
    path = os.environ.get("UVCORE_COMPAT_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(_counts, f)
