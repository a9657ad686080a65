"""A lean HTTP/1.1 keep-alive client for the load generator.

The load generator shares the machine with the server it measures, so every millisecond of
CPU it spends per request is taken from the server. aiohttp's client costs ~0.4 ms of Python
per request here (cookies, tracing, yarl URLs, multidict headers, request and response
objects: `perf` on a sender process at 1,000 req/s shows plain interpretation, 90 % user
time); the requests of a benchmark need none of that. This client writes one prepared byte
string per request on a pooled keep-alive connection and parses the answer with httptools
(llhttp, the C parser uvicorn uses, from the makers of uvloop), so chunked bodies,
`Connection: close` and malformed answers are handled by a real HTTP parser.

One request at a time per connection (no pipelining); at most `limit` connections, further
requests wait for one. A connection the server closes, or that answers `Connection: close`,
is dropped and replaced by a new one on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools


class Response:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request and waits for its answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[Response] | None = None
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = Response(self._parser.get_status_code(), b"".join(self._body))
        self._body = []
        if not self._parser.should_keep_alive():
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def exchange(self, request: bytes) -> asyncio.Future[Response]:
        assert self._transport is not None and self._waiter is None
        self._waiter = waiter = self._loop.create_future()
        self._transport.write(request)
        return waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Client:
    """POSTs to one server over at most `limit` keep-alive connections."""

    def __init__(self, base_url: str, *, limit: int, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port] URLs are supported, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._authority = parts.netloc.encode()
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []

    def head(self, path: str, headers: Mapping[str, str]) -> bytes:
        """The fixed part of a request to `path`: request line and `headers` (encode once,
        send many times; `post` adds the per-request headers and the body)."""
        lines = [f"POST {self._prefix}{path} HTTP/1.1".encode(), b"Host: " + self._authority]
        lines += [f"{name}: {value}".encode() for name, value in headers.items()]
        return b"\r\n".join(lines) + b"\r\n"

    async def post(self, head: bytes, body: bytes, extra: bytes = b"") -> Response:
        """Send `head` (from `head()`), `extra` header lines (each ending in CRLF) and `body`.
        Raises TimeoutError after `timeout_s` (waiting for a connection included), OSError
        when the connection fails, httptools.HttpParserError for a malformed answer."""
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (head, extra, len(body), body)
        async with asyncio.timeout(self._timeout_s), self._slots:
            connection = await self._connection()
            try:
                response = await connection.exchange(request)
            except BaseException:
                connection.close()  # its answer may still come: never hand it on
                raise
            if connection.reusable:
                self._idle.append(connection)
            return response

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _Connection(loop), self._host, self._port)
        return protocol

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
