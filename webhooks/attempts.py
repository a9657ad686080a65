"""The record of every webhook delivery attempt, written in batches.

A worker records an attempt before it acknowledges the message, so an attempt the merchant
saw is never missing from `webhook_attempts`. Hundreds of deliveries per second would cost a
commit each; `AttemptLog` gathers the attempts of the last few milliseconds into one
`copy_records_to_table` and wakes every waiting delivery when that commit is done.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
import msgspec

log = logging.getLogger(__name__)

COLUMNS = ("event_id", "transaction_id", "merchant_id", "replay_id", "attempt", "url",
           "attempted_at", "status_code", "latency_ms", "error", "outcome", "next_attempt_at")


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    transaction_id: str
    merchant_id: str
    replay_id: int | None
    attempt: int
    url: str | None
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    outcome: str
    next_attempt_at: datetime | None = None

    def row(self) -> tuple[object, ...]:
        return msgspec.structs.astuple(self)


class AttemptLog:
    """Batches attempts into one COPY; `record()` returns when its attempt is committed."""

    def __init__(self, pool: asyncpg.Pool, *, batch_max: int = 500,
                 batch_wait_s: float = 0.005) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._batch_wait_s = batch_wait_s
        self._pending: list[tuple[Attempt, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.written = 0

    async def record(self, attempt: Attempt) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((attempt, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        await future

    async def _flush_soon(self) -> None:
        while self._pending:
            if len(self._pending) < self._batch_max:
                await asyncio.sleep(self._batch_wait_s)
            batch, self._pending = (self._pending[:self._batch_max],
                                    self._pending[self._batch_max:])
            try:
                await self._write(batch)
            except BaseException as exc:
                # Nobody may wait forever: every waiter of the batch sees the failure.
                _settle(batch, exc)
                if not isinstance(exc, Exception):
                    raise

    async def _write(self, batch: list[tuple[Attempt, asyncio.Future[None]]]) -> None:
        try:
            await self._pool.copy_records_to_table(
                "webhook_attempts", columns=COLUMNS, records=[a.row() for a, _ in batch])
        except asyncpg.PostgresError as exc:
            if _is_connection_error(exc) or len(batch) == 1:
                raise
            # One bad row (a hand-published job naming no transaction) fails the whole COPY:
            # write the rows one by one so only its own delivery sees the error.
            for attempt, future in batch:
                try:
                    await self._pool.execute(_INSERT_ONE, *attempt.row())
                except asyncpg.PostgresError as one:
                    _settle([(attempt, future)], one)
                else:
                    self.written += 1
                    _settle([(attempt, future)], None)
            return
        self.written += len(batch)
        _settle(batch, None)


_INSERT_ONE = (f"INSERT INTO webhook_attempts ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))})")


def _is_connection_error(exc: asyncpg.PostgresError) -> bool:
    # SQLSTATE class 08: connection exceptions; 57P: operator intervention (shutdown).
    state = getattr(exc, "sqlstate", "") or ""
    return state.startswith(("08", "57P"))


def _settle(batch: list[tuple[Attempt, asyncio.Future[None]]], exc: BaseException | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
