"""Glob pattern subscriptions (Redis PSUBSCRIBE syntax) and once-only delivery."""
import pytest

import uvcore
from pubsub_support import run  # noqa: F401

MATCHES = [
    ("chat.*", "chat.room1", True),
    ("chat.*", "chat.", True),
    ("chat.*", "chat", False),
    ("chat.*", "chat.a.b", True),
    ("*", "anything", True),
    ("*.log", "x.y.log", True),
    ("*.log", "x.y.logs", False),
    ("a*b*c", "aXXbYYc", True),
    ("a*b*c", "aXXcYYb", False),
    ("**x", "abcx", True),
    ("room.?", "room.1", True),
    ("room.?", "room.12", False),
    ("room.?", "room.", False),
    ("h?llo", "héllo", True),
    ("[ab]", "a", True),
    ("[ab]", "c", False),
    ("[ab]x", "bx", True),
    ("[^ab]", "c", True),
    ("[^ab]", "a", False),
    ("[a-c]9", "b9", True),
    ("[a-c]9", "d9", False),
    ("[c-a]", "b", True),
    ("[0-9][0-9]", "42", True),
    ("x[\\]]y", "x]y", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("a\\?", "a?", True),
    ("a\\\\b", "a\\b", True),
    ("*[!]", "hey!", True),
    ("user:*:inbox", "user:42:inbox", True),
    ("user:*:inbox", "user:42:outbox", False),
    ("*a*a*a*a*a*a*a*b", "a" * 40, False),
]


@pytest.mark.parametrize("pattern,channel,expected", MATCHES)
def test_glob_pattern_matching(pattern, channel, expected):
    bus = uvcore.PubSub()
    sub = bus.subscribe(pattern)
    assert sub.is_pattern
    assert bus.publish_nowait(channel, "m") == int(expected)
    assert sub.pending == int(expected)


def test_plain_names_are_channels_not_patterns():
    bus = uvcore.PubSub()
    sub = bus.subscribe("chat.room-1:x")
    assert not sub.is_pattern
    assert bus.stats()["channels"] == 1 and bus.stats()["patterns"] == 0
    # A published channel name is literal even if it contains glob characters.
    star = bus.subscribe("a\\*")
    assert bus.publish_nowait("a*", 1) == 1 and star.pending == 1
    assert bus.publish_nowait("ab", 1) == 0


def test_message_reaches_subscriber_once_when_several_patterns_match(run):
    async def main():
        bus = uvcore.PubSub()
        sub = bus.subscribe(["chat.*", "chat.room?", "*", "chat.room1"])
        other = bus.subscribe("chat.*")
        assert await bus.publish("chat.room1", "hello") == 2
        assert sub.pending == 1 and other.pending == 1
        assert await sub.__anext__() == "hello"
        assert await bus.publish("news", "n") == 1
        assert await sub.__anext__() == "n"

    run(main)


def test_pattern_and_channel_subscribers_each_get_the_message(run):
    async def main():
        bus = uvcore.PubSub()
        exact = bus.subscribe("room.1")
        pat = bus.subscribe("room.*")
        assert await bus.publish("room.1", 1) == 2
        assert await bus.publish("room.2", 2) == 1
        assert [exact.pending, pat.pending] == [1, 2]
        await pat.aclose()
        assert bus.stats()["patterns"] == 0
        assert await bus.publish("room.2", 3) == 0

    run(main)


@pytest.mark.parametrize("bad", ["chat.[abc", "[", "x\\", "[^", "a[\\]"])
def test_malformed_patterns_raise_value_error(bad):
    bus = uvcore.PubSub()
    with pytest.raises(ValueError, match="bad pattern"):
        bus.subscribe(bad)
    assert bus.stats()["subscribers"] == 0


def _reference_regex(pattern):
    """An independent translation of the glob rules into a Python regex."""
    import re

    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            i += 1
            negate = pattern[i] == "^" if i < n else False
            i += negate
            ranges = []
            while pattern[i] != "]":
                lo = pattern[i]
                if lo == "\\":
                    i += 1
                    lo = pattern[i]
                if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
                    j = i + 2
                    hi = pattern[j]
                    if hi == "\\" and j + 1 < n:
                        j += 1
                        hi = pattern[j]
                    ranges.append((min(lo, hi), max(lo, hi)))
                    i = j + 1
                else:
                    ranges.append((lo, lo))
                    i += 1
            i += 1
            body = "".join(f"\\U{ord(a):08x}-\\U{ord(b):08x}" for a, b in ranges)
            if not ranges:
                out.append("." if negate else "(?!)")
            else:
                out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=600, deadline=None)
    @given(st.text(alphabet="ab-]^\\*?[é", min_size=1, max_size=10), st.text(alphabet="ab-]^\\*?[é", max_size=12))
    def test_glob_matching_agrees_with_a_reference_translation(pattern, channel):
        bus = uvcore.PubSub()
        try:
            sub = bus.subscribe(pattern)
        except ValueError:
            with pytest.raises(Exception):
                _reference_regex(pattern)
            return
        expected = _reference_regex(pattern).fullmatch(channel) is not None if sub.is_pattern else pattern == channel
        if not channel:
            with pytest.raises(ValueError):
                bus.publish_nowait(channel, 1)
            return
        assert bus.publish_nowait(channel, 1) == int(expected), (pattern, channel)
