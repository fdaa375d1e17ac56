"""subscribe() with a long list of names, and leaving it, take time linear in the number of
names (duplicates removed, order kept): 40,000 names may not cost much more than 4 times
10,000 (quadratic work would cost 16 times)."""
import asyncio
import time

import uvcore


def cpu_cost(n, kind):
    """Median CPU time of subscribing to n fresh names and leaving them (3 rounds)."""
    names = [f"{kind}.{i}{'.*' if kind == 'pattern' else ''}" for i in range(n)]
    names += names[: n // 4]  # duplicates are dropped, and must not cost more than a lookup
    costs = []
    for _ in range(3):
        bus = uvcore.PubSub()
        t0 = time.process_time()
        sub = bus.subscribe(names)
        asyncio.run(sub.aclose())
        costs.append(time.process_time() - t0)
        assert bus.stats()["channels"] == 0 and bus.stats()["patterns"] == 0
    return sorted(costs)[1]


def test_subscribing_to_many_names_keeps_order_and_drops_duplicates():
    bus = uvcore.PubSub()
    names = [f"c{i}" for i in range(5000)]
    sub = bus.subscribe(names + ["p.*"] + names[::-1])
    assert sub.channel == tuple(names + ["p.*"])
    assert bus.stats()["channels"] == 5000 and bus.stats()["patterns"] == 1
    assert bus.publish_nowait("c4999", 1) == 1 and bus.publish_nowait("p.x", 2) == 1
    assert sub.pending == 2


def test_subscribe_and_leave_are_linear_in_the_number_of_channels():
    small, large = cpu_cost(10_000, "channel"), cpu_cost(40_000, "channel")
    assert large < 10 * max(small, 1e-3), (small, large)


def test_subscribe_and_leave_are_linear_in_the_number_of_patterns():
    small, large = cpu_cost(10_000, "pattern"), cpu_cost(40_000, "pattern")
    assert large < 10 * max(small, 1e-3), (small, large)
