"""The loop's exception handler runs in the context of the callback that failed."""
import contextvars

request_id = contextvars.ContextVar("request_id", default="none")


def test_handler_sees_the_failing_callbacks_context(loop):
    seen = []

    def handler(lp, context):
        seen.append((request_id.get(), type(context["exception"]), context["handle"] is not None))

    def callback():
        request_id.set("req-42")
        raise ValueError("boom")

    loop.set_exception_handler(handler)
    loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [("req-42", ValueError, True)]
    assert request_id.get() == "none"  # the callback's context did not leak out


def test_handler_sees_the_failing_timer_callbacks_context(loop):
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "timer-ctx")

    def handler(lp, context):
        seen.append(request_id.get())

    def callback():
        raise ValueError("boom")

    loop.set_exception_handler(handler)
    loop.call_later(0.001, callback, context=ctx)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["timer-ctx"]
