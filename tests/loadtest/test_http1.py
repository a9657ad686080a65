"""The load generator's lean HTTP/1.1 client against a real aiohttp server on a local port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from loadtest.http1 import Client


@dataclass
class Server:
    url: str
    peers: list[object] = field(default_factory=list)  # the client address of each request
    bodies: list[bytes] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    slow_s: float = 0.0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(url="")

    async def pay(request: web.Request) -> web.StreamResponse:
        state.peers.append(request.transport.get_extra_info("peername")
                           if request.transport else None)
        state.bodies.append(await request.read())
        state.keys.append(request.headers.get("Idempotency-Key"))
        if state.slow_s:
            await asyncio.sleep(state.slow_s)
            return web.json_response({"late": True})
        mode = request.query.get("mode")
        if mode == "close":
            return web.json_response({"bye": True}, headers={"Connection": "close"})
        if mode == "chunked":
            response = web.StreamResponse(status=202)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"parts":', b"[1,2", b",3]}"):
                await response.write(part)
            await response.write_eof()
            return response
        return web.json_response({"n": len(state.bodies)}, status=201)

    app = web.Application()
    app.router.add_post("/v1/pay", pay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def test_requests_share_one_keep_alive_connection(server: Server) -> None:
    client = Client(server.url, limit=4, timeout_s=5.0)
    head = client.head("/v1/pay", {"Content-Type": "application/json"})
    answers = [await client.post(head, b'{"k":%d}' % i, b"Idempotency-Key: key-%d\r\n" % i)
               for i in range(5)]
    assert [(a.status, a.body) for a in answers] == [
        (201, b'{"n": %d}' % (i + 1)) for i in range(5)]
    assert server.bodies == [b'{"k":%d}' % i for i in range(5)]
    assert server.keys == [f"key-{i}" for i in range(5)]
    assert len(set(server.peers)) == 1
    client.close()


async def test_an_answer_with_connection_close_is_read_and_the_next_request_reconnects(
        server: Server) -> None:
    client = Client(server.url, limit=1, timeout_s=5.0)
    closing = client.head("/v1/pay?mode=close", {})
    first = await client.post(closing, b"{}")
    second = await client.post(client.head("/v1/pay", {}), b"{}")
    assert (first.status, first.body) == (200, b'{"bye": true}')
    assert second.status == 201
    assert len(set(server.peers)) == 2
    client.close()


async def test_a_chunked_answer_is_put_together(server: Server) -> None:
    client = Client(server.url, limit=1, timeout_s=5.0)
    answer = await client.post(client.head("/v1/pay?mode=chunked", {}), b"{}")
    assert (answer.status, answer.body) == (202, b'{"parts":[1,2,3]}')
    client.close()


async def test_a_timed_out_connection_is_dropped_so_its_late_answer_reaches_nobody(
        server: Server) -> None:
    client = Client(server.url, limit=1, timeout_s=0.2)
    head = client.head("/v1/pay", {})
    server.slow_s = 0.5
    with pytest.raises(TimeoutError):
        await client.post(head, b"{}")
    server.slow_s = 0.0
    answer = await client.post(head, b"{}")
    assert (answer.status, answer.body) == (201, b'{"n": 2}')  # not the late {"late": true}
    assert len(set(server.peers)) == 2
    client.close()


async def test_the_limit_bounds_the_connections_and_queues_the_rest(server: Server) -> None:
    client = Client(server.url, limit=2, timeout_s=5.0)
    head = client.head("/v1/pay", {})
    server.slow_s = 0.05
    answers = await asyncio.gather(*(client.post(head, b"{}") for _ in range(6)))
    assert all(a.status == 200 for a in answers)
    assert len(set(server.peers)) == 2
    client.close()


async def test_a_refused_connection_raises_oserror() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", limit=1, timeout_s=2.0)
    with pytest.raises(OSError):
        await client.post(client.head("/v1/pay", {}), b"{}")


@pytest.mark.parametrize("url", ["https://example.com", "127.0.0.1:8080", "http://"])
def test_only_plain_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="only http://"):
        Client(url, limit=1, timeout_s=1.0)
