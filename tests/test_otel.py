"""uvcore.otel against the OpenTelemetry SDK's in-memory span exporter and metric reader:
slow callbacks and unhandled exceptions as spans, the loop's counters, PubSub and Queue
stats as metrics, nothing timed without a real provider, and a broken exporter, processor
or observation that never reaches the loop."""
import asyncio
import logging
import time

import pytest

import uvcore

otel = pytest.importorskip("uvcore.otel")
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def reader():
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def points(reader, name):
    """{frozenset(attributes): value} of metric `name` in one collection."""
    data = reader.get_metrics_data()
    out = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out[frozenset(p.attributes.items())] = p.value
    return out


def run(loop, coro):
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_slow_callback_becomes_a_span_with_its_duration(spans):
    provider, exporter = spans
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop, tracer_provider=provider, meter_provider=metrics.NoOpMeterProvider(),
                                slow_callback_duration=0.05, name="main")
    assert telemetry.timed and telemetry.spans and not loop.get_debug()

    async def main():
        loop.call_soon(time.sleep, 0.12)   # slow
        loop.call_soon(time.sleep, 0.001)  # fast
        await asyncio.sleep(0.2)

    run(loop, main())
    slow = [s for s in exporter.get_finished_spans() if s.name == "uvcore.slow_callback"]
    assert len(slow) == 1, [s.name for s in exporter.get_finished_spans()]
    span = slow[0]
    assert span.attributes["uvcore.loop"] == "main"
    assert "sleep" in span.attributes["uvcore.callback"]
    assert 0.12 <= span.attributes["uvcore.duration_s"] < 5
    assert abs((span.end_time - span.start_time) / 1e9 - span.attributes["uvcore.duration_s"]) < 0.01


def test_slow_task_step_names_the_task(spans):
    provider, exporter = spans
    loop = uvcore.new_event_loop()
    otel.instrument(loop, tracer_provider=provider, slow_callback_duration=0.05)

    async def hog():
        time.sleep(0.08)

    async def main():
        await asyncio.create_task(hog(), name="the-hog")

    run(loop, main())
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "uvcore.slow_callback"]
    assert "the-hog" in span.attributes["uvcore.callback"]


def test_unhandled_exception_becomes_an_error_span_and_the_handler_still_runs(spans):
    provider, exporter = spans
    loop = uvcore.new_event_loop()
    otel.instrument(loop, tracer_provider=provider)
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))

    def boom():
        raise ValueError("bad input 42")

    async def main():
        loop.call_soon(boom)
        await asyncio.sleep(0.01)

    run(loop, main())
    assert len(seen) == 1 and "boom" in seen[0]
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "uvcore.unhandled_exception"]
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: bad input 42" in span.status.description
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert "boom" in span.attributes["uvcore.handle"]


def test_loop_counters_and_idle_time_as_metrics(reader):
    provider, rd = reader
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop, meter_provider=provider, tracer_provider=trace.NoOpTracerProvider(),
                                name="m")
    assert telemetry.idle_time and not telemetry.timed
    key = frozenset({("uvcore.loop", "m")})

    async def main():
        for _ in range(50):
            loop.call_soon(lambda: None)
        await asyncio.sleep(0.1)  # idle in the poll
        later = [loop.call_later(60, lambda: None) for _ in range(3)]
        loop.call_soon(lambda: None)
        got = (points(rd, "uvcore.loop.iterations")[key], points(rd, "uvcore.loop.callbacks")[key],
               points(rd, "uvcore.loop.ready")[key], points(rd, "uvcore.loop.timers")[key],
               points(rd, "uvcore.loop.idle_time")[key], points(rd, "uvcore.loop.handles")[key])
        for h in later:
            h.cancel()
        return got

    iterations, callbacks, ready, timers, idle, handles = run(loop, main())
    assert iterations >= 2 and callbacks >= 51
    assert ready == 1 and timers == 3
    assert 0.08 <= idle < 5
    assert handles >= 1  # the loop's own wakeup handle at least
    # a closed loop is no longer reported
    assert key not in points(rd, "uvcore.loop.iterations")


def test_fd_watchers_metric(reader):
    import socket

    provider, rd = reader
    loop = uvcore.new_event_loop()
    otel.instrument(loop, meter_provider=provider, name="fd")
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, lambda: None)
        assert points(rd, "uvcore.loop.fd_watchers")[frozenset({("uvcore.loop", "fd")})] == 1
        loop.remove_reader(a)
        assert points(rd, "uvcore.loop.fd_watchers")[frozenset({("uvcore.loop", "fd")})] == 0
    finally:
        loop.close()
        a.close()
        b.close()


