"""loop.subprocess_exec / subprocess_shell on uv_spawn, and asyncio.create_subprocess_* on top."""
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import warnings

import pytest

import uvcore

T = 20  # seconds any single wait may take
PY = sys.executable
PIPE = asyncio.subprocess.PIPE


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, T))


def test_communicate_both_ways_with_large_data_and_return_code(loop):
    data = os.urandom(2 * 1024 * 1024)
    code = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d[::-1]); " \
           "sys.stderr.write('done'); sys.exit(7)"

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        assert p.pid > 0 and p.returncode is None
        out, err = await p.communicate(data)
        assert out == data[::-1]
        assert err == b"done"
        assert p.returncode == 7

    run(loop, main())


def test_shell_command_output_and_stderr_to_stdout(loop):
    async def main():
        p = await asyncio.create_subprocess_shell("echo out; echo err 1>&2; exit 3",
                                                  stdout=PIPE, stderr=subprocess.STDOUT)
        out, err = await p.communicate()
        assert err is None
        assert sorted(out.split()) == [b"err", b"out"]
        assert p.returncode == 3

    run(loop, main())


def test_kill_and_terminate_give_minus_signal(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30")
        p.kill()
        assert await p.wait() == -signal.SIGKILL
        p = await asyncio.create_subprocess_exec("sleep", "30")
        p.terminate()
        assert await p.wait() == -signal.SIGTERM
        p = await asyncio.create_subprocess_exec("sleep", "30")
        p.send_signal(signal.SIGINT)
        assert await p.wait() == -signal.SIGINT
        with pytest.raises(ProcessLookupError):  # asyncio's answer once the child is done
            p.kill()

    run(loop, main())


def test_closing_stdin_ends_a_reading_child(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        p.stdin.write(b"abc")
        await p.stdin.drain()
        p.stdin.close()
        assert await p.stdout.read() == b"abc"
        assert await p.wait() == 0

    run(loop, main())


def test_child_that_exits_before_reading_stdin(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "pass", stdin=PIPE, stdout=PIPE)
        # the stdin pipe notices its reader is gone; communicate hides the BrokenPipeError
        out, _ = await p.communicate(b"x" * (4 * 1024 * 1024))
        assert out == b""
        assert p.returncode == 0
        # and wait() alone returns although stdin was never closed by us
        p = await asyncio.create_subprocess_exec("true", stdin=PIPE)
        assert await p.wait() == 0

    run(loop, main())


def test_cancelled_communicate_leaves_the_child_killable(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE)
        task = asyncio.ensure_future(p.communicate())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        p.kill()
        assert await p.wait() == -signal.SIGKILL

    run(loop, main())


def test_stdio_devnull_fds_files_and_inherit(loop):
    async def main():
        with tempfile.TemporaryFile() as f:
            p = await asyncio.create_subprocess_exec(
                PY, "-c", "import sys; print('to file'); sys.stderr.write('x')",
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL)
            assert await p.wait() == 0
            f.seek(0)
            assert f.read() == b"to file\n"
        r, w = os.pipe()
        p = await asyncio.create_subprocess_exec("echo", "fd", stdout=w, stdin=None, stderr=None)
        os.close(w)
        assert await p.wait() == 0
        assert os.read(r, 100) == b"fd\n"
        os.close(r)
        p = await asyncio.create_subprocess_exec(PY, "-c", "import sys; print(len(sys.stdin.read()))",
                                                 stdin=subprocess.DEVNULL, stdout=PIPE)
        assert (await p.communicate())[0] == b"0\n"

    run(loop, main())


def test_cwd_env_and_start_new_session(loop):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            code = "import os; print(os.getcwd(), os.environ['UVC_X'], os.getsid(0) == os.getpid())"
            p = await asyncio.create_subprocess_exec(
                PY, "-c", code, stdout=PIPE, cwd=d, env={"UVC_X": "yes"}, start_new_session=True)
            out, _ = await p.communicate()
            assert out.split() == [os.path.realpath(d).encode(), b"yes", b"True"]

    run(loop, main())


def test_pass_fds_reaches_the_child_at_the_same_number(loop):
    async def main():
        r, w = os.pipe()
        p = await asyncio.create_subprocess_exec(
            PY, "-c", f"import os; os.write({w}, b'via pass_fds')", pass_fds=(w,))
        assert await p.wait() == 0
        os.close(w)
        assert os.read(r, 100) == b"via pass_fds"
        os.close(r)

    run(loop, main())


def test_protocol_level_api(loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.events = []
            self.data = {1: b"", 2: b""}
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.events.append("made")

        def pipe_data_received(self, fd, data):
            self.data[fd] += data

        def pipe_connection_lost(self, fd, exc):
            self.events.append(("pipe_lost", fd))

        def process_exited(self):
            self.events.append("exited")

        def connection_lost(self, exc):
            self.events.append("lost")
            self.done.set_result(exc)

    async def main():
        tr, proto = await loop.subprocess_exec(Proto, PY, "-c", "import sys; sys.stdout.write(sys.stdin.read())")
        assert isinstance(tr, asyncio.SubprocessTransport)
        assert tr.get_pid() > 0 and tr.get_returncode() is None
        stdin = tr.get_pipe_transport(0)
        assert tr.get_pipe_transport(1) is not None and tr.get_pipe_transport(3) is None
        stdin.write(b"echoed")
        stdin.close()
        assert await proto.done is None
        assert tr.get_returncode() == 0
        assert proto.data[1] == b"echoed"
        assert proto.events[0] == "made" and proto.events[-1] == "lost"
        assert "exited" in proto.events
        assert await tr._wait() == 0
        tr.close()
        with pytest.raises(ProcessLookupError):
            tr.kill()  # the transport is done with the child

    run(loop, main())


def test_missing_program_and_bad_cwd_raise_oserror(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program")
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("true", cwd="/nonexistent/dir")
        with pytest.raises(PermissionError):
            await asyncio.create_subprocess_exec("/dev/null")

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
        ({"bufsize": 4096}, "bufsize must be 0"),
        ({"shell": True}, "shell must be False"),
    ],
)
def test_bad_arguments_raise_as_asyncio(loop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(loop, loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs))


def test_bad_shell_arguments_raise_as_asyncio(loop):
    with pytest.raises(ValueError, match="cmd must be a string"):
        run(loop, loop.subprocess_shell(asyncio.SubprocessProtocol, ["echo", "x"]))
    with pytest.raises(ValueError, match="shell must be True"):
        run(loop, loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False))
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        run(loop, loop.subprocess_shell(asyncio.SubprocessProtocol, "true", bogus=1))
    with pytest.raises(TypeError):
        run(loop, loop.subprocess_exec(asyncio.SubprocessProtocol, 42))


def test_many_processes_leave_no_fds_behind(loop):
    def nfds():
        return len(os.listdir("/proc/self/fd"))

    async def one():
        p = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        await p.communicate()

    run(loop, one())
    gc.collect()
    before = nfds()
    for _ in range(50):
        run(loop, one())
    gc.collect()
    assert nfds() <= before


def test_closing_the_loop_with_a_live_process_then_closing_its_transport(loop):
    async def start():
        return await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30", stdin=PIPE)

    tr, _ = run(loop, start())
    pid = tr.get_pid()
    loop.close()  # pipes closed, the child no longer watched by libuv: a thread reaps it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.close()  # kills the child, as asyncio's transport does
        del tr
        gc.collect()
    # the reaper thread collects the killed child: no zombie is left
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        import time
        time.sleep(0.05)
    else:
        pytest.fail("the killed child was never reaped")


def test_uvcore_run_with_subprocesses_in_a_new_loop():
    async def main():
        p = await asyncio.create_subprocess_shell("printf ok", stdout=PIPE)
        return (await p.communicate())[0]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert uvcore.run(main()) == b"ok"


def test_subprocesses_in_a_loop_outside_the_main_thread():
    # no child watcher: a loop in any thread can run children
    import threading

    result = {}

    def worker():
        async def main():
            p = await asyncio.create_subprocess_exec(PY, "-c", "print(6 * 7)", stdout=PIPE)
            return (await p.communicate())[0], p.returncode

        result["value"] = uvcore.run(main())

    t = threading.Thread(target=worker)
    t.start()
    t.join(T)
    assert result["value"] == (b"42\n", 0)


def test_transport_repr_and_extra_info(loop):
    async def main():
        tr, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, "cat", stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        assert f"pid={tr.get_pid()}" in repr(tr) and "running" in repr(tr)
        child = tr.get_extra_info("subprocess")
        assert child.pid == tr.get_pid() and child.poll() is None
        assert tr.get_pipe_transport(0).get_extra_info("pipe") is child.stdin
        tr.close()  # kills the running child
        assert await tr._wait() == -signal.SIGKILL
        assert "returncode=-9" in repr(tr)

    run(loop, main())


def test_small_stream_limit_pauses_the_stdout_pipe_and_loses_nothing(loop):
    size = 1024 * 1024
    code = f"import sys; sys.stdout.buffer.write(bytes(range(256)) * {size // 256})"

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, limit=1024)
        stdout_pipe = p._transport.get_pipe_transport(1)
        got = bytearray()
        paused_seen = False
        while True:
            chunk = await p.stdout.read(512)
            if not chunk:
                break
            got += chunk
            paused_seen = paused_seen or not stdout_pipe.is_reading()
        assert await p.wait() == 0
        assert bytes(got) == bytes(range(256)) * (size // 256)
        assert paused_seen  # the StreamReader's limit paused the C pipe transport

    run(loop, main())
