"""Pipes and subprocesses for uvcore.Loop.

connect_read_pipe/connect_write_pipe put the C pipe transports (_uvcore.ReadPipeTransport /
WritePipeTransport, on a uv_pipe_t) on a pipe. Subprocesses are started by uv_spawn
(_uvcore.Process): libuv reaps the child, so no child watcher is involved; a child that needs
an option only subprocess.Popen has (preexec_fn, umask, ...) is started by Popen and watched
through a pidfd. The SubprocessTransport is asyncio's own
base_subprocess machinery (its pipe protocols, pending calls and _wait) over a small
Popen-like object, so asyncio.create_subprocess_* and Process.communicate work unchanged.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import select
import stat
import subprocess
import sys
import threading
from asyncio import base_subprocess, futures

from . import _uvcore

__all__ = []

logger = logging.getLogger("asyncio")

_SHELL = "/bin/sh"


# ---- pipes --------------------------------------------------------------------------------


class _PipeOwner:
    """Closed by the C transport when its handle closes: closes the pipe object (as asyncio's
    pipe transports do in connection_lost) and a write pipe's watcher of its reader."""

    __slots__ = ("pipe", "loop", "watch_fd")

    def __init__(self, pipe, loop):
        self.pipe = pipe
        self.loop = loop
        self.watch_fd = None

    def close(self):
        wfd, self.watch_fd = self.watch_fd, None
        if wfd is not None:
            try:
                self.loop.remove_reader(wfd)
            except Exception:  # the loop is closing: its watchers are gone already
                pass
            os.close(wfd)
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()


def _pipe_mode(pipe):
    return os.fstat(pipe.fileno()).st_mode


def _open_pipe(loop, pipe, protocol, writable):
    # libuv closes the fd it is given; the pipe object closes its own one (_PipeOwner), so
    # the transport works on a duplicate and both go at the same moment.
    owner = _PipeOwner(pipe, loop)
    fd = os.dup(pipe.fileno())
    transport = _uvcore.StreamTransport._open_pipe(loop, fd, protocol, writable, owner, {"pipe": pipe})
    if writable:
        _watch_reader(loop, transport, owner, pipe)
    return transport


def _watch_reader(loop, transport, owner, pipe):
    """A write pipe learns that its reader went away (and closes, as asyncio's does) by
    polling the fd for readability: the kernel reports an error/hang-up on the write end of a
    pipe, or EOF on a socket, once the other end is closed. The poll is on another duplicate
    because libuv allows one watcher per fd number."""
    mode = _pipe_mode(pipe)
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return
    wfd = os.dup(pipe.fileno())
    owner.watch_fd = wfd

    def reader_gone():
        if owner.watch_fd is None:
            return
        loop.remove_reader(wfd)
        if transport.get_write_buffer_size():
            transport._force_close(BrokenPipeError())
        else:
            transport._force_close(None)

    loop.add_reader(wfd, reader_gone)


def _check_pollable(fd):
    # Some character devices (/dev/null, /dev/zero) cannot be polled: libuv would abort on
    # them, asyncio's selector raises PermissionError from epoll_ctl. Ask epoll the same way.
    if not hasattr(select, "epoll"):
        return
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
    finally:
        ep.close()


async def _connect_pipe(loop, protocol_factory, pipe, writable):
    mode = _pipe_mode(pipe)
    if writable:
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
    elif not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError("Pipe transport is for pipes/sockets only.")
    fd = pipe.fileno()
    if stat.S_ISCHR(mode):
        _check_pollable(fd)
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport = _open_pipe(loop, pipe, protocol, writable)
    # connection_made (queued by the transport) runs before the waiter's result
    loop.call_soon(futures._set_result_unless_cancelled, waiter, None)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    if loop.get_debug():
        logger.debug("%s pipe %r connected: (%r, %r)", "Write" if writable else "Read",
                     fd, transport, protocol)
    return transport, protocol


