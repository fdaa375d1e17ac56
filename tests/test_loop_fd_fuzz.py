"""Fuzz: watched fds closed, duplicated and reused at random points around add_reader /
add_writer, the sock_* helpers and transports, for thousands of steps.

The run happens in a child process so that an abort (libuv's reaction to a closed fd) or a
hang is reported as such, with the seed that reproduces it. Defaults keep it to a few seconds
for CI and the ASan run; UVCORE_FD_FUZZ_STEPS and UVCORE_FD_FUZZ_SEEDS make it longer, e.g.
UVCORE_FD_FUZZ_STEPS=200000 UVCORE_FD_FUZZ_SEEDS=1,2,3,4 pytest tests/test_loop_fd_fuzz.py
"""
import os
import subprocess
import sys
import textwrap

import pytest

STEPS = int(os.environ.get("UVCORE_FD_FUZZ_STEPS", "3000"))
SEEDS = [int(s) for s in os.environ.get("UVCORE_FD_FUZZ_SEEDS", "1,2").split(",")]
TIMEOUT = 120 + STEPS // 100

CHILD = textwrap.dedent(
    r'''
    import asyncio, errno, os, random, socket, sys
    import uvcore

    seed, steps, kind, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    rng = random.Random(seed)

    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            if rng.random() < 0.5 and not self.transport.is_closing():
                self.transport.write(data[:64])

    async def main(loop):
        stats = dict.fromkeys(["fired", "closed", "reused", "dup", "sock_ops",
                               "transports", "accepted", "polls"], 0)
        socks = []        # socket objects we own (some closed under their watchers)
        raw = []          # raw fds we own (dups, pipe ends)
        freed = []        # numbers we closed, candidates for deliberate reuse
        tasks = []
        transports = []

        def fired():
            stats["fired"] += 1

        server = await loop.create_server(Proto, "127.0.0.1", 0)
        base = open_fds()  # after the first listen: libuv keeps a spare fd for EMFILE
        address = server.sockets[0].getsockname()
        clients = []

        def any_fd():
            pool = [s for s in socks if s.fileno() >= 0] + raw
            return rng.choice(pool) if pool else None

        def close_one():
            if socks and rng.random() < 0.6:
                s = socks.pop(rng.randrange(len(socks)))
                if s.fileno() >= 0:
                    freed.append(s.fileno())
                s.close()
            elif raw:
                fd = raw.pop(rng.randrange(len(raw)))
                freed.append(fd)
                os.close(fd)
            stats["closed"] += 1

        def reuse_one():
            # put a new file exactly on a number closed under a watcher
            if not freed or not (socks or raw):
                return
            num = freed.pop(rng.randrange(len(freed)))
            a, b = socket.socketpair()  # first: it may take num itself
            try:
                os.fstat(num)
                a.close()
                b.close()
                return  # taken meanwhile (the loop, an accepted connection, this pair)
            except OSError:
                pass
            os.dup2(a.fileno(), num)
            a.close()
            new = socket.socket(fileno=num)
            new.setblocking(False)
            socks.extend([new, b])
            b.setblocking(False)
            stats["reused"] += 1

        for step in range(steps):
            op = rng.randrange(16)
            try:
                if op == 0 or len(socks) + len(raw) < 4:
                    a, b = socket.socketpair()
                    a.setblocking(False)
                    b.setblocking(False)
                    socks.extend([a, b])
                elif op == 1:
                    target = any_fd()
                    if target is not None:
                        loop.add_reader(target, fired)
                elif op == 2:
                    target = any_fd()
                    if target is not None:
                        loop.add_writer(target, fired)
                elif op == 3:
                    target = any_fd()
                    if target is not None:
                        (loop.remove_reader if rng.random() < 0.5 else loop.remove_writer)(target)
                elif op in (4, 5):
                    close_one()
                elif op == 6:
                    reuse_one()
                elif op == 7:
                    target = any_fd()
                    if target is not None:
                        fd = os.dup(target if isinstance(target, int) else target.fileno())
                        raw.append(fd)
                        stats["dup"] += 1
                        if rng.random() < 0.5:
                            loop.add_reader(fd, fired)
                elif op == 8:
                    live = [s for s in socks if s.fileno() >= 0]
                    if live:
                        s = rng.choice(live)
                        what = rng.randrange(3)
                        if what == 0:
                            coro = loop.sock_recv(s, 100)
                        elif what == 1:
                            coro = loop.sock_sendall(s, b"x" * rng.choice([10, 300000]))
                        else:
                            coro = loop.sock_recv_into(s, bytearray(50))
                        tasks.append(asyncio.ensure_future(coro))
                        stats["sock_ops"] += 1
                        if rng.random() < 0.3:
                            loop.call_soon(s.close)
                elif op == 9:
                    c = socket.socket()
                    c.setblocking(False)
                    socks.append(c)
                    tasks.append(asyncio.ensure_future(loop.sock_connect(c, address)))
                    stats["sock_ops"] += 1
                    if rng.random() < 0.5:
                        loop.call_soon(c.close)
                elif op == 10:
                    live = [s for s in socks if s.fileno() >= 0 and s.type == socket.SOCK_STREAM]
                    if live and rng.random() < 0.5:
                        s = live[rng.randrange(len(live))]
                        socks.remove(s)  # the transport owns it now
                        try:
                            t, _ = await loop.create_connection(Proto, sock=s)
                        except BaseException:
                            socks.append(s)  # refused (e.g. the fd is watched): still ours
                            raise
                        transports.append(t)
                        stats["transports"] += 1
                    elif transports:
                        t = transports.pop(rng.randrange(len(transports)))
                        (t.close if rng.random() < 0.5 else t.abort)()
                elif op == 11:
                    if transports:
                        t = rng.choice(transports)
                        if not t.is_closing():
                            t.write(b"y" * rng.choice([1, 1000, 200000]))
                            if rng.random() < 0.3:
                                t.pause_reading()
                            elif t.is_reading() is False:
                                t.resume_reading()
                elif op == 12:
                    # a connection the server accepts in libuv: its fd is new to the loop
                    if len(clients) < 20:
                        c = socket.socket()
                        c.setblocking(False)
                        try:
                            c.connect(address)
                        except (BlockingIOError, InterruptedError):
                            pass
                        clients.append(c)
                        stats["accepted"] += 1
                    else:
                        clients.pop(0).close()
                elif op == 13:
                    live = [s for s in socks if s.fileno() >= 0]
                    if live:
                        try:
                            rng.choice(live).send(b"z")
                        except OSError:
                            pass
                elif op == 14 and tasks:
                    rng.choice(tasks).cancel()
                else:
                    await asyncio.sleep(0)
                    stats["polls"] += 1
            except (OSError, ValueError, RuntimeError):
                # misuse the loop refuses the way asyncio would (closed socket objects,
                # fd used by a transport, EBADF from the socket module) is fine
                pass
            if step % 50 == 0:
                tasks = [t for t in tasks if not t.done()]
        # wind down: no task may hang
        for t in tasks:
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for t in transports:
            t.abort()
        for s in socks:
            try:
                loop.remove_reader(s)
                loop.remove_writer(s)
            except (ValueError, OSError, RuntimeError):
                pass
            s.close()
        for fd in raw:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            os.close(fd)
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        # the server's side of the last connections closes once it sees their EOF: wait for
        # the count (bounded; a real leak fails the check after loop.close() below)
        deadline = loop.time() + 10
        while open_fds() > base and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return stats

    uvcore.new_event_loop().close()  # libuv's process-wide signal pipe, made once
    fds0 = open_fds()
    loop = uvcore.new_event_loop() if kind == "uvcore" else asyncio.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    stats = loop.run_until_complete(asyncio.wait_for(main(loop), timeout))
    loop.close()
    leaked = open_fds() - fds0
    unexpected = [c for c in errors if not isinstance(c.get("exception"), OSError)]
    print("stats", stats, "leaked", leaked, "handler_calls", len(errors))
    assert leaked <= 0, f"{leaked} fds leaked"
    assert not unexpected, unexpected[:3]
    '''
)


@pytest.mark.parametrize("seed", SEEDS)
def test_closing_duping_and_reusing_watched_fds_never_aborts_hangs_or_leaks(seed):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(seed), str(STEPS), "uvcore", str(TIMEOUT - 10)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    report = f"seed={seed} steps={STEPS} rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    assert "stats" in proc.stdout, report
