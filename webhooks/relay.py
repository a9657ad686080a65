"""The outbox relay: committed ledger events, in commit order, to RabbitMQ; nothing lost.

Any number of relays may run (`sentinel relay`, one per node for availability); one leads:
the holder of a PostgreSQL advisory lock on its own connection. If the leader dies, its
connection closes, the lock is released and another relay takes it within `takeover_s`.

The leader loop: read up to `batch_max` events after the cursor (rows of transactions
committed below the oldest running transaction, see migration 006), publish every job of the
batch with many confirms in flight, and only when the broker has confirmed them all move the
cursor, on the lock's connection (a leader that lost its connection cannot move it). A broker
or database failure anywhere in between republishes the batch later: delivery is
at-least-once, with the same event id every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

import aio_pika
import asyncpg
import msgspec
from aio_pika.abc import AbstractChannel

from webhooks import events, topology
from webhooks.connections import TRANSIENT
from webhooks.connections import wait_or_stop as _wait
from webhooks.jobs import Job, publish

log = logging.getLogger(__name__)

# Arbitrary constant (the migrator's lock is ...E1): the relay leadership of one database.
LEADER_LOCK_ID = 0x5E7715E2

_PENDING_TRANSACTIONS = f"""
    SELECT t.txid, {events.COLUMNS},
           (m.webhook_url IS NOT NULL AND m.delivery_enabled) AS deliver
      FROM transactions t JOIN accounts a USING (account_id)
      LEFT JOIN merchants m ON m.merchant_id = t.merchant_id
     WHERE (t.txid, t.id) > ($1::xid8, $2::bigint)
       AND t.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY t.txid, t.id
     LIMIT $3"""

_PENDING_REPLAYS = f"""
    SELECT r.txid, r.replay_id, {events.COLUMNS}
      FROM webhook_replays r JOIN transactions t USING (transaction_id)
      JOIN accounts a USING (account_id)
     WHERE (r.txid, r.replay_id) > ($1::xid8, $2::bigint)
       AND r.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY r.txid, r.replay_id
     LIMIT $3"""

_MOVE_CURSOR = ("UPDATE relay_cursors SET txid = $2::xid8, id = $3, updated_at = now() "
                "WHERE source = $1")


class RelayStatistics(msgspec.Struct, frozen=True, kw_only=True):
    leader: bool
    terms: int
    batches: int
    webhooks_published: int
    alerts_published: int
    replays_published: int
    failures: int


@dataclass
class _Counters:
    leader: bool = False
    terms: int = 0
    batches: int = 0
    webhooks: int = 0
    alerts: int = 0
    replays: int = 0
    failures: int = 0


@dataclass
class Relay:
    dsn: str
    amqp_url: str
    webhooks: topology.JobQueues
    alerts: topology.JobQueues
    batch_max: int = 500
    poll_s: float = 0.02
    takeover_s: float = 1.0
    retry_s: float = 1.0
    _counters: _Counters = field(default_factory=_Counters)
    _elected: asyncio.Event = field(default_factory=asyncio.Event)

    def statistics(self) -> RelayStatistics:
        c = self._counters
        return RelayStatistics(leader=c.leader, terms=c.terms, batches=c.batches,
                               webhooks_published=c.webhooks, alerts_published=c.alerts,
                               replays_published=c.replays, failures=c.failures)

    async def wait_leader(self) -> None:
        await self._elected.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign, lead and recover until `stop` is set."""
        while not stop.is_set():
            try:
                await self._term(stop)
            except TRANSIENT as exc:
                self._counters.failures += 1
                log.warning("relay: %s: %s; starting over in %.1f s",
                            type(exc).__name__, exc, self.retry_s)
                await _wait(stop, self.retry_s)

    async def _term(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_ID):
                if await _wait(stop, self.takeover_s):
                    return
            amqp = await aio_pika.connect(self.amqp_url, timeout=5)
            try:
                channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
                await topology.declare(channel, self.webhooks)
                await topology.declare(channel, self.alerts)
                self._lead()
                log.info("relay: leading (term %d)", self._counters.terms)
                await self._publish_until(stop, conn, channel)
            finally:
                self._counters.leader = False
                self._elected.clear()
                await amqp.close()
        finally:
            # Closing the session releases the advisory lock: the next relay takes over.
            await conn.close(timeout=2)

    def _lead(self) -> None:
        self._counters.leader = True
        self._counters.terms += 1
        self._elected.set()

    async def _publish_until(self, stop: asyncio.Event, conn: asyncpg.Connection,
                             channel: AbstractChannel) -> None:
        cursors = {r["source"]: (r["txid"], r["id"]) for r in
                   await conn.fetch("SELECT source, txid, id FROM relay_cursors")}
        while not stop.is_set():
            moved = await self._relay_transactions(conn, channel, cursors)
            moved += await self._relay_replays(conn, channel, cursors)
            if not moved:
                await _wait(stop, self.poll_s)

    async def _relay_transactions(self, conn: asyncpg.Connection, channel: AbstractChannel,
                                  cursors: dict[str, tuple[int, int]]) -> int:
        rows = await conn.fetch(_PENDING_TRANSACTIONS, *cursors["transactions"], self.batch_max)
        if not rows:
            return 0
        webhooks: list[Awaitable[None]] = [
            publish(channel, self.webhooks.work, _job(row, events.encode(events.event_of(row))))
            for row in rows if row["deliver"]]
        alerts: list[Awaitable[None]] = [
            publish(channel, self.alerts.work, _job(row, events.encode(events.alert_of(row))))
            for row in rows if row["decision"] != "approve"]
        await _all(webhooks + alerts)
        self._counters.webhooks += len(webhooks)
        self._counters.alerts += len(alerts)
        last = rows[-1]
        cursors["transactions"] = (last["txid"], last["id"])
        await conn.execute(_MOVE_CURSOR, "transactions", last["txid"], last["id"])
        self._counters.batches += 1
        return len(rows)

    async def _relay_replays(self, conn: asyncpg.Connection, channel: AbstractChannel,
                             cursors: dict[str, tuple[int, int]]) -> int:
        rows = await conn.fetch(_PENDING_REPLAYS, *cursors["replays"], self.batch_max)
        if not rows:
            return 0
        await _all([publish(channel, self.webhooks.work,
                            _job(row, events.encode(events.event_of(row)),
                                 replay_id=row["replay_id"])) for row in rows])
        self._counters.replays += len(rows)
        last = rows[-1]
        cursors["replays"] = (last["txid"], last["replay_id"])
        await conn.execute(_MOVE_CURSOR, "replays", last["txid"], last["replay_id"])
        return len(rows)


def _job(row: asyncpg.Record, body: bytes, *, replay_id: int | None = None) -> Job:
    return Job(event_id=events.event_id(row["transaction_id"]),
               transaction_id=row["transaction_id"], merchant_id=row["merchant_id"],
               attempt=1, body=body, replay_id=replay_id)


async def _all(sends: list[Awaitable[None]]) -> None:
    """Await every publish (all confirms in flight at once); raise the first failure."""
    results = await asyncio.gather(*sends, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