# ---- subprocesses -------------------------------------------------------------------------

# Popen options uv_spawn cannot express, with the value that means "not used". A child that
# uses any of them is started by subprocess.Popen itself, exactly as asyncio starts every
# child (so preexec_fn runs between fork and exec, user/group/extra_groups/umask/process_group
# behave as Popen's, and an option the running Python's Popen lacks is its TypeError).
# close_fds is not here: libuv's child inherits only inheritable fds, which Python's fds are
# not unless asked, so both values behave alike on the uv_spawn path.
_POPEN_ONLY = {
    "preexec_fn": None,
    "umask": -1,
    "extra_groups": None,
    "process_group": None,
    "user": None,
    "group": None,
    "restore_signals": True,
    "pipesize": -1,
    "startupinfo": None,  # Windows only: Popen raises its own ValueError
    "creationflags": 0,
}


def _needs_popen(kwargs):
    for key, value in kwargs.items():
        if key in _POPEN_ONLY:
            unused = _POPEN_ONLY[key]
            if (value is not None) if unused is None else (value != unused):
                return True
        elif key not in ("executable", "cwd", "env", "start_new_session", "pass_fds", "close_fds"):
            return True  # an unknown keyword: let Popen word the TypeError, as in asyncio
    return False


def _env_list(env):
    if env is None:
        return None
    out = []
    for k, v in env.items():
        k = os.fsencode(k)
        if b"=" in k:
            raise ValueError("illegal environment variable name")
        out.append(k + b"=" + os.fsencode(v))
    return out