def test_pubsub_and_queue_stats_as_metrics(reader):
    provider, rd = reader

    async def main():
        bus = uvcore.PubSub()
        jobs = uvcore.Queue(maxsize=10)
        otel.instrument_pubsub(bus, "chat", meter_provider=provider)
        otel.instrument_queue(jobs, "jobs", meter_provider=provider)
        sub = bus.subscribe("room.*", maxsize=2, overflow="drop_oldest")
        for i in range(5):
            await bus.publish("room.1", i)
        for i in range(3):
            jobs.put_nowait(i)
        jobs.get_nowait()
        chat, q = frozenset({("uvcore.pubsub", "chat")}), frozenset({("uvcore.queue", "jobs")})
        got = {name: points(rd, f"uvcore.pubsub.{name}")[chat]
               for name in ("patterns", "subscribers", "published", "delivered", "dropped")}
        got.update({f"q.{name}": points(rd, f"uvcore.queue.{name}")[q]
                    for name in ("size", "unfinished", "getters", "putters")})
        await sub.aclose()
        await bus.aclose()
        got["after_close"] = chat in points(rd, "uvcore.pubsub.published")
        return got

    got = uvcore.run(main())
    assert got == {"patterns": 1, "subscribers": 1, "published": 5, "delivered": 5, "dropped": 3,
                   "q.size": 2, "q.unfinished": 3, "q.getters": 0, "q.putters": 0, "after_close": False}


def test_no_provider_means_nothing_timed_and_no_idle_accounting():
    """With no provider set (the API's proxies), instrument() costs the loop nothing: no
    callback timing, no idle-time accounting; the C counters count anyway."""
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop)
    assert (telemetry.timed, telemetry.idle_time) == (False, False)
    noop = otel.instrument(loop, tracer_provider=trace.NoOpTracerProvider(),
                           meter_provider=metrics.NoOpMeterProvider())
    assert (noop.timed, noop.idle_time, noop.spans) == (False, False, False)
    loop.call_soon(time.sleep, 0.01)
    loop.slow_callback_duration = 0
    run(loop, asyncio.sleep(0.01))
    assert loop._metrics()[6] is None


class BrokenExporter(SpanExporter):
    def export(self, spans):
        raise RuntimeError("collector is down")


class BrokenProcessor(SimpleSpanProcessor):
    def on_start(self, span, parent_context=None):
        raise RuntimeError("processor bug")


def test_broken_exporter_and_processor_never_break_the_loop(caplog):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(BrokenExporter()))
    provider.add_span_processor(BrokenProcessor(InMemorySpanExporter()))
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop, tracer_provider=provider, slow_callback_duration=0)
    handled = []
    loop.set_exception_handler(lambda lp, ctx: handled.append(ctx["exception"]))
    ran = []

    def fails():
        raise KeyError("x")

    async def main():
        for i in range(20):
            loop.call_soon(ran.append, i)
        loop.call_soon(fails)
        await asyncio.sleep(0.01)
        return "done"

    with caplog.at_level(logging.ERROR):
        assert run(loop, main()) == "done"
    assert ran == list(range(20))
    assert [type(e) for e in handled] == [KeyError]
    assert telemetry.errors >= 1  # the processor's error, counted and kept from the loop


def test_broken_observation_is_counted_not_raised(reader):
    provider, rd = reader

    class Bad:
        closed = False

        def stats(self):
            raise RuntimeError("stats broke")

    bad = Bad()
    otel.instrument_pubsub(bad, "bad", meter_provider=provider)
    assert frozenset({("uvcore.pubsub", "bad")}) not in points(rd, "uvcore.pubsub.published")
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop, meter_provider=provider)
    assert telemetry.errors >= 1
    loop.close()


def test_uninstrument_stops_spans_and_timing(spans):
    provider, exporter = spans
    loop = uvcore.new_event_loop()
    telemetry = otel.instrument(loop, tracer_provider=provider, slow_callback_duration=0)
    telemetry.uninstrument()
    assert loop._uvc_telemetry is None
    loop.call_soon(time.sleep, 0.01)
    run(loop, asyncio.sleep(0.01))
    assert exporter.get_finished_spans() == ()


def test_misuse_is_refused():
    with pytest.raises(TypeError, match="uvcore loops"):
        otel.instrument(asyncio.new_event_loop())
    loop = uvcore.new_event_loop()
    with pytest.raises(ValueError, match="slow_callback_duration"):
        otel.instrument(loop, slow_callback_duration=-1)
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        otel.instrument(loop)
    with pytest.raises(TypeError, match="PubSub"):
        otel.instrument_pubsub(object(), "x")
    with pytest.raises(TypeError, match="Queue"):
        otel.instrument_queue(object(), "x")
    with pytest.raises(RuntimeError):
        otel.instrument()  # no running loop


def test_debug_mode_still_logs_slow_callbacks_without_telemetry(caplog):
    loop = uvcore.new_event_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(loop, asyncio.sleep(0.05))
    assert any("took" in r.getMessage() and "sleep" in r.getMessage() for r in caplog.records)
