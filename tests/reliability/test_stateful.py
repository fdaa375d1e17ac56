"""Hypothesis stateful tests: Queue and PubSub driven by random rule sequences, checked step by
step against small Python models. tests/test_queue_property.py compares whole random programs
with asyncio's queues; here the model is ours and the state persists across steps (waiting
getters, cancelled waiters, subscriptions on overlapping channels and patterns)."""
from __future__ import annotations

import asyncio
import collections
import fnmatch

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import uvcore

from .conftest import TALLY

SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def settle(loop):
    """Run the loop until every ready callback has run (a few idle turns)."""
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))


class QueueMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = uvcore.new_event_loop()
        self.maxsize = 3
        self.q = uvcore.Queue(self.maxsize)
        self.items = collections.deque()  # model of the queue's contents
        self.unfinished = 0
        self.getters = []  # (task, got) of suspended get()s, oldest first; got is the model's
        self.received = []  # (task, expected item)
        self.counter = 0

    def teardown(self):
        for task, _ in self.getters:
            task.cancel()
        settle(self.loop)
        self.loop.close()

    def _deliver(self):
        # A put while getters wait hands the oldest waiting getter the oldest item.
        while self.getters and self.items:
            task, _ = self.getters.pop(0)
            self.received.append((task, self.items.popleft()))

    @rule()
    def put_nowait(self):
        self.counter += 1
        if len(self.items) >= self.maxsize:
            with pytest.raises(asyncio.QueueFull):
                self.q.put_nowait(self.counter)
            TALLY["bad_inputs"] += 1
            return
        self.q.put_nowait(self.counter)
        self.items.append(self.counter)
        self.unfinished += 1
        settle(self.loop)
        self._deliver()

    @rule()
    def get_nowait(self):
        if not self.items:
            with pytest.raises(asyncio.QueueEmpty):
                self.q.get_nowait()
            TALLY["bad_inputs"] += 1
            return
        assert self.q.get_nowait() == self.items.popleft()

    @precondition(lambda self: len(self.getters) < 4)
    @rule()
    def start_getter(self):
        task = self.loop.create_task(self.q.get())
        settle(self.loop)
        if self.items:  # it did not need to wait
            self.received.append((task, self.items.popleft()))
        else:
            self.getters.append((task, None))

    @precondition(lambda self: self.getters)
    @rule(index=st.integers(0, 3))
    def cancel_getter(self, index):
        task, _ = self.getters.pop(index % len(self.getters))
        task.cancel()
        settle(self.loop)
        TALLY["faults"] += 1
        assert task.cancelled()

    @rule()
    def task_done(self):
        if self.unfinished == 0:
            with pytest.raises(ValueError):
                self.q.task_done()
            TALLY["bad_inputs"] += 1
            return
        self.q.task_done()
        self.unfinished -= 1

    @invariant()
    def matches_model(self):
        assert self.q.qsize() == len(self.items)
        assert list(self.q._queue) == list(self.items)
        assert self.q.full() == (len(self.items) >= self.maxsize)
        assert self.q._unfinished_tasks == self.unfinished
        for task, expected in self.received:
            assert task.done() and task.result() == expected
        for task, _ in self.getters:
            assert not task.done()


NAMES = ["a", "b", "a.x"]
PATTERNS = ["*", "a*", "?"]


class Sub:
    def __init__(self, sub, name, maxsize, overflow):
        self.sub, self.name, self.maxsize, self.overflow = sub, name, maxsize, overflow
        self.buf = collections.deque()
        self.dropped = 0
        self.state = "active"  # or "closed", "overflowed"

    def matches(self, channel):
        names = self.name if isinstance(self.name, tuple) else (self.name,)
        return any(fnmatch.fnmatchcase(channel, n) if any(c in n for c in "*?[") else channel == n for n in names)


class PubSubMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = uvcore.new_event_loop()
        self.bus = uvcore.PubSub()
        self.subs = []
        self.seq = 0

    def teardown(self):
        self.loop.run_until_complete(self.bus.aclose())
        assert self.bus.stats()["subscribers"] == 0
        self.loop.close()

    def active(self):
        return [s for s in self.subs if s.state == "active"]

    @precondition(lambda self: len(self.subs) < 8)
    @rule(name=st.sampled_from(NAMES + PATTERNS) | st.lists(st.sampled_from(NAMES + PATTERNS), min_size=2,
                                                         max_size=3, unique=True).map(tuple),
          maxsize=st.integers(1, 3), overflow=st.sampled_from(["drop_oldest", "drop_newest", "disconnect", "block"]))
    def subscribe(self, name, maxsize, overflow):
        sub = self.bus.subscribe(list(name) if isinstance(name, tuple) else name, maxsize=maxsize, overflow=overflow)
        self.subs.append(Sub(sub, name, maxsize, overflow))

    @rule(channel=st.sampled_from(NAMES))
    def publish_nowait(self, channel):
        self.seq += 1
        msg = ("m", self.seq)
        targets = [s for s in self.active() if s.matches(channel)]
        if any(s.overflow == "block" and len(s.buf) >= s.maxsize for s in targets):
            with pytest.raises(asyncio.QueueFull):
                self.bus.publish_nowait(channel, msg)
            TALLY["faults"] += 1
            return
        receivers = 0
        for s in targets:
            if len(s.buf) < s.maxsize:
                s.buf.append(msg)
                receivers += 1
            elif s.overflow == "drop_oldest":
                s.buf.popleft()
                s.buf.append(msg)
                s.dropped += 1
                receivers += 1
            elif s.overflow == "drop_newest":
                s.dropped += 1
            else:  # disconnect
                s.dropped += len(s.buf) + 1
                s.buf.clear()
                s.state = "overflowed"
            if len(s.buf) >= s.maxsize and s.overflow != "block":
                TALLY["faults"] += 1  # a slow consumer at its bound
        assert self.bus.publish_nowait(channel, msg) == receivers

    @precondition(lambda self: self.subs)
    @rule(index=st.integers(0, 7))
    def read_one(self, index):
        s = self.subs[index % len(self.subs)]
        if s.buf:
            assert self.loop.run_until_complete(s.sub.__anext__()) == s.buf.popleft()
        elif s.state == "overflowed":
            with pytest.raises(uvcore.SubscriberOverflow):
                self.loop.run_until_complete(s.sub.__anext__())
        elif s.state == "closed":
            with pytest.raises(StopAsyncIteration):
                self.loop.run_until_complete(s.sub.__anext__())

    @precondition(lambda self: self.subs)
    @rule(index=st.integers(0, 7))
    def aclose(self, index):
        s = self.subs[index % len(self.subs)]
        self.loop.run_until_complete(s.sub.aclose())
        if s.state == "active":
            s.state = "closed"
        s.buf.clear()

    @rule(bad=st.sampled_from([None, 1, b"x", ["a", 2], ""]))
    def bad_subscribe(self, bad):
        with pytest.raises((TypeError, ValueError)):
            self.bus.subscribe(bad)
        TALLY["bad_inputs"] += 1

    @invariant()
    def matches_model(self):
        assert self.bus.stats()["subscribers"] == len(self.active())
        for s in self.subs:
            assert s.sub.pending == len(s.buf), (s.name, s.overflow)
            assert s.sub.dropped == s.dropped
            assert s.sub.closed == (s.state != "active")


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = SETTINGS
TestPubSubMachine = PubSubMachine.TestCase
TestPubSubMachine.settings = SETTINGS