class _Child:
    """What asyncio's BaseSubprocessTransport expects of a Popen object, over a uv_spawn'd
    _uvcore.Process (so signals never reach a reaped, possibly reused, pid)."""

    def __init__(self, loop, args, shell, stdin, stdout, stderr, *, executable=None, cwd=None,
                 env=None, start_new_session=False, pass_fds=(), close_fds=True, on_exit,
                 **unused_popen_kwargs):
        uid = gid = -1  # user/group take the Popen path
        if shell:
            argv = [_SHELL, "-c", args]
            file = executable if executable is not None else _SHELL
        else:
            argv = list(args)
            if not argv:
                raise IndexError("list index out of range")
            file = executable if executable is not None else argv[0]
        self.args = args
        self.stdin = self.stdout = self.stderr = None
        self.returncode = None
        self._proc = None
        self._loop = loop
        self._on_exit = on_exit
        child_fds = []  # our ends given to the child, closed once it is started
        parent_fds = []
        try:
            stdio = [-1, -1, -1]
            for i, spec in enumerate((stdin, stdout, stderr)):
                if spec == subprocess.PIPE:
                    r, w = os.pipe()
                    mine, theirs = (w, r) if i == 0 else (r, w)
                    parent_fds.append(mine)
                    child_fds.append(theirs)
                    stdio[i] = theirs
                    pipe = open(mine, "wb" if i == 0 else "rb", buffering=0)
                    parent_fds.remove(mine)
                    setattr(self, ("stdin", "stdout", "stderr")[i], pipe)
                elif spec == subprocess.DEVNULL:
                    stdio[i] = -1
                elif spec == subprocess.STDOUT:
                    if i != 2:
                        raise ValueError("STDOUT can only be used for stderr")
                    stdio[2] = stdio[1]  # whatever stdout became, PIPE or DEVNULL included
                elif spec is None:
                    stdio[i] = i
                elif isinstance(spec, int):
                    if spec < 0:
                        raise ValueError(f"invalid file descriptor {spec}")
                    stdio[i] = spec
                else:
                    stdio[i] = spec.fileno()
            for fd in sorted(set(int(fd) for fd in pass_fds)):
                if fd < 3:
                    continue
                while len(stdio) < fd:
                    stdio.append(-1)  # fds >= 3 marked -1 are left alone (closed on exec)
                stdio.append(fd)
            self._proc = _uvcore.Process._spawn(
                loop, file, argv, cwd, _env_list(env), stdio, uid, gid, bool(start_new_session), on_exit
            )
        except BaseException:
            for f in (self.stdin, self.stdout, self.stderr):
                if f is not None:
                    f.close()
            for fd in parent_fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        loop._track_handle(self)

    @property
    def pid(self):
        return self._proc.pid

    @property
    def _watching(self):
        """True while the loop will report the child's exit."""
        return self._proc._watching

    def poll(self):
        if self.returncode is None:
            self.returncode = self._proc.returncode
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is not None:
            return
        if self._proc._watching:
            self._proc.send_signal(sig)
        else:
            # the loop closed while the child ran: _reap_later's thread owns it now
            os.kill(self._proc.pid, sig)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        """Popen.wait (blocking), for code that uses get_extra_info('subprocess')."""
        if self.poll() is not None:
            return self.returncode
        if timeout is not None:
            raise ValueError("uvcore's child object waits without a timeout only")
        proc = self._proc
        _, status = os.waitpid(proc.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        # the status was taken from libuv, whose exit callback will not come: tell the
        # transport from the loop instead
        on_exit = self._on_exit
        proc._loop_closing()
        if on_exit is not None and not self._loop.is_closed():
            self._loop.call_soon(on_exit, self.returncode)
        return self.returncode

    def _loop_closing(self):
        # libuv stops watching the child with the loop: reap it from a thread instead, so
        # it never becomes a zombie (asyncio's threaded child watcher does the same).
        proc = self._proc
        running = proc._watching and proc.returncode is None
        proc._loop_closing()
        if running:
            threading.Thread(target=self._reap, name=f"uvcore-reap-{proc.pid}", daemon=True).start()

    def _reap(self):
        try:
            _, status = os.waitpid(self._proc.pid, 0)
        except ChildProcessError:
            return
        self.returncode = os.waitstatus_to_exitcode(status)

    def __repr__(self):
        return f"<uvcore child pid={self._proc.pid if self._proc else None} returncode={self.returncode}>"


class _PopenChild:
    """A child started by subprocess.Popen, for the options uv_spawn lacks. The loop polls a
    pidfd for its exit (a thread waits where pidfds are missing); only Popen reaps it, so a
    signal never reaches a reused pid. Same interface as _Child."""

    def __init__(self, loop, args, shell, stdin, stdout, stderr, bufsize, *, on_exit, **kwargs):
        self._popen = subprocess.Popen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs)
        self.args = args
        self.stdin, self.stdout, self.stderr = self._popen.stdin, self._popen.stdout, self._popen.stderr
        self._loop = loop
        self._on_exit = on_exit
        self._pidfd = None
        self._waiter = None  # the thread waiting for the child where pidfds are missing
        self._reported = False
        loop._track_handle(self)
        try:
            self._pidfd = os.pidfd_open(self._popen.pid)
            loop.add_reader(self._pidfd, self._on_pidfd)
        except (AttributeError, OSError, RuntimeError):  # no pidfds (Linux < 5.3, seccomp)
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            self._waiter = threading.Thread(target=self._wait_in_thread, daemon=True,
                                            name=f"uvcore-wait-{self._popen.pid}")
            self._waiter.start()

    @property
    def pid(self):
        return self._popen.pid

    @property
    def returncode(self):
        return self._popen.returncode

    @property
    def _watching(self):
        return not self._reported and (self._pidfd is not None or self._waiter is not None)

    def poll(self):
        return self._popen.poll()

    def _on_pidfd(self):
        if self._popen.poll() is not None:
            self._report()

    def _wait_in_thread(self):
        self._popen.wait()
        try:
            self._loop.call_soon_threadsafe(self._report)
        except RuntimeError:  # the loop closed meanwhile: nobody to tell
            pass

    def _stop_watching(self):
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(fd)
            os.close(fd)

    def _report(self):
        if self._reported or self._popen.returncode is None:
            return
        self._reported = True
        self._stop_watching()
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(self._popen.returncode)

    def send_signal(self, sig):
        self._popen.send_signal(sig)  # Popen skips a child it has reaped

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        """Popen.wait (blocking), for code that uses get_extra_info('subprocess')."""
        returncode = self._popen.wait(timeout)
        if not self._reported and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._report)  # wait() may run in an executor
        return returncode

    def _loop_closing(self):
        # The loop stops watching: a thread reaps a child still running, so it never stays a
        # zombie (as _Child does).
        self._stop_watching()
        if self._popen.returncode is None and self._waiter is None:
            self._waiter = threading.Thread(target=self._popen.wait, daemon=True,
                                            name=f"uvcore-reap-{self._popen.pid}")
            self._waiter.start()

    def __repr__(self):
        return f"<uvcore child pid={self._popen.pid} returncode={self._popen.returncode} (Popen)>"


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio.SubprocessTransport on a uv_spawn'd child (or a Popen one, for the Popen-only
    options)."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        if _needs_popen(kwargs):
            self._proc = _PopenChild(self._loop, args, shell, stdin, stdout, stderr, bufsize,
                                     on_exit=self._on_exit, **kwargs)
        else:
            self._proc = _Child(self._loop, args, shell, stdin, stdout, stderr,
                                on_exit=self._on_exit, **kwargs)

    _exit_fut = None  # set while _make_subprocess_transport cleans up after a failure

    def _on_exit(self, returncode):
        if self._returncode is None and self._loop is not None:
            self._process_exited(returncode)
        fut = self._exit_fut
        if fut is not None and not fut.done():
            fut.set_result(returncode)

    # Signals go through the Process (3.13's base class would os.kill a reaped pid).
    def send_signal(self, signal):
        self._check_proc()
        self._proc.send_signal(signal)

    def terminate(self):
        self._check_proc()
        self._proc.terminate()

    def kill(self):
        self._check_proc()
        self._proc.kill()


