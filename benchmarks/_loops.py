"""The event loops every benchmark compares, made by name (shared by the bench_* scripts)."""
import asyncio


def new_loop(name):
    """A new event loop of the named kind: "asyncio", "uvloop", "rloop" or "uvcore"."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop

        return rloop.new_event_loop()
    if name == "uvcore":
        import uvcore

        return uvcore.new_event_loop()
    if name in ("uvcore+otel-noop", "uvcore+otel-sdk"):
        # uvcore instrumented by uvcore.otel: with the API's no-op providers (what telemetry
        # costs when no SDK is installed), or with SDK providers that record (callbacks timed,
        # idle time accounted; spans and metrics kept in memory)
        import uvcore
        import uvcore.otel
        from opentelemetry import metrics, trace

        loop = uvcore.new_event_loop()
        if name == "uvcore+otel-noop":
            uvcore.otel.instrument(loop, tracer_provider=trace.NoOpTracerProvider(),
                                   meter_provider=metrics.NoOpMeterProvider())
        else:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider

            uvcore.otel.instrument(loop, tracer_provider=TracerProvider(),
                                   meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
        return loop
    raise ValueError(f"unknown loop {name!r}")
