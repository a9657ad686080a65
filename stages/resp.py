"""Redis pipelines for the hot path: hiredis on asyncio protocols, one timeout per pipeline.

Every screened payment costs two Redis pipelines (admission, respond). Through redis-py a
3-command pipeline cost 131-154 µs of the edge's CPU; written with hiredis's own C packer and
parsed by its C reader on a plain asyncio protocol, 38 µs (BENCHMARKS.md): redis-py spends
the difference on its retry wrapper, observability hooks, a `wait_for` task per send and a
timeout per reply. Everything else (scripts' loading, tests, tools) keeps using redis-py.

The commands are packed exactly as redis-py packs them (`hiredis.pack_command`, tested equal).
A pipeline runs on one pooled connection; it is given `timeout_s` as a whole. A connection
that failed, timed out or was cancelled mid-pipeline is closed, never reused (its late
replies would answer the next pipeline). A pipeline is never retried here: whether Redis ran
its commands is unknown after a broken connection, and the admission script must not run
twice. Failures raise redis-py's exceptions (`ConnectionError`, `TimeoutError`), so callers
handle one family; a command's error reply comes back in its slot as redis-py's
`ResponseError` (`NoScriptError` for NOSCRIPT), like `execute(raise_on_error=False)`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float
# hiredis's stub types its argument as a 1-tuple; it packs a tuple of any length.
_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


class Commands:
    """What a pipeline builder queues: plain command tuples, packed when sent."""

    __slots__ = ("stack",)

    def __init__(self) -> None:
        self.stack: list[tuple[Arg, ...]] = []

    def command(self, *args: Arg) -> None:
        self.stack.append(args)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Arg) -> None:
        self.stack.append(("EVALSHA", sha, numkeys, *keys_and_args))

    def set(self, key: str, value: Arg, *, px: int | None = None) -> None:
        self.stack.append(("SET", key, value) if px is None else ("SET", key, value, "PX", px))


def reply_error(error: hiredis.ReplyError) -> ResponseError:
    """An error reply as redis-py raises it (`NoScriptError` for NOSCRIPT)."""
    message = str(error)
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        self._replies: list[object] = []
        self._expected = 0
        self._waiter: asyncio.Future[list[object]] | None = None
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self._replies.append(reply_error(reply) if isinstance(reply, hiredis.ReplyError)
                                     else reply)
        except hiredis.ProtocolError as exc:
            self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))
            self.close()
            return
        if len(self._replies) >= self._expected and self._waiter is not None:
            replies, self._replies = self._replies, []
            waiter, self._waiter = self._waiter, None
            if not waiter.done():
                waiter.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._fail(RedisConnectionError(f"Redis closed the connection: {exc or 'EOF'}"))

    def send(self, packed: bytes, expected: int) -> asyncio.Future[list[object]]:
        assert self._transport is not None and self._waiter is None
        self._expected = expected
        self._waiter = waiter = self._loop.create_future()
        self._transport.write(packed)
        return waiter

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class RedisPipelines:
    """Runs pipelines against one Redis over pooled connections (opened on demand)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 username: str | None = None, password: str | None = None,
                 tls: bool = False, unix_path: str | None = None,
                 connect_timeout_s: float = 0.25, timeout_s: float = 1.0) -> None:
        self._host, self._port, self._unix_path = host, port, unix_path
        self._ssl = ssl.create_default_context() if tls else None
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._hello: list[tuple[Arg, ...]] = []
        if password is not None:
            self._hello.append(("AUTH", password) if username is None
                               else ("AUTH", username, password))
        if db:
            self._hello.append(("SELECT", db))
        self._idle: list[_Connection] = []

    @classmethod
    def from_url(cls, url: str, *, connect_timeout_s: float = 0.25,
                 timeout_s: float = 1.0) -> RedisPipelines:
        """`redis://[[user]:password@]host[:port][/db]`, `rediss://` (TLS) or
        `unix:///path/to/socket[?db=N]`, as redis-py reads them."""
        parts = urlsplit(url)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if parts.scheme == "unix":
            db = parse_qs(parts.query).get("db", ["0"])[0]
            return cls(unix_path=parts.path, db=int(db), username=username, password=password,
                       connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"not a Redis URL: {url!r} (redis://, rediss:// or unix://)")
        path = parts.path.strip("/")
        return cls(host=parts.hostname, port=parts.port or 6379, db=int(path) if path else 0,
                   username=username, password=password, tls=parts.scheme == "rediss",
                   connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)

    async def execute(self, stack: list[tuple[Arg, ...]]) -> list[object]:
        """Send `stack` in one write and return one reply per command, error replies as
        `ResponseError` instances in their slots."""
        if not stack:
            return []
        packed = b"".join([_pack(args) for args in stack])
        try:
            async with asyncio.timeout(self._timeout_s):
                connection = await self._connection()
                try:
                    replies = await connection.send(packed, len(stack))
                except BaseException:
                    connection.close()  # its replies may still come: never hand it on
                    raise
        except TimeoutError:
            raise RedisTimeoutError(
                f"Redis did not answer a pipeline of {len(stack)} within "
                f"{self._timeout_s:g} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot reach Redis: {exc}") from exc
        if connection.usable:
            self._idle.append(connection)
        return replies

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout_s):
            if self._unix_path is not None:
                _, protocol = await loop.create_unix_connection(
                    lambda: _Connection(loop), self._unix_path)
            else:
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop), self._host, self._port, ssl=self._ssl)
            if self._hello:
                replies = await protocol.send(
                    b"".join(_pack(args) for args in self._hello),
                    len(self._hello))
                if errors := [r for r in replies if isinstance(r, ResponseError)]:
                    protocol.close()
                    raise RedisConnectionError(f"Redis refused the connection: {errors[0]}")
        return protocol

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
