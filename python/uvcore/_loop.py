"""uvcore.Loop: the asyncio event loop API over the C core in _uvcore.Loop.

The C base class does the hot work (call_soon, timers, the run loop, fd watchers); this
module adds the cold paths that asyncio users expect: run_forever's set-up, exception
handling and its log text, executors, signal handlers, socket helpers, asyncgen hooks.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import itertools
import logging
import operator
import os
import signal
import socket
import sys
import threading
import traceback
import warnings
import weakref
from asyncio import events, futures, tasks

from . import _uvcore
from ._net import NetworkMixin
from ._subprocess import SubprocessMixin
from ._udp import DatagramMixin, LiveHandlesMixin

__all__ = ["Loop", "new_event_loop", "run", "EventLoopPolicy", "install"]

logger = logging.getLogger("asyncio")

_HAS_RUNNER = sys.version_info >= (3, 11)


def _debug_from_env() -> bool:
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


def _fd_of(sock):
    return sock if isinstance(sock, int) else sock.fileno()


class Loop(LiveHandlesMixin, _uvcore.Loop, NetworkMixin, DatagramMixin, SubprocessMixin, asyncio.AbstractEventLoop):
    """An asyncio event loop on libuv. Create it with uvcore.new_event_loop()."""

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._signal_handlers = {}
        self._signal_sockets = None
        self._saved_wakeup_fd = None  # the wake-up fd to give back while ours is installed
        self._fd_waiters = {}  # watcher handle -> the sock_* future it completes
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self.set_debug(_debug_from_env())

    def __repr__(self):
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # ---- running ---------------------------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )
        self._install_signal_wakeup()
        events._set_running_loop(self)
        try:
            self._run()
        finally:
            events._set_running_loop(None)
            self._after_run_signal_wakeup()
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future):
        """Run until the future (or coroutine, wrapped in a Task) is done; return its result."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # A task created here: don't log "exception was never retrieved" for it.
            future._log_destroy_pending = False
        future.add_done_callback(_stop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # it is re-raised below; mark it retrieved
            raise
        finally:
            future.remove_done_callback(_stop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self):
        """Close the loop: drop pending callbacks, release libuv, shut the executor down."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._release_signal_wakeup()
        self._close()
        if self._signal_sockets is not None:
            for s in self._signal_sockets:
                s.close()
            self._signal_sockets = None
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(events._DEBUG_STACK_DEPTH if hasattr(events, "_DEBUG_STACK_DEPTH") else 10)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    def set_debug(self, enabled):
        super().set_debug(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # ---- debug helpers called from C ---------------------------------------------------

    def _check_callback_debug(self, callback, method):
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")

    def _capture_source_traceback(self, handle):
        # Called from the C method (which has no Python frame): frame 1 is its caller.
        handle._source_traceback = traceback.extract_stack(sys._getframe(1))

    # uvcore.otel's LoopTelemetry while the loop is instrumented (slow callbacks and
    # unhandled exceptions become spans); None costs one attribute read on cold paths.
    _uvc_telemetry = None

    def _log_slow_callback(self, handle, seconds):
        # asyncio's text (base_events._format_handle): a task's step names the Task
        owner = getattr(handle._callback, "__self__", None)
        what = repr(owner) if isinstance(owner, tasks.Task) else str(handle)
        telemetry = self._uvc_telemetry
        if telemetry is not None:
            telemetry._slow_callback(what, seconds)
        if self.get_debug():
            logger.warning("Executing %s took %.3f seconds", what, seconds)

    # ---- signals ---------------------------------------------------------------------

    def _install_signal_wakeup(self, retry=True):
        """Route signals through a socketpair libuv polls, so Ctrl+C and add_signal_handler
        work while the loop blocks. Main thread only, as Python's signal module requires.
        The wake-up fd found before ours is kept in _saved_wakeup_fd and given back by
        _release_signal_wakeup: a loop must never leave its own (soon closed) socket installed."""
        if threading.current_thread() is not threading.main_thread():
            return
        if self._signal_sockets is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._signal_sockets = (rsock, wsock)
        rsock, wsock = self._signal_sockets
        try:
            old = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            return
        if self._saved_wakeup_fd is None:
            self._saved_wakeup_fd = old
        try:
            self._set_signal_wakeup(rsock.fileno(), self._dispatch_signals)
        except OSError:
            # Our socketpair was closed behind our back (e.g. by os.closerange), its numbers
            # perhaps reused: forget it without closing those numbers again, start afresh.
            self._release_signal_wakeup()
            for s in self._signal_sockets:
                s.detach()
            self._signal_sockets = None
            if not retry:
                raise
            self._install_signal_wakeup(retry=False)

    def _release_signal_wakeup(self):
        """Stop polling our socketpair and give back the wake-up fd we found (if ours is in)."""
        self._clear_signal_wakeup()
        saved, self._saved_wakeup_fd = self._saved_wakeup_fd, None
        if saved is None:
            return
        try:
            signal.set_wakeup_fd(saved)
        except (ValueError, OSError):
            # the fd we found was closed meanwhile: leave none rather than a stale one
            try:
                signal.set_wakeup_fd(-1)
            except ValueError:
                pass

    def _after_run_signal_wakeup(self):
        # Signal handlers added with add_signal_handler keep our socket installed between
        # runs, so their signals are not lost; otherwise the previous fd comes back.
        if self._signal_handlers:
            self._clear_signal_wakeup()
        else:
            self._release_signal_wakeup()

    def _dispatch_signals(self, data: bytes):
        for signum in data:
            handle = self._signal_handlers.get(signum)
            if handle is None:
                continue
            if handle.cancelled():
                self.remove_signal_handler(signum)
            else:
                self.call_soon(handle._run)

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        """Call callback(*args) in the loop when signal sig arrives (main thread only)."""
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("add_signal_handler() works only in the main thread")
        handle = _uvcore.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            # Our wakeup socket must receive the signal number even before run_forever.
            if self._signal_sockets is None or not self.is_running():
                self._install_signal_wakeup()
            signal.signal(sig, _signal_handler)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler for sig; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers and not self.is_running():
            self._release_signal_wakeup()
        return True

    # ---- exceptions ------------------------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the error described by context, as asyncio does."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else False
        if "source_traceback" not in context and getattr(self, "_current_handle", None) is not None:
            tb = self._current_handle._source_traceback
            if tb:
                context["handle_traceback"] = tb
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                value = "Object created at (most recent call last):\n" + "".join(
                    traceback.format_list(value)
                ).rstrip()
            elif key == "handle_traceback":
                value = "Handle created at (most recent call last):\n" + "".join(
                    traceback.format_list(value)
                ).rstrip()
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Pass context to the custom handler if one is set, else to the default handler."""
        telemetry = self._uvc_telemetry
        if telemetry is not None:
            telemetry._unhandled_exception(context)
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            # Run the handler in the context of what failed (task, future or handle),
            # so it sees the contextvars the failing code set (as asyncio 3.12+ does).
            ctx = None
            thing = context.get("task")
            if thing is None:
                thing = context.get("future")
            if thing is None:
                thing = context.get("handle")
            if thing is not None and hasattr(thing, "get_context"):
                ctx = thing.get_context()
            if ctx is not None:
                ctx.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an unexpected "
                    "error in custom exception handler",
                    exc_info=True,
                )

    # ---- executors -------------------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        """Run func(*args) in executor (the default thread pool if None); await the result."""
        self._check_closed()
        if self.get_debug():
            self._check_callback_debug(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="uvcore")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        """Wait for the default executor's threads to finish (up to timeout seconds)."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        future = self.create_future()

        def shutdown():
            try:
                executor.shutdown(wait=True)
                self.call_soon_threadsafe(_set_result_unless_cancelled, future, None)
            except BaseException as exc:
                self.call_soon_threadsafe(_set_exception_unless_cancelled, future, exc)

        thread = threading.Thread(target=shutdown, name="uvcore-executor-shutdown")
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn(
                f"The executor did not finish joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()

    # ---- DNS: libuv's thread pool (csrc/dns.c) ------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        # Numeric host and port: the answer is the C library's own, asked once on the loop
        # thread (no lookup happens) and kept; no round trip through the thread pool.
        key = _uvcore._addrinfo_key(host, port, family, type, proto, flags)
        if key is not None:
            infos = _numeric_answers.get(key)
            if infos is not None and not self.get_debug():
                return infos.copy()
        host_arg, port_arg = _addrinfo_args(host, port)
        if host_arg is None and port_arg is None:
            # libuv refuses this call; the C library answers it at once with EAI_NONAME
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        debug = self.get_debug()  # debug mode logs every lookup, so it takes the full path
        if key is not None and not debug and _is_numeric_lookup(host_arg, port_arg, flags):
            infos = socket.getaddrinfo(host, port, family, type, proto, flags)
            if len(_numeric_answers) >= _NUMERIC_ANSWERS_MAX:
                _numeric_answers.clear()
            _numeric_answers[key] = infos
            return infos.copy()
        started = self.time() if debug else 0.0
        try:
            infos = await self._dns_lookup(
                _uvcore._getaddrinfo, host_arg, port_arg, family, type, proto, flags
            )
        except OSError as exc:
            if exc.errno != errno.EINVAL or isinstance(exc, socket.gaierror):
                raise
            # libuv's IDNA step refuses names the C library answers itself (empty, over 255
            # bytes, not UTF-8) with EINVAL; ask the C library as asyncio does, off the loop.
            infos = await self.run_in_executor(
                None, socket.getaddrinfo, host, port, family, type, proto, flags
            )
        if debug:
            _log_slow_lookup(self, f"{host}:{port!r}", started, infos)
        return [
            (_as_enum(af, socket.AddressFamily), _as_enum(kind, socket.SocketKind), pr, canon, addr)
            for af, kind, pr, canon, addr in infos
        ]

    async def getnameinfo(self, sockaddr, flags=0):
        address = _nameinfo_address(sockaddr)
        return await self._dns_lookup(_uvcore._getnameinfo, *address, flags)

    async def _dns_lookup(self, start, *args):
        future = self.create_future()
        request = start(self, future, *args)
        try:
            return await future
        except asyncio.CancelledError:
            request.cancel()  # frees the pool thread unless a worker already runs it
            raise

    # ---- asyncgens -------------------------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning,
                source=self,
            )
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self):
        """Close every async generator still alive that was started on this loop."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    # ---- low-level socket operations (non-blocking sockets) ---------------------------

    def _check_sock(self, sock):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"a socket.socket is expected, got {type(sock).__name__}")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _watch_fd(self, fut, fd, writer, callback, *args):
        """Call callback(*args) whenever fd is readable (writable) until fut is done.

        When fut is done the watcher is removed, unless another sock_* call took the fd
        over meanwhile: its add_reader/add_writer cancelled our handle, and removing the fd
        would leave that call waiting forever (e.g. a recv cancelled and retried at once).
        """
        if writer:
            handle = self.add_writer(fd, callback, *args)
            remove = self.remove_writer
        else:
            handle = self.add_reader(fd, callback, *args)
            remove = self.remove_reader

        def done(_f):
            self._fd_waiters.pop(handle, None)
            if not handle.cancelled() and not self.is_closed():
                remove(fd)

        self._fd_waiters[handle] = fut
        fut.add_done_callback(done)

    def _fd_watchers_dropped(self, handles):
        """Called by the C core with the watchers it dropped because their fd was closed
        (or closed and reused) while watched. A sock_* call waiting on one fails with
        EBADF, as the socket call itself would, rather than waiting forever."""
        for handle in handles:
            fut = self._fd_waiters.pop(handle, None)
            if fut is not None and not fut.done():
                fut.set_exception(OSError(errno.EBADF, os.strerror(errno.EBADF)))

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket."""
        self._check_sock(sock)
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_fd(fut, fd, False, _sock_io, fut, sock, "recv", (n,))
        return await fut

    async def sock_recv_into(self, sock, buf):
        """Receive into buf from a non-blocking socket; return the byte count."""
        self._check_sock(sock)
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_fd(fut, fd, False, _sock_io, fut, sock, "recv_into", (buf,))
        return await fut

    async def sock_recvfrom(self, sock, bufsize):
        self._check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_fd(fut, fd, False, _sock_io, fut, sock, "recvfrom", (bufsize,))
        return await fut

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        self._check_sock(sock)
        nbytes = nbytes or len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_fd(fut, fd, False, _sock_io, fut, sock, "recvfrom_into", (buf, nbytes))
        return await fut

    async def sock_sendall(self, sock, data):
        """Send all of data on a non-blocking socket."""
        self._check_sock(sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        fd = sock.fileno()
        view = memoryview(data).cast("B")
        pos = [n]

        def on_writable():
            if fut.done():
                return
            try:
                sent = sock.send(view[pos[0]:])
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                fut.set_exception(exc)
                return
            pos[0] += sent
            if pos[0] == len(view):
                fut.set_result(None)

        self._watch_fd(fut, fd, True, on_writable)
        return await fut

    async def sock_sendto(self, sock, data, address):
        self._check_sock(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_fd(fut, fd, True, _sock_io, fut, sock, "sendto", (data, address))
        return await fut

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket to address (resolving host names first)."""
        self._check_sock(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Numeric addresses need no resolver round trip: the connect starts in this
            # step, as asyncio's does (code may rely on it, e.g. accept() right after).
            infos = await self._resolve(address, family=sock.family, type=sock.type, proto=sock.proto)
            if not infos:
                raise OSError(f"getaddrinfo({address!r}) returned an empty list")
            address = infos[0][4] if len(address) <= 2 else (infos[0][4][0], *address[1:])
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()

        def on_connected():
            if fut.done():
                return
            try:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err != 0:
                    raise OSError(err, f"Connect call failed {address}")
            except (BlockingIOError, InterruptedError):
                return  # not finished yet: wait for the next writable event
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # e.g. the socket was closed meanwhile: getsockopt raises OSError(EBADF)
                fut.set_exception(exc)
            else:
                fut.set_result(None)

        self._watch_fd(fut, fd, True, on_connected)
        try:
            return await fut
        finally:
            fut = None  # break the cycle through the exception's traceback

    async def sock_accept(self, sock):
        """Accept a connection on a listening non-blocking socket: (conn, address)."""
        self._check_sock(sock)
        fut = self.create_future()
        fd = sock.fileno()

        def on_readable():
            if fut.done():
                return
            try:
                conn, address = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result((conn, address))

        try:
            conn, address = sock.accept()
            conn.setblocking(False)
            return conn, address
        except (BlockingIOError, InterruptedError):
            pass
        self._watch_fd(fut, fd, False, on_readable)
        return await fut

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        if not fallback:
            raise asyncio.SendfileNotAvailableError("uvcore's sock_sendfile uses the send fallback")
        file.seek(offset)
        total = 0
        while count is None or total < count:
            chunk = file.read(min(65536, count - total) if count is not None else 65536)
            if not chunk:
                break
            await self.sock_sendall(sock, chunk)
            total += len(chunk)
        file.seek(offset + total)
        return total


def _sock_io(fut, sock, method, args):
    """A readiness callback of sock_recv & co: retry the socket call named method."""
    if fut.done():
        return
    try:
        result = getattr(sock, method)(*args)
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _signal_handler(signum, frame):
    """Signals with a loop handler are delivered through the wakeup fd; this only tells a loop
    busy with ready callbacks (which skips polls that cannot find anything) to poll it."""
    _uvcore._note_signal()


def _stop_when_done(fut):
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # The loop is stopping with this exception; don't stop it a second time.
            return
    fut.get_loop().stop()


def _set_result_unless_cancelled(fut, result):
    if not fut.cancelled():
        fut.set_result(result)


def _set_exception_unless_cancelled(fut, exc):
    if not fut.cancelled():
        fut.set_exception(exc)


def new_event_loop() -> Loop:
    """A new uvcore loop; usable as asyncio.Runner(loop_factory=uvcore.new_event_loop)."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy if sys.version_info < (3, 14) else object):
    """asyncio policy whose loops are uvcore loops: asyncio.set_event_loop_policy(...)."""

    def _loop_factory(self):
        return new_event_loop()

    def new_event_loop(self):
        return new_event_loop()


def install():
    """Make uvcore the default loop for asyncio.run() and asyncio.new_event_loop()."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run the coroutine main on a new uvcore loop and close it, like asyncio.run()."""
    if _HAS_RUNNER:
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_legacy(main, debug)


def _run_legacy(main, debug):
    if events._get_running_loop() is not None:
        raise RuntimeError("uvcore.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop):
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during uvcore.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


# ---- DNS argument checks: the socket module's rules and messages ----------------------


def _addrinfo_args(host, port):
    """host and port as the bytes (or None) the C library takes, checked as socket does."""
    if host is None or isinstance(host, bytes):
        host_arg = host
    elif isinstance(host, str):
        host_arg = host.encode("idna")
    else:
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    if type(port) is int:
        port_arg = str(port).encode()
    elif isinstance(port, str):
        port_arg = port.encode()
    elif port is None or isinstance(port, bytes):
        port_arg = port
    else:
        raise OSError("Int or String expected")
    # the C library reads up to the first NUL, as socket.getaddrinfo() passes it
    if host_arg is not None and b"\0" in host_arg:
        host_arg = host_arg.split(b"\0", 1)[0]
    if port_arg is not None and b"\0" in port_arg:
        port_arg = port_arg.split(b"\0", 1)[0]
    return host_arg, port_arg


# getaddrinfo answers for numeric hosts and ports, by _uvcore._addrinfo_key(...)
_numeric_answers: dict = {}
_NUMERIC_ANSWERS_MAX = 1024


def _is_numeric_lookup(host_arg, port_arg, flags):
    """True when the C library answers without any lookup and always alike: an IPv4/IPv6
    literal (no %scope: interface names can change), a numeric or no port, and no
    AI_ADDRCONFIG (which depends on the configured interfaces)."""
    if host_arg is None or flags & socket.AI_ADDRCONFIG:
        return False
    if port_arg is not None and not (port_arg.isdigit() and port_arg.isascii()):
        return False
    try:
        host = host_arg.decode("ascii")
    except UnicodeDecodeError:
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def _as_enum(value, enum):
    try:
        return enum(value)
    except ValueError:
        return value


def _nameinfo_address(sockaddr):
    """(family, numeric host, port, flowinfo, scope_id) for getnameinfo, or socket's error."""
    # socket.getnameinfo checks the argument with the running Python's own messages; with
    # numeric-only flags it never reaches a resolver, so this costs no lookup.
    socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    host, port, flowinfo, scope_id = (sockaddr + (0, 0))[:4]
    port = operator.index(port)
    infos = socket.getaddrinfo(host, str(port), socket.AF_UNSPEC, socket.SOCK_DGRAM, 0,
                               socket.AI_NUMERICHOST)
    family, _, _, _, addr = infos[0]
    return int(family), addr[0], port, operator.index(flowinfo), operator.index(scope_id)


def _log_slow_lookup(loop, what, started, infos):
    elapsed = loop.time() - started
    level = logging.INFO if elapsed >= loop.slow_callback_duration else logging.DEBUG
    logger.log(level, "Getting address info %s took %.3f ms: %r", what, elapsed * 1e3, infos)