def _check_popen_args(universal_newlines, bufsize, text, encoding, errors):
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


class SubprocessMixin:
    """Loop.connect_read_pipe/connect_write_pipe and subprocess_exec/subprocess_shell."""

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Read a pipe (or socket, or character device) with a Protocol."""
        return await _connect_pipe(self, protocol_factory, pipe, False)

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Write to a pipe (or socket, or character device) through a WriteTransport."""
        return await _connect_pipe(self, protocol_factory, pipe, True)

    async def subprocess_shell(self, protocol_factory, cmd, *, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=False, shell=True, bufsize=0,
                               encoding=None, errors=None, text=None, **kwargs):
        """Run cmd with /bin/sh; return (SubprocessTransport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():
            logger.debug("run shell command %r", cmd)
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        return transport, protocol

    async def subprocess_exec(self, protocol_factory, program, *args, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=False, shell=False, bufsize=0,
                              encoding=None, errors=None, text=None, **kwargs):
        """Run program with args (no shell); return (SubprocessTransport, protocol)."""
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():
            logger.debug("execute program %r", program)
        transport = await self._make_subprocess_transport(
            protocol, (program,) + args, False, stdin, stdout, stderr, bufsize, **kwargs)
        return transport, protocol

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        self._check_closed()
        waiter = self.create_future()
        transport = SubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                        bufsize, waiter=waiter, extra=extra, **kwargs)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            # (not transport._wait(): with a pipe that failed to connect, the transport
            # never reaches connection_lost) close() kills the child; wait for its exit.
            proc = transport._proc
            transport.close()
            if proc is not None:
                for f in (proc.stdin, proc.stdout, proc.stderr):
                    if f is not None and not f.closed:
                        f.close()  # a pipe that never got its transport
                if transport._returncode is None and proc._watching:
                    transport._exit_fut = self.create_future()
                    await transport._exit_fut
            raise
        return transport
