"""Popen-only subprocess options (preexec_fn, umask, process_group, user, group, extra_groups,
restore_signals, pipesize): uvcore starts such a child with subprocess.Popen, as asyncio
starts every child, and watches its exit through a pidfd. Each test runs on asyncio's own
loop too: the behaviour to match is asyncio's."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import uvcore

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

REPORT = (
    "import json, os, sys\n"
    "old = os.umask(0)\n"
    "json.dump({'pid': os.getpid(), 'cwd': os.getcwd(), 'umask': old, 'sid': os.getsid(0),\n"
    "           'pgid': os.getpgid(0), 'uid': os.getuid(), 'gid': os.getgid(),\n"
    "           'groups': sorted(os.getgroups())}, sys.stdout)\n"
)


@pytest.fixture(params=["uvcore", "asyncio"])
def any_loop(request):
    lp = uvcore.new_event_loop() if request.param == "uvcore" else asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


async def report(**kwargs):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REPORT, stdout=subprocess.PIPE, **kwargs)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return json.loads(out)


def test_preexec_fn_runs_in_the_child_before_exec(any_loop, tmp_path):
    r, w = os.pipe()

    def preexec():
        os.chdir(tmp_path)  # the exec'd program starts there
        os.write(w, str(os.getpid()).encode())

    try:
        info = run(any_loop, report(preexec_fn=preexec))
        os.close(w)
        w = -1
        ran_in = int(os.read(r, 100))
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert info["cwd"] == str(tmp_path)
    assert ran_in == info["pid"] != os.getpid()
    assert os.getcwd() != str(tmp_path)


def test_preexec_fn_that_raises_fails_the_call_as_popen_does(any_loop):
    def boom():
        raise ValueError("no")

    with pytest.raises(subprocess.SubprocessError) as info:
        run(any_loop, asyncio.create_subprocess_exec(sys.executable, "-c", "pass", preexec_fn=boom))
    assert str(info.value) == "Exception occurred in preexec_fn."


def test_preexec_fn_with_subprocess_shell(any_loop, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "pwd", stdout=subprocess.PIPE, preexec_fn=lambda: os.chdir(tmp_path))
        out, _ = await proc.communicate()
        return out.decode().strip(), proc.returncode

    assert run(any_loop, main()) == (str(tmp_path), 0)


def test_umask(any_loop):
    assert run(any_loop, report(umask=0o027))["umask"] == 0o027


@pytest.mark.parametrize("popen_path", [False, True], ids=["uv_spawn", "popen"])
def test_start_new_session(any_loop, popen_path):
    extra = {"umask": 0o022} if popen_path else {}
    info = run(any_loop, report(start_new_session=True, **extra))
    assert info["sid"] == info["pid"] != os.getsid(0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Popen has process_group from 3.11")
def test_process_group(any_loop):
    info = run(any_loop, report(process_group=0))
    assert info["pgid"] == info["pid"] != os.getpgid(0)
    assert info["sid"] == os.getsid(0)


def test_user_group_and_extra_groups(any_loop):
    kwargs = {"user": "nobody", "group": 65534, "extra_groups": [65534], "cwd": "/"}

    async def ids():
        # /bin/sh: nobody may not reach this checkout's interpreter
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "id -u; id -g; id -G", stdout=subprocess.PIPE, **kwargs)
        out, _ = await proc.communicate()
        return out.decode().split("\n")[:3], proc.returncode

    if IS_ROOT:
        assert run(any_loop, ids()) == (["65534", "65534", "65534"], 0)
    else:
        with pytest.raises(PermissionError):
            run(any_loop, ids())


def test_unknown_user_is_popens_error(any_loop):
    with pytest.raises(KeyError):
        run(any_loop, report(user="no-such-user-uvcore"))


def test_unknown_option_is_popens_type_error(any_loop):
    with pytest.raises(TypeError) as got:
        run(any_loop, report(bogus=1))
    with pytest.raises(TypeError) as expected:
        subprocess.Popen(["true"], bogus=1)
    assert str(got.value) == str(expected.value)


def test_popen_child_pipes_signals_and_exit_status(any_loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, umask=0o022)
        out, _ = await proc.communicate(b"hello" * 10000)
        assert (out, proc.returncode) == (b"HELLO" * 10000, 0)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)", umask=0o022)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == -signal.SIGTERM
        with pytest.raises(ProcessLookupError):  # a finished child, as asyncio
            proc.kill()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "raise SystemExit(7)", preexec_fn=lambda: None)
        return await proc.wait()

    assert run(any_loop, main()) == 7


def test_subprocess_protocol_on_a_popen_child(any_loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.out = bytearray()
            self.done = any_loop.create_future()

        def pipe_data_received(self, fd, data):
            self.out += data

        def process_exited(self):
            self.done.set_result(None)

    async def main():
        transport, proto = await any_loop.subprocess_exec(
            Proto, sys.executable, "-c", "print('out')", stdin=None, stderr=None, umask=0o022)
        await proto.done
        code = transport.get_returncode()
        pid = transport.get_pid()
        transport.close()
        return code, pid, bytes(proto.out)

    code, pid, out = run(any_loop, main())
    assert code == 0 and pid > 0
    assert out in (b"", b"out\n")  # process_exited may come before the pipe's last data


def test_closing_the_loop_with_a_popen_child_running_leaves_no_zombie():
    loop = uvcore.new_event_loop()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(0.2)", umask=0o022)
        return proc.pid

    pid = loop.run_until_complete(main())
    loop.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")


def test_without_pidfds_a_thread_waits_for_the_child(loop, monkeypatch):
    def no_pidfd(pid, flags=0):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('x')", stdout=subprocess.PIPE, umask=0o022)
        out, _ = await proc.communicate()
        return out, proc.returncode

    assert loop.run_until_complete(asyncio.wait_for(main(), 30)) == (b"x\n", 0)


def test_popen_children_leave_no_fds_behind(loop):
    def nfds():
        return len(os.listdir("/proc/self/fd"))

    async def one():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(1)", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=lambda: None)
        await proc.communicate(b"x")

    async def main():
        await one()
        before = nfds()
        await asyncio.gather(*(one() for _ in range(10)))
        await asyncio.sleep(0.05)
        return before, nfds()

    before, after = loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert after <= before


def test_blocking_wait_on_the_child_object_reports_the_exit(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "raise SystemExit(3)", umask=0o022)
        child = proc._transport.get_extra_info("subprocess")
        code = await loop.run_in_executor(None, child.wait)
        return code, await asyncio.wait_for(proc.wait(), 10)

    assert loop.run_until_complete(asyncio.wait_for(main(), 30)) == (3, 3)
