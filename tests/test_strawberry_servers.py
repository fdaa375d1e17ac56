"""uvcore.strawberry's shared subscriptions in real servers with real GraphQL clients: FastAPI
on uvicorn and aiohttp, gql over graphql-transport-ws and the legacy graphql-ws, on uvcore's
loop and asyncio's (one test also on uvloop). The server runs in the test's own loop on a
free port. Scopes (here the tenant in each connection's init payload) never see each other's
events; errors and completion reach every member; members come and go without disturbing
the others; 1,000 clients churning leave the broker and the registry empty."""
from __future__ import annotations

import asyncio
import json
import random
import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional

import pytest
import strawberry
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

import uvcore
from uvcore.strawberry import Shared

pytestmark = pytest.mark.timeout(180)

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"


class Tally:
    sources = 0
    executions = 0


def tenant_of(info: strawberry.Info, arguments: Dict[str, Any]) -> str:
    return info.context["connection_params"]["tenant"]


@strawberry.type
class Tick:
    n: int
    tenant: str

    @strawberry.field
    def label(self) -> str:
        Tally.executions += 1
        return f"{self.tenant}:{self.n}"

    @strawberry.field
    def fragile(self) -> Optional[int]:
        if self.n < 0:
            raise ValueError("negative tick")
        return self.n


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription(extensions=[Shared(scope=tenant_of)])
    async def ticks(self, info: strawberry.Info, topic: str = "t") -> AsyncGenerator[Tick, None]:
        Tally.sources += 1
        tenant = info.context["tenant"]  # the scope's context: the tenant, nothing per connection
        async with info.context["bus"].subscribe(f"{tenant}.{topic}") as sub:
            async for n in sub:
                if n == "raise":
                    raise RuntimeError("the source broke")
                if n == "end":
                    return
                yield Tick(n=n, tenant=tenant)


schema = strawberry.Schema(query=Query, subscription=Subscription)
TICKS = GraphQLRequest("subscription($topic: String! = \"t\") { ticks(topic: $topic) { n label } }")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, kind: str, bus: Any) -> None:
        self.kind = kind
        self.bus = bus
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/graphql"
        self.view: Any = None

    def scope_context(self, tenant: str) -> Dict[str, Any]:
        return {"tenant": tenant, "bus": self.bus}

    def registry(self) -> Any:
        return self.view.cohort_registry()


@asynccontextmanager
async def serve(kind: str) -> AsyncIterator[Server]:
    bus = uvcore.PubSub()
    server = Server(kind, bus)
    if kind == "fastapi":
        import uvicorn
        from fastapi import FastAPI

        from uvcore.strawberry.fastapi import GraphQLRouter

        server.view = GraphQLRouter(schema, scope_context_getter=server.scope_context)
        app = FastAPI()
        app.include_router(server.view, prefix="/graphql")
        config = uvicorn.Config(app, host="127.0.0.1", port=server.port, loop="none", log_level="warning",
                                lifespan="off")
        uv = uvicorn.Server(config)
        uv.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # uvicorn < 0.29
        task = asyncio.ensure_future(uv.serve())
        while not uv.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield server
        finally:
            uv.should_exit = True
            await task
    else:
        from aiohttp import web

        from uvcore.strawberry.aiohttp import GraphQLView

        server.view = GraphQLView(schema=schema, scope_context_getter=server.scope_context)
        app = web.Application()
        app.router.add_route("*", "/graphql", server.view)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", server.port).start()
        try:
            yield server
        finally:
            await runner.cleanup()
    await bus.aclose()


def gql_client(server: Server, tenant: str, protocol: str = TRANSPORT_WS) -> Client:
    return Client(transport=WebsocketsTransport(url=server.url, subprotocols=[protocol], init_payload={"tenant": tenant}))


class Listener:
    """A gql subscription consumed in the background: what it received, how it ended."""

    def __init__(self, server: Server, tenant: str, protocol: str = TRANSPORT_WS, **variables: Any) -> None:
        self.client = gql_client(server, tenant, protocol)
        self.variables = variables
        self.received: List[Dict[str, Any]] = []
        self.error: Optional[BaseException] = None
        self.ended = asyncio.Event()
        self.task: Optional[asyncio.Task] = None

    async def start(self) -> "Listener":
        session = await self.client.connect_async()

        async def consume() -> None:
            try:
                async for data in session.subscribe(GraphQLRequest(TICKS, variable_values=self.variables)):
                    self.received.append(data["ticks"])
            except TransportQueryError as exc:
                self.error = exc
            finally:
                self.ended.set()

        self.task = asyncio.ensure_future(consume())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close_async()


