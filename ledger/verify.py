"""Recomputes every hash chain and balance of the ledger and names each record that disagrees.

Streams the tables in chain order with server-side cursors, so memory stays flat however
large the ledger is. Used by `sentinel verify-ledger`, which exits non-zero on any problem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger.chain import GENESIS_HASH, posting_hash, transaction_hash


@dataclass(frozen=True)
class Problem:
    record: str  # e.g. "postings account=acc-1 seq=3"
    detail: str

    def __str__(self) -> str:
        return f"{self.record}: {self.detail}"


@dataclass
class Report:
    accounts: int = 0
    postings: int = 0
    transactions: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Head:
    seq: int = 0
    hash: bytes = GENESIS_HASH
    balance: int = 0


async def _rows(conn: asyncpg.Connection, query: str) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(query, prefetch=2000):
        yield row


def _check_posting(row: asyncpg.Record, head: _Head, report: Report) -> None:
    name = f"postings account={row['account_id']} seq={row['seq']}"
    if row["seq"] != head.seq + 1:
        report.problems.append(Problem(name, f"sequence gap after seq {head.seq}"))
    if bytes(row["prev_hash"]) != head.hash:
        report.problems.append(Problem(name, "prev_hash does not match the previous record"))
    if row["balance_after_minor"] != head.balance + row["amount_minor"]:
        report.problems.append(Problem(
            name, f"balance_after {row['balance_after_minor']} != previous balance "
                  f"{head.balance} + amount {row['amount_minor']}"))
    expected = posting_hash(bytes(row["prev_hash"]), row["account_id"], row["seq"],
                            row["entry_id"], row["amount_minor"], row["balance_after_minor"])
    if bytes(row["hash"]) != expected:
        report.problems.append(Problem(name, "hash mismatch: the record was altered"))
    head.seq, head.hash, head.balance = row["seq"], bytes(row["hash"]), row["balance_after_minor"]


def _check_transaction(row: asyncpg.Record, head: _Head, report: Report) -> None:
    name = f"transactions id={row['transaction_id']} account={row['account_id']}"
    if row["account_txn_seq"] != head.seq + 1:
        report.problems.append(Problem(name, f"sequence gap after seq {head.seq}"))
    if bytes(row["prev_hash"]) != head.hash:
        report.problems.append(Problem(name, "prev_hash does not match the previous record"))
    values = {k: row[k] for k in (
        "transaction_id", "account_id", "account_txn_seq", "card_id", "merchant_id",
        "amount_minor", "merchant_category", "country", "lat", "lon", "event_time",
        "decision", "risk_score", "reasons", "balance_after_minor", "rules_version",
        "model_version", "client_id")}
    if bytes(row["hash"]) != transaction_hash(bytes(row["prev_hash"]), **values):
        report.problems.append(Problem(name, "hash mismatch: the record was altered"))
    head.seq, head.hash = row["account_txn_seq"], bytes(row["hash"])


async def _walk_chains(conn: asyncpg.Connection, query: str, key: str,
                       check: Callable[[Any, _Head, Report], None],
                       heads: dict[str, _Head], report: Report) -> int:
    count = 0
    async for row in _rows(conn, query):
        check(row, heads.setdefault(row[key], _Head()), report)
        count += 1
    return count


async def _check_heads(conn: asyncpg.Connection, postings: dict[str, _Head],
                       transactions: dict[str, _Head], report: Report) -> None:
    async for acct in _rows(conn, "SELECT * FROM accounts ORDER BY account_id"):
        report.accounts += 1
        name = f"accounts id={acct['account_id']}"
        p = postings.get(acct["account_id"], _Head())
        t = transactions.get(acct["account_id"], _Head())
        if acct["balance_minor"] != p.balance:
            report.problems.append(Problem(
                name, f"balance {acct['balance_minor']} != {p.balance} from its postings"))
        if (acct["posting_seq"], bytes(acct["posting_hash"])) != (p.seq, p.hash):
            report.problems.append(Problem(name, "posting chain head does not match"))
        if (acct["txn_seq"], bytes(acct["txn_hash"])) != (t.seq, t.hash):
            report.problems.append(Problem(name, "transaction chain head does not match"))


_UNBALANCED_ENTRIES = """
    SELECT entry_id, sum(amount_minor) AS total, count(*) AS legs FROM postings
     GROUP BY entry_id HAVING sum(amount_minor) <> 0 OR count(*) <> 2
"""
_ENTRIES_WITHOUT_POSTINGS = """
    SELECT j.entry_id FROM journal_entries j
     WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.entry_id = j.entry_id)
"""
_PAYMENTS_NOT_MATCHING = """
    SELECT t.transaction_id, t.decision, j.entry_id, p.amount_minor
      FROM transactions t
      LEFT JOIN journal_entries j ON j.transaction_id = t.transaction_id
      LEFT JOIN postings p ON p.entry_id = j.entry_id AND p.account_id = t.account_id
     WHERE (t.decision = 'decline') <> (j.entry_id IS NULL)
        OR (j.entry_id IS NOT NULL AND p.amount_minor IS DISTINCT FROM -t.amount_minor)
"""


async def _check_entries(conn: asyncpg.Connection, report: Report) -> None:
    for row in await conn.fetch(_UNBALANCED_ENTRIES):
        report.problems.append(Problem(
            f"journal_entries id={row['entry_id']}",
            f"postings sum to {row['total']} over {row['legs']} legs (want 0 over 2)"))
    for row in await conn.fetch(_ENTRIES_WITHOUT_POSTINGS):
        report.problems.append(Problem(f"journal_entries id={row['entry_id']}", "no postings"))
    for row in await conn.fetch(_PAYMENTS_NOT_MATCHING):
        report.problems.append(Problem(
            f"transactions id={row['transaction_id']}",
            f"decision {row['decision']} does not match its postings "
            f"(entry {row['entry_id']}, cardholder leg {row['amount_minor']})"))


async def verify_ledger(conn: asyncpg.Connection) -> Report:
    """Replay every chain from genesis in one repeatable-read snapshot."""
    report = Report()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        postings: dict[str, _Head] = {}
        transactions: dict[str, _Head] = {}
        report.postings = await _walk_chains(
            conn, "SELECT * FROM postings ORDER BY account_id, seq", "account_id",
            _check_posting, postings, report)
        report.transactions = await _walk_chains(
            conn, "SELECT * FROM transactions ORDER BY account_id, account_txn_seq",
            "account_id", _check_transaction, transactions, report)
        await _check_heads(conn, postings, transactions, report)
        await _check_entries(conn, report)
    return report
