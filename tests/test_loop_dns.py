"""loop.getaddrinfo()/getnameinfo() run on libuv's thread pool (csrc/dns.c) and answer
exactly what the socket module answers: same tuples, same enum types, same errors."""
import asyncio
import concurrent.futures
import gc
import logging
import socket
import sys

import pytest

import uvcore

HAS_IPV6 = socket.has_ipv6


def resolve(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize(
    "host, port, kwargs",
    [
        ("localhost", 80, {}),
        ("127.0.0.1", "http", {"type": socket.SOCK_STREAM}),
        ("127.0.0.1", 0, {"family": socket.AF_INET, "proto": socket.IPPROTO_UDP}),
        (b"127.0.0.1", b"443", {}),
        ("localhost", None, {"flags": socket.AI_CANONNAME}),
        (None, 8080, {"flags": socket.AI_PASSIVE, "type": socket.SOCK_STREAM}),
        ("::1", 53, {"family": socket.AF_INET6}),
    ],
)
def test_getaddrinfo_answers_like_the_socket_module(loop, host, port, kwargs):
    if kwargs.get("family") == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6 on this host")
    flags = dict(family=0, type=0, proto=0, flags=0)
    flags.update(kwargs)
    expected = socket.getaddrinfo(host, port, flags["family"], flags["type"], flags["proto"], flags["flags"])
    got = resolve(loop, loop.getaddrinfo(host, port, **kwargs))
    assert got == expected
    # same types as socket.getaddrinfo: AddressFamily and SocketKind members
    assert [(type(f), type(t)) for f, t, *_ in got] == [(type(f), type(t)) for f, t, *_ in expected]


@pytest.mark.parametrize(
    "host, port",
    [
        ("no-such-host.invalid", 80),
        (None, None),
        (1, 80),
        ("localhost", 1.5),
        ("localhost", True),  # socket wants an exact int
        ("a\0b", 80),
        ("localhost", "no-such-service"),
    ],
)
def test_getaddrinfo_errors_are_the_socket_modules(loop, host, port):
    with pytest.raises(Exception) as expected:
        socket.getaddrinfo(host, port)
    with pytest.raises(type(expected.value)) as got:
        resolve(loop, loop.getaddrinfo(host, port))
    assert got.value.args == expected.value.args


@pytest.fixture(params=["uvcore", "asyncio"])
def any_loop(request):
    lp = uvcore.new_event_loop() if request.param == "uvcore" else asyncio.new_event_loop()
    yield lp
    lp.close()


# Names libuv's IDNA step refuses (EINVAL) but the C library answers without a network round
# trip: empty, and longer than a DNS name can be (with and without over-long labels).
REFUSED_BY_LIBUV = [
    ("", 0),
    (b"", 0),
    ("", "http"),
    ("", 80),
    ("a" * 256, 0),
    (b"a" * 256, 0),
    (b"a" * 300, 443),
    ((b"a" * 60 + b".") * 4 + b"abcdefghijklmn", 0),
    ("a." * 130, 0),
]


@pytest.mark.parametrize("host, port", REFUSED_BY_LIBUV)
def test_names_libuv_refuses_raise_the_socket_modules_gaierror(any_loop, host, port):
    with pytest.raises(Exception) as expected:
        socket.getaddrinfo(host, port)
    with pytest.raises(type(expected.value)) as got:
        resolve(any_loop, any_loop.getaddrinfo(host, port))
    assert got.value.args == expected.value.args
    assert getattr(got.value, "errno", None) == getattr(expected.value, "errno", None)
    assert str(got.value) == str(expected.value)


def test_getaddrinfo_flag_errors_carry_the_c_library_code(loop):
    with pytest.raises(socket.gaierror) as expected:
        socket.getaddrinfo("localhost", 80, 0, 0, 0, -1)
    with pytest.raises(socket.gaierror) as got:
        resolve(loop, loop.getaddrinfo("localhost", 80, flags=-1))
    assert got.value.errno == expected.value.errno
    assert str(got.value) == str(expected.value)


def test_getaddrinfo_bad_argument_types_raise_typeerror(loop):
    with pytest.raises(TypeError):
        resolve(loop, loop.getaddrinfo("localhost", 80, family="inet"))


@pytest.mark.parametrize(
    "sockaddr, flags",
    [
        (("127.0.0.1", 80), 0),
        (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        (("127.0.0.1", 53), socket.NI_DGRAM),
        (("::1", 22, 0, 0), 0),
        (("::1", 22), socket.NI_NUMERICHOST),
    ],
)
def test_getnameinfo_answers_like_the_socket_module(loop, sockaddr, flags):
    if ":" in sockaddr[0] and not HAS_IPV6:
        pytest.skip("no IPv6 on this host")
    assert resolve(loop, loop.getnameinfo(sockaddr, flags)) == socket.getnameinfo(sockaddr, flags)


@pytest.mark.parametrize(
    "sockaddr",
    [
        "127.0.0.1",
        ("127.0.0.1",),
        ("127.0.0.1", "80"),
        ("127.0.0.1", 80, 1),
        ("localhost", 80),  # getnameinfo takes numeric hosts only
        ("::1", 80, 1 << 21),
        ("::1", 80, 0, 0, 0),
    ],
)
def test_getnameinfo_errors_are_the_socket_modules(loop, sockaddr):
    with pytest.raises(Exception) as expected:
        socket.getnameinfo(sockaddr, 0)
    with pytest.raises(type(expected.value)) as got:
        resolve(loop, loop.getnameinfo(sockaddr))
    assert got.value.args == expected.value.args


class RefusingExecutor(concurrent.futures.ThreadPoolExecutor):
    def submit(self, *args, **kwargs):
        raise AssertionError("name resolution must not use the default executor")


def test_lookups_do_not_use_the_default_executor(loop):
    executor = RefusingExecutor()
    loop.set_default_executor(executor)
    try:
        assert resolve(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))
        assert resolve(loop, loop.getnameinfo(("127.0.0.1", 80)))[1] == "http"
    finally:
        executor.shutdown()


def test_many_concurrent_lookups_all_complete(loop):
    async def main():
        lookups = [loop.getaddrinfo("localhost", port, type=socket.SOCK_STREAM) for port in range(1, 201)]
        return await asyncio.gather(*lookups)

    answers = resolve(loop, main())
    assert [infos[0][4][1] for infos in answers] == list(range(1, 201))


def test_cancelled_lookup_is_withdrawn_and_frees_its_request(loop):
    async def main():
        tasks = [asyncio.ensure_future(loop.getaddrinfo("localhost", 80)) for _ in range(50)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        # lookups a worker had already started still complete later, into a done future
        await asyncio.sleep(0.2)
        return await loop.getaddrinfo("localhost", 80)

    assert resolve(loop, main())
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is uvcore._uvcore.DnsRequest]


def test_wait_for_timeout_cancels_the_lookup(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.getaddrinfo("localhost", 80), 0)

    resolve(loop, main())


def test_closing_the_loop_with_a_lookup_in_flight_is_clean():
    loop = uvcore.new_event_loop()
    futures = []

    async def start():
        for _ in range(20):
            futures.append(asyncio.ensure_future(loop.getaddrinfo("localhost", 80)))

    loop.run_until_complete(start())
    loop.close()  # requests still queued are withdrawn; running ones are waited for
    assert loop.is_closed()
    # every request finished or was withdrawn (none still holds its in-flight reference);
    # the tasks awaiting them stay pending, as tasks of a closed asyncio loop do
    requests = [o for o in gc.get_objects() if type(o) is uvcore._uvcore.DnsRequest]
    assert requests and all(repr(r) == "<DnsRequest done>" for r in requests)
    assert not any(fut.done() for fut in futures)
    with pytest.raises(RuntimeError, match="closed"):
        uvcore._uvcore._getaddrinfo(loop, concurrent.futures.Future(), b"localhost", b"80", 0, 0, 0, 0)


def test_debug_mode_logs_each_lookup(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        resolve(loop, loop.getaddrinfo("localhost", 80))
    assert any("Getting address info localhost:80 took" in r.getMessage() for r in caplog.records)


def test_dns_request_cannot_be_made_directly():
    with pytest.raises(TypeError):
        uvcore._uvcore.DnsRequest()


def test_internal_entry_points_check_the_loop():
    fut = concurrent.futures.Future()
    with pytest.raises(TypeError, match="uvcore Loop"):
        uvcore._uvcore._getaddrinfo(object(), fut, b"localhost", b"80", 0, 0, 0, 0)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux resolver")
def test_create_connection_by_name_resolves_on_the_thread_pool(loop):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        executor = RefusingExecutor()
        loop.set_default_executor(executor)
        try:
            reader, writer = await asyncio.open_connection("localhost", port, family=socket.AF_INET)
            writer.close()
            await writer.wait_closed()
        finally:
            executor.shutdown()
            server.close()
            await server.wait_closed()

    resolve(loop, main())


# ---- numeric hosts: answered at once, no thread-pool round trip --------------------------

NUMERIC_CASES = [
    ("127.0.0.1", 80, {}),
    ("127.0.0.1", "80", {"type": socket.SOCK_STREAM}),
    (b"127.0.0.1", b"443", {"family": socket.AF_INET}),
    ("127.0.0.1", None, {"flags": socket.AI_CANONNAME}),
    ("10.1.2.3", 0, {"proto": socket.IPPROTO_UDP}),
    ("127.0.0.1", 80, {"flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}),
    ("127.0.0.1", 80, {"family": int(socket.AF_INET), "type": int(socket.SOCK_DGRAM)}),
    ("::1", 53, {}),
    ("fe80::1", 53, {"family": socket.AF_INET6, "type": socket.SOCK_STREAM}),
    ("::ffff:127.0.0.1", 8080, {}),
]


def answer_now(coro):
    """The coroutine's result if it finishes without waiting on anything."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the lookup waited for the loop")


@pytest.mark.parametrize("host, port, kwargs", NUMERIC_CASES)
def test_numeric_getaddrinfo_answers_like_the_socket_module_without_a_round_trip(loop, host, port, kwargs):
    if (":" in str(host)) and not HAS_IPV6:
        pytest.skip("no IPv6 on this host")
    args = dict(family=0, type=0, proto=0, flags=0)
    args.update(kwargs)
    expected = socket.getaddrinfo(host, port, args["family"], args["type"], args["proto"], args["flags"])
    first = resolve(loop, loop.getaddrinfo(host, port, **kwargs))
    assert first == expected
    again = answer_now(loop.getaddrinfo(host, port, **kwargs))
    assert again == expected
    assert [type(x) for x in again[0][:2]] == [type(x) for x in expected[0][:2]]


def test_numeric_answers_are_fresh_lists(loop):
    first = resolve(loop, loop.getaddrinfo("127.0.0.1", 80))
    first.clear()
    assert resolve(loop, loop.getaddrinfo("127.0.0.1", 80)) == socket.getaddrinfo("127.0.0.1", 80)


@pytest.mark.parametrize(
    "host, port, kwargs",
    [
        ("127.0.0.1", 80, {"family": socket.AF_INET6}),  # the C library's EAI_ADDRFAMILY/NONAME
        ("127.0.0.1", 80.0, {}),  # not an int or str port
        ("127.0.0.1", True, {}),
        ("127.0.0.1", 80, {"type": 2.0}),
    ],
)
def test_numeric_getaddrinfo_errors_are_the_socket_modules(loop, host, port, kwargs):
    args = dict(family=0, type=0, proto=0, flags=0)
    args.update(kwargs)
    with pytest.raises(Exception) as expected:
        socket.getaddrinfo(host, port, args["family"], args["type"], args["proto"], args["flags"])
    for _ in range(2):  # the second call must not find a cached answer either
        with pytest.raises(type(expected.value)) as got:
            resolve(loop, loop.getaddrinfo(host, port, **kwargs))
        assert got.value.args == expected.value.args


def test_numeric_fast_path_keys_keep_80_and_a_float_apart(loop):
    assert resolve(loop, loop.getaddrinfo("127.0.0.1", 80)) == socket.getaddrinfo("127.0.0.1", 80)
    with pytest.raises(OSError, match="Int or String expected"):
        resolve(loop, loop.getaddrinfo("127.0.0.1", 80.0))


def test_scoped_and_non_literal_hosts_still_use_the_thread_pool(loop):
    coro = loop.getaddrinfo("localhost", 80)
    fut = coro.send(None)  # waits on the lookup's future
    assert fut is not None
    coro.close()
    assert uvcore._loop._is_numeric_lookup(b"fe80::1%lo", b"80", 0) is False
    assert uvcore._loop._is_numeric_lookup(b"127.0.0.1", b"http", 0) is False
    assert uvcore._loop._is_numeric_lookup(b"127.0.0.1", b"80", socket.AI_ADDRCONFIG) is False
    assert uvcore._loop._is_numeric_lookup(b"127.0.0.1", None, 0) is True