async def until(condition, timeout: float = 20.0) -> None:
    """Polls a cheap in-process condition (no I/O), as a test's wait with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.005)


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvcore":
        return uvcore.new_event_loop()
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(loop_name: str, coro) -> Any:
    loop = new_loop(loop_name)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 150))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


SERVERS = ["fastapi", "aiohttp"]


@pytest.mark.parametrize("loop_name", ["uvcore", "asyncio", "uvloop"])
@pytest.mark.parametrize("kind", SERVERS)
def test_one_execution_per_event_for_clients_on_both_protocols(kind, loop_name):
    async def scenario():
        Tally.sources = Tally.executions = 0
        async with serve(kind) as server:
            listeners = [await Listener(server, "acme", protocol).start()
                         for protocol in (TRANSPORT_WS, LEGACY_WS, TRANSPORT_WS, LEGACY_WS)]
            await until(lambda: server.registry().stats() == {"cohorts": 1, "members": 4}
                        and server.bus.stats()["subscribers"] == 1)
            for n in (1, 2, 3):
                await server.bus.publish("acme.t", n)
            await until(lambda: all(len(listener.received) == 3 for listener in listeners))
            for listener in listeners:
                assert listener.received == [{"n": n, "label": f"acme:{n}"} for n in (1, 2, 3)]
            assert Tally.sources == 1
            assert Tally.executions == 3  # once per event, for four subscribers
            for listener in listeners:
                await listener.stop()
            await until(lambda: server.bus.stats()["subscribers"] == 0)
            assert server.registry().stats() == {"cohorts": 0, "members": 0}

    run(loop_name, scenario())


@pytest.mark.parametrize("kind", SERVERS)
def test_two_tenants_never_receive_each_others_events(kind):
    async def scenario():
        async with serve(kind) as server:
            acme = [await Listener(server, "acme", protocol).start() for protocol in (TRANSPORT_WS, LEGACY_WS)]
            globex = [await Listener(server, "globex", protocol).start() for protocol in (TRANSPORT_WS, LEGACY_WS)]
            # The same document and variables: two cohorts only because the scopes differ.
            await until(lambda: server.registry().stats() == {"cohorts": 2, "members": 4}
                        and server.bus.stats()["subscribers"] == 2)
            await server.bus.publish("acme.t", 1)
            await server.bus.publish("globex.t", 2)
            await server.bus.publish("acme.t", 3)
            await until(lambda: all(len(l.received) == 2 for l in acme) and all(len(l.received) == 1 for l in globex))
            await asyncio.sleep(0.05)  # a wrongly routed copy would have arrived by now
            for listener in acme:
                assert listener.received == [{"n": 1, "label": "acme:1"}, {"n": 3, "label": "acme:3"}]
            for listener in globex:
                assert listener.received == [{"n": 2, "label": "globex:2"}]
            for listener in acme + globex:
                await listener.stop()

    run("uvcore", scenario())


ERROR_QUERY = 'subscription { ticks(topic: "e") { n fragile } }'


async def raw_subscriber(server: Server, tenant: str, protocol: str, op_id: str, query: str):
    """A raw WebSocket client: returns the socket once its subscription is sent."""
    ws = await websockets.connect(server.url, subprotocols=[protocol])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"tenant": tenant}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    start = "subscribe" if protocol == TRANSPORT_WS else "start"
    await ws.send(json.dumps({"id": op_id, "type": start, "payload": {"query": query}}))
    return ws


async def recv(ws: Any, timeout: float = 20) -> Dict[str, Any]:
    """The next message that is not a graphql-ws keep-alive."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message.get("type") != "ka":
            return message


