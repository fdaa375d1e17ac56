"""Conformance: the installed CPython's test.test_asyncio.test_queues, run with uvcore.Queue,
LifoQueue and PriorityQueue in place of asyncio's, on asyncio's default loop and on uvcore's.

The CPython module is compiled afresh into its own namespace whose `import asyncio` yields
asyncio with the three queue classes swapped, so its class bodies (`q_class = asyncio.Queue`)
and test bodies both see uvcore's queues. Every expected failure is listed with its reason.
"""
import asyncio
import builtins
import importlib.util
import sys
import types
import unittest

import pytest

import uvcore

# test id (Class.method) -> why uvcore differs (ids absent from this Python's suite are unused).
EXPECTED_FAILURES = {
    # Python 3.9 only: asyncio 3.9 binds a queue to get_event_loop() when it is created;
    # uvcore binds at the first wait, as asyncio does from 3.10 (loop= is still honoured).
    "QueueBasicTests.test_ctor_noloop": "binds to the running loop at first wait (3.10+ rule)",
}


class _AsyncioWithUvcoreQueues(types.ModuleType):
    """asyncio, except that Queue/LifoQueue/PriorityQueue are uvcore's."""

    Queue = uvcore.Queue
    LifoQueue = uvcore.LifoQueue
    PriorityQueue = uvcore.PriorityQueue

    def __getattr__(self, name):
        return getattr(asyncio, name)


def _load_cpython_module():
    try:
        spec = importlib.util.find_spec("test.test_asyncio.test_queues")
    except (ImportError, unittest.SkipTest):
        spec = None
    if spec is None:
        pytest.skip("CPython's test suite (test.test_asyncio) is not installed",
                    allow_module_level=True)
    proxy = _AsyncioWithUvcoreQueues("asyncio")

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "asyncio" and level == 0 and not fromlist:
            return proxy
        return builtins.__import__(name, globals, locals, fromlist, level)

    mod = types.ModuleType("cpython_test_queues_on_uvcore")
    mod.__file__ = spec.origin
    mod.__builtins__ = {**builtins.__dict__, "__import__": _import}
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    exec(compile(source, spec.origin, "exec"), mod.__dict__)
    assert mod.asyncio is proxy
    return mod


_cpython = _load_cpython_module()


def _uvcore_runner(self):
    # IsolatedAsyncioTestCase (3.11+) keeps its Runner here; give it uvcore's loop.
    self._asyncioRunner = asyncio.Runner(debug=True, loop_factory=uvcore.new_event_loop)


def _variant(cls, prefix, on_uvcore_loop):
    ns = {"__module__": __name__, "__qualname__": prefix + cls.__name__}
    if on_uvcore_loop:
        ns["_setupAsyncioRunner"] = _uvcore_runner
    for name in dir(cls):
        reason = EXPECTED_FAILURES.get(f"{cls.__name__}.{name}")
        if reason is not None and name.startswith("test"):
            ns[name] = unittest.expectedFailure(getattr(cls, name))
    return type(prefix + cls.__name__, (cls,), ns)


def _test_classes():
    for name, obj in vars(_cpython).items():
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and not name.startswith("_"):
            if any(n.startswith("test") for n in dir(obj)):
                yield obj


for _cls in _test_classes():
    globals()["Test" + _cls.__name__ + "OnAsyncioLoop"] = _variant(_cls, "AsyncioLoop", False)
    if sys.version_info >= (3, 11) and hasattr(uvcore, "new_event_loop"):
        globals()["Test" + _cls.__name__ + "OnUvcoreLoop"] = _variant(_cls, "UvcoreLoop", True)
del _cls


def test_the_substitution_is_in_effect():
    assert _cpython.asyncio.Queue is uvcore.Queue
    assert _cpython.QueueJoinTests.q_class is uvcore.Queue
    assert _cpython.PriorityQueueJoinTests.q_class is uvcore.PriorityQueue
