"""uvcore.otel: OpenTelemetry for a uvcore loop (the `uvcore[otel]` extra: opentelemetry-api).

    telemetry = uvcore.otel.instrument()          # inside the loop, or instrument(loop)
    uvcore.otel.instrument_pubsub(bus, "chat")    # PubSub stats as metrics
    uvcore.otel.instrument_queue(jobs, "jobs")    # Queue stats as metrics

Spans: a ready callback (task step, call_soon, timer) that runs longer than
``loop.slow_callback_duration`` becomes a ``uvcore.slow_callback`` span; every context that
reaches ``loop.call_exception_handler`` (unhandled exceptions of tasks, callbacks,
transports) becomes a ``uvcore.unhandled_exception`` span with the exception recorded.
Metrics (observable instruments, read only when the SDK collects): the loop's iterations,
callbacks run, ready queue length, live timers, fd watchers, libuv's active handles and its
idle time; PubSub and Queue stats. The counters are kept in C at all times (one increment
each); the costs that are not free are paid only with an SDK provider: callbacks are timed
only when the tracer provider is a real one, libuv's idle-time accounting (an extra
non-blocking poll before each blocking one) only when the meter provider is. A failing
exporter, processor or instrument never reaches the loop: errors are counted in
``telemetry.errors`` and logged once.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from . import _loop

__all__ = ["LoopTelemetry", "instrument", "uninstrument", "instrument_pubsub", "instrument_queue"]

logger = logging.getLogger("uvcore.otel")
_SCOPE = "uvcore"
_VERSION = "0.1.0"


def _is_real(provider: object, api_module: str) -> bool:
    """A provider from an SDK, not the API's no-op or proxy (what you get with none set)."""
    return not type(provider).__module__.startswith(api_module)