async def messages_until_complete(ws: Any, op_id: str) -> List[Dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if message.get("type") == "ka":
            continue
        assert message.get("id") == op_id, message
        seen.append(message)
        if message["type"] in ("complete", "error"):
            return seen


@pytest.mark.parametrize("kind", SERVERS)
def test_field_error_source_error_and_source_end_reach_every_member(kind):
    async def scenario():
        async with serve(kind) as server:
            members = [(await raw_subscriber(server, "acme", protocol, f"op-{i}", ERROR_QUERY), protocol, f"op-{i}")
                       for i, protocol in enumerate((TRANSPORT_WS, LEGACY_WS, TRANSPORT_WS))]
            await until(lambda: server.registry().stats()["members"] == 3 and server.bus.stats()["subscribers"] == 1)
            await server.bus.publish("acme.e", -1)  # a field error in the selection set
            await server.bus.publish("acme.e", 4)
            await server.bus.publish("acme.e", "raise")  # the source raises: the stream ends
            for ws, protocol, op_id in members:
                seen = await messages_until_complete(ws, op_id)
                data_type = "next" if protocol == TRANSPORT_WS else "data"
                assert [m["type"] for m in seen] == [data_type] * 3 + ["complete"]
                field_error, fine, broken = (m["payload"] for m in seen[:3])
                assert field_error["data"] == {"ticks": {"n": -1, "fragile": None}}
                assert field_error["errors"][0]["message"] == "negative tick"
                assert field_error["errors"][0]["path"] == ["ticks", "fragile"]
                assert fine == {"data": {"ticks": {"n": 4, "fragile": 4}}}
                assert broken["data"] is None and broken["errors"][0]["message"] == "the source broke"
                await ws.close()
            await until(lambda: server.bus.stats()["subscribers"] == 0)
            assert server.registry().stats() == {"cohorts": 0, "members": 0}

            # A source that ends completes every member the same way.
            members = [(await raw_subscriber(server, "acme", protocol, "again", ERROR_QUERY), protocol)
                       for protocol in (TRANSPORT_WS, LEGACY_WS)]
            await until(lambda: server.registry().stats()["members"] == 2 and server.bus.stats()["subscribers"] == 1)
            await server.bus.publish("acme.e", "end")
            for ws, protocol in members:
                assert [m["type"] for m in await messages_until_complete(ws, "again")] == ["complete"]
                await ws.close()

    run("uvcore", scenario())


@pytest.mark.parametrize("kind", SERVERS)
def test_complete_disconnect_and_abort_of_one_member_leave_the_others_receiving(kind):
    async def scenario():
        async with serve(kind) as server:
            stays = await raw_subscriber(server, "acme", TRANSPORT_WS, "stays", "subscription { ticks { n } }")
            completes = await raw_subscriber(server, "acme", TRANSPORT_WS, "completes", "subscription { ticks { n } }")
            stops = await raw_subscriber(server, "acme", LEGACY_WS, "stops", "subscription { ticks { n } }")
            closes = await raw_subscriber(server, "acme", LEGACY_WS, "closes", "subscription { ticks { n } }")
            aborts = await raw_subscriber(server, "acme", TRANSPORT_WS, "aborts", "subscription { ticks { n } }")
            await until(lambda: server.registry().stats()["members"] == 5 and server.bus.stats()["subscribers"] == 1)
            await server.bus.publish("acme.t", 1)
            for ws in (stays, completes, stops, closes, aborts):
                assert (await recv(ws))["payload"] == {"data": {"ticks": {"n": 1}}}
            await completes.send(json.dumps({"id": "completes", "type": "complete"}))
            await stops.send(json.dumps({"id": "stops", "type": "stop"}))
            assert await recv(stops) == {"type": "complete", "id": "stops"}
            await closes.close()
            aborts.transport.abort()
            await until(lambda: server.registry().stats()["members"] == 1)
            await server.bus.publish("acme.t", 2)
            assert await recv(stays) == {
                "id": "stays", "type": "next", "payload": {"data": {"ticks": {"n": 2}}}}
            # Nothing more for the one that completed.
            with pytest.raises(asyncio.TimeoutError):
                await recv(completes, 0.2)
            assert server.bus.stats()["subscribers"] == 1
            await stays.close()
            await completes.close()
            await stops.close()
            await until(lambda: server.bus.stats()["subscribers"] == 0)
            assert server.registry().stats() == {"cohorts": 0, "members": 0}

    run("uvcore", scenario())


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_churn_of_a_thousand_clients_leaves_the_broker_empty(kind):
    rng = random.Random(14)

    async def client(server: Server, i: int, gate: asyncio.Semaphore, live: List[int]) -> None:
        protocol = TRANSPORT_WS if i % 2 else LEGACY_WS
        tenant = f"tenant{i % 3}"
        query = 'subscription { ticks(topic: "%s") { n label } }' % ("a" if i % 5 else "b")
        async with gate:
            ws = await raw_subscriber(server, tenant, protocol, f"s{i}", query)
        live[0] += 1
        try:
            # Listen for a while (events arrive meanwhile), then leave one of four ways.
            wanted = rng.randrange(0, 3)
            while wanted:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("type") == "ka":
                    continue
                wanted -= 1
                assert message["id"] == f"s{i}" and message["payload"]["data"]["ticks"]["label"].startswith(tenant)
            how = rng.randrange(4)
            if how == 0:
                await ws.send(json.dumps({"id": f"s{i}", "type": "complete" if protocol == TRANSPORT_WS else "stop"}))
                await ws.close()
            elif how == 1:
                await ws.close()
            elif how == 2:
                ws.transport.abort()
            else:
                # Subscribe again on the same connection, then drop it.
                start = "subscribe" if protocol == TRANSPORT_WS else "start"
                await ws.send(json.dumps({"id": f"again{i}", "type": start, "payload": {"query": query}}))
                await asyncio.sleep(0)
                await ws.close()
        finally:
            live[0] -= 1

    async def scenario():
        async with serve(kind) as server:
            gate = asyncio.Semaphore(50)
            live = [0]
            clients = [asyncio.ensure_future(client(server, i, gate, live)) for i in range(1000)]

            async def publisher() -> None:
                n = 0
                while not all(c.done() for c in clients):
                    n += 1
                    for tenant in ("tenant0", "tenant1", "tenant2"):
                        for topic in ("a", "b"):
                            await server.bus.publish(f"{tenant}.{topic}", n)
                    await asyncio.sleep(0.002)

            pub = asyncio.ensure_future(publisher())
            results = await asyncio.gather(*clients, return_exceptions=True)
            await pub
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, failures[:3]
            await until(lambda: server.bus.stats()["subscribers"] == 0, timeout=60)
            await until(lambda: server.registry().stats() == {"cohorts": 0, "members": 0}, timeout=60)
            assert server.bus.stats()["channels"] == 0

    run("uvcore", scenario())
