"""Debug mode: handles remember where they were created (source traceback)."""
import sys


def _line_of_call():
    return sys._getframe(1).f_lineno


def test_handle_source_traceback_ends_at_the_caller(loop):
    loop.set_debug(True)
    here = __file__
    cases = [
        (loop.call_soon(print), _line_of_call() - 0),
        (loop.call_soon_threadsafe(print), _line_of_call() - 0),
        (loop.call_later(10, print), _line_of_call() - 0),
        (loop.call_at(loop.time() + 10, print), _line_of_call() - 0),
    ]
    for handle, line in cases:
        filename, lineno, funcname = handle._source_traceback[-1][:3]
        assert (filename, funcname) == (here, "test_handle_source_traceback_ends_at_the_caller")
        assert lineno == line
        handle.cancel()
