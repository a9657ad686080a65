"""Rules, lists and labels in PostgreSQL: every rule change is a new immutable version.

The rule set's version is the `change_id` of the newest rule version, so the number recorded
on a transaction names exactly the set of rule versions it was screened with. A rule that does
not compile is refused here, before anything is written, so it can never become active.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rules import compile_rule
from rules.backtest import HistoryRow

ACTIONS = ("flag", "decline", "allow")
STATUSES = ("draft", "shadow", "active", "disabled")
LIVE_STATUSES = ("shadow", "active")


class RuleStoreError(Exception):
    code = "rule_store_error"


class RuleNotFound(RuleStoreError):
    code = "rule_not_found"

    def __init__(self, rule_id: int) -> None:
        super().__init__(f"rule {rule_id} does not exist")
        self.rule_id = rule_id


class RuleNameTaken(RuleStoreError):
    code = "rule_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"a rule named {name!r} already exists; change it with PUT")
        self.name = name


class RuleVersion(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: int
    name: str
    version: int
    change_id: int
    description: str
    expression: str
    action: str
    priority: int
    status: str
    author: str
    created_at: datetime


class RuleDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What an analyst submits: the mutable part of a rule."""

    description: str
    expression: str
    action: str
    priority: int
    status: str


class Label(msgspec.Struct, frozen=True, kw_only=True):
    label_id: int
    transaction_id: str
    label: str
    source: str
    note: str
    author: str
    created_at: datetime


_HISTORY = """
    SELECT t.transaction_id, t.account_id, t.card_id, t.merchant_id, t.merchant_category,
           t.amount_minor, a.currency, t.country, t.lat::float8 AS lat, t.lon::float8 AS lon,
           t.event_time, a.home_country, a.home_lat::float8 AS home_lat,
           a.home_lon::float8 AS home_lon, a.created_at AS account_created_at,
           t.risk_score::float8 AS risk_score,
           (SELECT l.label FROM transaction_labels l WHERE l.transaction_id = t.transaction_id
             ORDER BY l.label_id DESC LIMIT 1) AS label
      FROM transactions t JOIN accounts a USING (account_id)
     WHERE t.event_time >= $1 AND t.event_time < $2
     ORDER BY t.event_time, t.id
"""

_VERSION_COLUMNS = """
    v.rule_id, r.name, v.version, v.change_id, v.description, v.expression, v.action,
    v.priority, v.status, v.author, v.created_at
"""
_LATEST = f"""
    SELECT DISTINCT ON (v.rule_id) {_VERSION_COLUMNS}
      FROM rule_versions v JOIN rules r USING (rule_id)
     ORDER BY v.rule_id, v.change_id DESC
"""


def _version(row: asyncpg.Record) -> RuleVersion:
    return RuleVersion(**dict(row))


class RuleStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, name: str, draft: RuleDraft, *, author: str) -> RuleVersion:
        compile_rule(draft.expression)  # raises RuleError: nothing is written
        async with self._pool.acquire() as conn, conn.transaction():
            rule_id = await conn.fetchval(
                "INSERT INTO rules (name) VALUES ($1) ON CONFLICT (name) DO NOTHING "
                "RETURNING rule_id", name)
            if rule_id is None:
                raise RuleNameTaken(name)
            return await self._insert_version(conn, rule_id, 1, draft, author)

    async def update(self, rule_id: int, draft: RuleDraft, *, author: str) -> RuleVersion:
        compile_rule(draft.expression)
        async with self._pool.acquire() as conn, conn.transaction():
            # Lock the rule so two concurrent edits get versions n+1 and n+2, not a conflict.
            # (An advisory lock: the service role may not take row locks on rules.)
            await conn.execute("SELECT pg_advisory_xact_lock(7, $1::int)", rule_id % 2**31)
            if await conn.fetchval("SELECT 1 FROM rules WHERE rule_id = $1", rule_id) is None:
                raise RuleNotFound(rule_id)
            last = await conn.fetchval(
                "SELECT max(version) FROM rule_versions WHERE rule_id = $1", rule_id)
            return await self._insert_version(conn, rule_id, last + 1, draft, author)

    @staticmethod
    async def _insert_version(conn: Any, rule_id: int, version: int,
                              draft: RuleDraft, author: str) -> RuleVersion:
        change_id = await conn.fetchval(
            "INSERT INTO rule_versions (rule_id, version, description, expression, action, "
            "priority, status, author) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "RETURNING change_id", rule_id, version, draft.description, draft.expression,
            draft.action, draft.priority, draft.status, author)
        row = await conn.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM rule_versions v JOIN rules r USING (rule_id) "
            "WHERE v.change_id = $1", change_id)
        assert row is not None, "the version was inserted by this transaction"
        return _version(row)

    async def get(self, rule_id: int) -> RuleVersion:
        row = await self._pool.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM rule_versions v JOIN rules r USING (rule_id) "
            "WHERE v.rule_id = $1 ORDER BY v.change_id DESC LIMIT 1", rule_id)
        if row is None:
            raise RuleNotFound(rule_id)
        return _version(row)

    async def latest(self) -> list[RuleVersion]:
        """The newest version of every rule, whatever its status."""
        rows = await self._pool.fetch(f"SELECT * FROM ({_LATEST}) s ORDER BY priority, rule_id")
        return [_version(r) for r in rows]

    async def versions(self, rule_id: int) -> list[RuleVersion]:
        rows = await self._pool.fetch(
            f"SELECT {_VERSION_COLUMNS} FROM rule_versions v JOIN rules r USING (rule_id) "
            "WHERE v.rule_id = $1 ORDER BY v.version DESC", rule_id)
        if not rows:
            raise RuleNotFound(rule_id)
        return [_version(r) for r in rows]

    async def live(self) -> tuple[int, list[RuleVersion]]:
        """(rule set version, the shadow and active rules of that set) in one snapshot."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            version = await conn.fetchval("SELECT coalesce(max(change_id), 0) FROM rule_versions")
            rows = await conn.fetch(
                f"SELECT * FROM ({_LATEST}) s WHERE status = ANY($1::text[]) "
                "ORDER BY priority, rule_id", list(LIVE_STATUSES))
        return version, [_version(r) for r in rows]

    async def current_version(self) -> int:
        value: int = await self._pool.fetchval(
            "SELECT coalesce(max(change_id), 0) FROM rule_versions")
        return value

    async def history(self, since: datetime, until: datetime) -> AsyncIterator[HistoryRow]:
        """Recorded transactions with event time in [since, until), oldest first, streamed."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            async for row in conn.cursor(_HISTORY, since, until, prefetch=2000):
                yield HistoryRow(**dict(row))

    # -- lists ----------------------------------------------------------------------------

    async def add_list_items(self, name: str, values: Sequence[str], *, author: str) -> int:
        """Add values (existing ones are kept as they are); returns how many were new."""
        status = await self._pool.execute(
            "INSERT INTO list_items (list_name, value, added_by) "
            "SELECT $1, v, $3 FROM unnest($2::text[]) AS v ON CONFLICT DO NOTHING",
            name, list(values), author)
        return int(status.split()[-1])

    async def remove_list_item(self, name: str, value: str) -> bool:
        status = await self._pool.execute(
            "DELETE FROM list_items WHERE list_name = $1 AND value = $2", name, value)
        return status != "DELETE 0"

    async def list_items(self, name: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT value FROM list_items WHERE list_name = $1 ORDER BY value", name)
        return [r["value"] for r in rows]

    async def load_lists(self, names: Sequence[str]) -> dict[str, frozenset[str]]:
        rows = await self._pool.fetch(
            "SELECT list_name, array_agg(value) AS values FROM list_items "
            "WHERE list_name = ANY($1::text[]) GROUP BY list_name", list(names))
        found = {r["list_name"]: frozenset(r["values"]) for r in rows}
        return {name: found.get(name, frozenset()) for name in names}

    # -- labels ---------------------------------------------------------------------------

    async def add_label(self, transaction_id: str, label: str, *, source: str, note: str,
                        author: str) -> Label | None:
        """Append a verdict; None when the transaction does not exist."""
        row = await self._pool.fetchrow(
            "INSERT INTO transaction_labels (transaction_id, label, source, note, author) "
            "SELECT $1, $2, $3, $4, $5 WHERE EXISTS "
            "(SELECT 1 FROM transactions WHERE transaction_id = $1) RETURNING *",
            transaction_id, label, source, note, author)
        return None if row is None else Label(**dict(row))