class _Registry:
    """The instruments of one meter provider, and what they observe (weakly: an instrumented
    loop, PubSub or Queue that goes away just stops being reported)."""

    def __init__(self, provider: metrics.MeterProvider) -> None:
        self.loops: "weakref.WeakKeyDictionary[Any, Dict[str, str]]" = weakref.WeakKeyDictionary()
        self.pubsubs: "weakref.WeakKeyDictionary[Any, Dict[str, str]]" = weakref.WeakKeyDictionary()
        self.queues: "weakref.WeakKeyDictionary[Any, Dict[str, str]]" = weakref.WeakKeyDictionary()
        self.errors = 0
        meter = provider.get_meter(_SCOPE, _VERSION)
        loop_fields: List[tuple[str, int, Callable[..., Any], str, str]] = [
            ("uvcore.loop.iterations", 0, meter.create_observable_counter, "{iteration}", "loop iterations"),
            ("uvcore.loop.callbacks", 1, meter.create_observable_counter, "{callback}",
             "ready callbacks run (task steps, call_soon, timers)"),
            ("uvcore.loop.ready", 2, meter.create_observable_gauge, "{callback}", "ready queue length"),
            ("uvcore.loop.timers", 3, meter.create_observable_gauge, "{timer}", "scheduled timers"),
            ("uvcore.loop.fd_watchers", 4, meter.create_observable_gauge, "{fd}", "add_reader/add_writer fds"),
            ("uvcore.loop.handles", 5, meter.create_observable_gauge, "{handle}",
             "libuv active handles (transports, servers, timers, processes)"),
        ]
        for name, index, factory, unit, description in loop_fields:
            factory(name, callbacks=[self._loop_callback(index)], unit=unit, description=description)
        meter.create_observable_counter("uvcore.loop.idle_time", callbacks=[self._idle_time], unit="s",
                                        description="time libuv spent waiting in the poll")
        for key, kind in (("channels", "gauge"), ("patterns", "gauge"), ("subscribers", "gauge"),
                          ("published", "counter"), ("delivered", "counter"), ("dropped", "counter")):
            factory = meter.create_observable_gauge if kind == "gauge" else meter.create_observable_counter
            factory(f"uvcore.pubsub.{key}", callbacks=[self._pubsub_callback(key)], unit="1",
                    description=f"PubSub.stats()['{key}']")
        for key, description in (("size", "items in the queue"), ("unfinished", "items not task_done() yet"),
                                 ("getters", "get() calls waiting"), ("putters", "put() calls waiting")):
            meter.create_observable_gauge(f"uvcore.queue.{key}", callbacks=[self._queue_callback(key)],
                                          unit="1", description=description)

    def _guard(self, produce: Callable[[], Iterable[Observation]]) -> Iterable[Observation]:
        try:
            return list(produce())
        except Exception:  # an observation must never fail the SDK's collection
            self.errors += 1
            if self.errors == 1:
                logger.exception("uvcore telemetry: observing failed (reported once)")
            return []

    def _loop_callback(self, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return self._guard(lambda: [Observation(loop._metrics()[index], attrs)
                                        for loop, attrs in list(self.loops.items()) if not loop.is_closed()])
        return observe

    def _idle_time(self, options: CallbackOptions) -> Iterable[Observation]:
        def produce() -> Iterable[Observation]:
            for loop, attrs in list(self.loops.items()):
                if not loop.is_closed():
                    idle = loop._metrics()[6]
                    if idle is not None:
                        yield Observation(idle / 1e9, attrs)
        return self._guard(produce)

    def _pubsub_callback(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return self._guard(lambda: [Observation(bus.stats()[key], attrs)
                                        for bus, attrs in list(self.pubsubs.items()) if not bus.closed])
        return observe

    def _queue_callback(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        read: Dict[str, Callable[[Any], int]] = {
            "size": lambda q: q.qsize(),
            "unfinished": lambda q: q._unfinished_tasks,
            "getters": lambda q: len(q._getters),
            "putters": lambda q: len(q._putters),
        }
        get = read[key]

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return self._guard(lambda: [Observation(get(q), attrs) for q, attrs in list(self.queues.items())])
        return observe


_registries: Dict[int, tuple[metrics.MeterProvider, _Registry]] = {}
_registries_lock = threading.Lock()


def _registry(meter_provider: Optional[metrics.MeterProvider]) -> Optional[_Registry]:
    """The registry of this meter provider (made once), or None for the API's no-op one."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    if isinstance(provider, metrics.NoOpMeterProvider):
        return None
    with _registries_lock:
        entry = _registries.get(id(provider))
        if entry is None or entry[0] is not provider:
            entry = (provider, _Registry(provider))
            _registries[id(provider)] = entry
        return entry[1]


class LoopTelemetry:
    """One instrumented loop: what instrument() returns. `spans` / `timed` / `idle_time` say
    what is on; `errors` counts telemetry failures kept away from the loop."""

    def __init__(self, loop: "_loop.Loop", tracer_provider: Optional[trace.TracerProvider],
                 meter_provider: Optional[metrics.MeterProvider], name: str) -> None:
        self.loop = loop
        self.attributes = {"uvcore.loop": name}
        tracer_provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        meter_provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self._tracer = tracer_provider.get_tracer(_SCOPE, _VERSION)
        self.spans = not isinstance(tracer_provider, trace.NoOpTracerProvider)
        # Timing every callback is the one per-callback cost: only for a provider that records.
        self.timed = _is_real(tracer_provider, "opentelemetry.trace")
        self.idle_time = _is_real(meter_provider, "opentelemetry.metrics")
        self._registry = _registry(meter_provider)
        self._errors = 0

    @property
    def errors(self) -> int:
        return self._errors + (self._registry.errors if self._registry is not None else 0)

    def _failed(self) -> None:
        self._errors += 1
        if self._errors == 1:
            logger.exception("uvcore telemetry: recording a span failed (reported once)")

    def _slow_callback(self, what: str, seconds: float) -> None:
        if not self.spans:
            return
        try:
            end = time.time_ns()
            span = self._tracer.start_span(
                "uvcore.slow_callback", start_time=end - int(seconds * 1e9),
                attributes={**self.attributes, "uvcore.callback": what, "uvcore.duration_s": seconds},
            )
            span.end(end_time=end)
        except Exception:
            self._failed()

    def _unhandled_exception(self, context: Mapping[str, Any]) -> None:
        if not self.spans:
            return
        try:
            attributes: Dict[str, Any] = {**self.attributes,
                                          "uvcore.message": str(context.get("message", "Unhandled exception"))}
            for key in ("task", "future", "handle", "protocol", "transport"):
                if context.get(key) is not None:
                    attributes[f"uvcore.{key}"] = repr(context[key])[:1000]
            with self._tracer.start_as_current_span("uvcore.unhandled_exception", attributes=attributes,
                                                    record_exception=False, set_status_on_exception=False) as span:
                exc = context.get("exception")
                if isinstance(exc, BaseException):
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                else:
                    span.set_status(Status(StatusCode.ERROR, attributes["uvcore.message"]))
        except Exception:
            self._failed()

    def uninstrument(self) -> None:
        """Stop the spans and metrics of this loop (libuv's idle-time accounting stays on)."""
        if self.loop._uvc_telemetry is self:
            self.loop._uvc_telemetry = None
            if not self.loop.is_closed():
                self.loop._set_telemetry(False, False)
        if self._registry is not None:
            self._registry.loops.pop(self.loop, None)


def instrument(loop: Optional[asyncio.AbstractEventLoop] = None, *,
               tracer_provider: Optional[trace.TracerProvider] = None,
               meter_provider: Optional[metrics.MeterProvider] = None,
               slow_callback_duration: Optional[float] = None,
               name: Optional[str] = None) -> LoopTelemetry:
    """Report `loop` (default: the running loop) to OpenTelemetry; the global providers
    unless others are given. Set the providers before this call: with none set (the API's
    proxies) or no-op ones, callbacks are not timed and idle time is not accounted.
    `slow_callback_duration` sets loop.slow_callback_duration (seconds, default 0.1)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if not isinstance(loop, _loop.Loop):
        raise TypeError(f"uvcore.otel instruments uvcore loops, not {type(loop).__name__}")
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    if slow_callback_duration is not None:
        if not slow_callback_duration >= 0:
            raise ValueError(f"slow_callback_duration must be >= 0, not {slow_callback_duration!r}")
        loop.slow_callback_duration = slow_callback_duration
    previous = loop._uvc_telemetry
    if previous is not None:
        previous.uninstrument()
    telemetry = LoopTelemetry(loop, tracer_provider, meter_provider, name or f"loop-{id(loop):x}")
    loop._set_telemetry(telemetry.timed, telemetry.idle_time)
    loop._uvc_telemetry = telemetry
    if telemetry._registry is not None:
        telemetry._registry.loops[loop] = telemetry.attributes
    return telemetry


def uninstrument(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Undo instrument() on `loop` (default: the running loop)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    telemetry = getattr(loop, "_uvc_telemetry", None)
    if telemetry is not None:
        telemetry.uninstrument()


def instrument_pubsub(bus: Any, name: str, *, meter_provider: Optional[metrics.MeterProvider] = None) -> None:
    """Report `bus.stats()` (channels, patterns, subscribers, published, delivered, dropped)
    as uvcore.pubsub.* metrics with the attribute uvcore.pubsub=name."""
    if not callable(getattr(bus, "stats", None)):
        raise TypeError(f"instrument_pubsub needs a uvcore.PubSub, not {type(bus).__name__}")
    registry = _registry(meter_provider)
    if registry is not None:
        registry.pubsubs[bus] = {"uvcore.pubsub": name}


def instrument_queue(queue: Any, name: str, *, meter_provider: Optional[metrics.MeterProvider] = None) -> None:
    """Report a uvcore (or asyncio) Queue's size, unfinished tasks and waiting getters and
    putters as uvcore.queue.* gauges with the attribute uvcore.queue=name."""
    if not all(hasattr(queue, attr) for attr in ("qsize", "_unfinished_tasks", "_getters", "_putters")):
        raise TypeError(f"instrument_queue needs a uvcore or asyncio Queue, not {type(queue).__name__}")
    registry = _registry(meter_provider)
    if registry is not None:
        registry.queues[queue] = {"uvcore.queue": name}
