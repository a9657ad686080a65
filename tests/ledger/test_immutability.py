"""Append-only and tamper-evident: refused changes, and verify-ledger catching hidden ones."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from ledger.migrate import drop_database, migrate
from ledger.records import AccountSpec, PaymentRequest
from ledger.repository import Ledger
from ledger.verify import verify_ledger

# A column of each append-only table that an UPDATE could touch.
LEDGER_TABLES = {"transactions": "card_id", "journal_entries": "kind", "postings": "seq",
                 "deposits": "client_id"}


@pytest.fixture
async def scratch(settings):
    """A ledger of its own, since these tests corrupt it on purpose."""
    name = f"sentinel_scratch_{datetime.now(UTC):%H%M%S%f}"
    admin = settings.admin_database_url.rsplit("/", 1)[0] + "/" + name
    app = settings.database_url.rsplit("/", 1)[0] + "/" + name
    await migrate(admin, app)
    app_pool = await asyncpg.create_pool(app, min_size=1, max_size=2)
    admin_pool = await asyncpg.create_pool(admin, min_size=1, max_size=2)
    ledger = Ledger(app_pool)
    await ledger.create_account(AccountSpec(account_id="alice", currency="EUR",
                                            home_country="DE"))
    await ledger.post_deposit(client_id="c", idem_key="d1", fingerprint=b"f",
                              account_id="alice", amount_minor=10_000, currency="EUR")
    base = PaymentRequest(client_id="c", idem_key="k1", fingerprint="aa", transaction_id="t1",
                          account_id="alice", card_id="card", merchant_id="m",
                          amount_minor=2_500, currency="EUR", merchant_category="travel",
                          country="FR", lat=48.8566, lon=2.3522,
                          event_time=datetime(2026, 11, 29, 9, 30, tzinfo=UTC),
                          risk_score=0.25, reasons=["manual_review"])
    outcomes = await ledger.post_payments([
        base, msgspec.structs.replace(base, idem_key="k2", transaction_id="t2",
                                      amount_minor=90_000, lat=None, lon=None)])
    assert [o.decision for o in outcomes] == ["approve", "decline"]
    yield {"app": app_pool, "admin": admin_pool, "app_dsn": app}
    await app_pool.close()
    await admin_pool.close()
    await drop_database(admin)


async def test_clean_ledger_verifies(scratch):
    async with scratch["app"].acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok, report.problems
    assert (report.postings, report.transactions) == (4, 2)


@pytest.mark.parametrize("table", LEDGER_TABLES)
async def test_service_role_cannot_update_or_delete(scratch, table):
    column = LEDGER_TABLES[table]
    for statement in (f"UPDATE {table} SET {column} = {column}",
                      f"DELETE FROM {table}", f"TRUNCATE {table} CASCADE"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await scratch["app"].execute(statement)


@pytest.mark.parametrize("table", LEDGER_TABLES)
async def test_trigger_refuses_even_the_owner(scratch, table):
    column = LEDGER_TABLES[table]
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await scratch["admin"].execute(f"UPDATE {table} SET {column} = {column}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await scratch["admin"].execute(f"DELETE FROM {table}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await scratch["admin"].execute(f"TRUNCATE {table} CASCADE")


async def _tamper(admin, table: str, statement: str) -> None:
    async with admin.acquire() as conn, conn.transaction():
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        await conn.execute(statement)
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _verify_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", "verify-ledger"], text=True,
                          capture_output=True, env={"SENTINEL_DATABASE_URL": dsn,
                                                    "PATH": "/usr/bin:/bin"},
                          timeout=60, check=False)


async def test_altered_posting_is_named_by_verify_ledger(scratch):
    await _tamper(scratch["admin"], "postings",
                  "UPDATE postings SET amount_minor = -100, balance_after_minor = 9900 "
                  "WHERE account_id = 'alice' AND seq = 2")
    async with scratch["app"].acquire() as conn:
        report = await verify_ledger(conn)
    records = {p.record for p in report.problems}
    assert "postings account=alice seq=2" in records
    result = _verify_cli(scratch["app_dsn"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH postings account=alice seq=2" in result.stdout


async def test_altered_decline_is_caught(scratch):
    await _tamper(scratch["admin"], "transactions",
                  "UPDATE transactions SET decision = 'approve' WHERE transaction_id = 't2'")
    async with scratch["app"].acquire() as conn:
        report = await verify_ledger(conn)
    details = {str(p) for p in report.problems}
    assert any(d.startswith("transactions id=t2") and "hash mismatch" in d for d in details)


async def test_balance_edited_on_the_account_row_is_caught(scratch):
    await scratch["admin"].execute(
        "UPDATE accounts SET balance_minor = 1000000 WHERE account_id = 'alice'")
    async with scratch["app"].acquire() as conn:
        report = await verify_ledger(conn)
    assert any(p.record == "accounts id=alice" and "balance" in p.detail
               for p in report.problems)
    assert _verify_cli(scratch["app_dsn"]).returncode == 1


async def test_clean_ledger_cli_exits_zero(scratch):
    result = _verify_cli(scratch["app_dsn"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


async def test_a_mixed_batch_keeps_every_chain_and_balance(scratch):
    # One batch: two currencies interleaved (the settlement head is switched and written back
    # mid-batch), the same cardholder twice, a decline in between (no postings).
    ledger = Ledger(scratch["app"])
    for account, currency in (("bob", "USD"), ("carol", "EUR")):
        await ledger.create_account(AccountSpec(account_id=account, currency=currency,
                                                home_country="US"))
        await ledger.post_deposit(client_id="c", idem_key=f"d-{account}", fingerprint=b"f",
                                  account_id=account, amount_minor=10_000, currency=currency)

    def pay(n: int, account: str, currency: str, amount: int, **more) -> PaymentRequest:
        return PaymentRequest(client_id="c", idem_key=f"mix-{n}", fingerprint="aa",
                              transaction_id=f"mix-t{n}", account_id=account, card_id="card",
                              merchant_id="m", amount_minor=amount, currency=currency,
                              merchant_category="misc", country="US", lat=None, lon=None,
                              event_time=datetime(2026, 11, 29, 10, n, tzinfo=UTC), **more)
    outcomes = await ledger.post_payments([
        pay(1, "bob", "USD", 1_000), pay(2, "carol", "EUR", 2_000),
        pay(3, "bob", "USD", 500, decision="decline", reasons=["rule:x"]),
        pay(4, "bob", "USD", 700), pay(5, "carol", "EUR", 300)])
    assert [o.balance_after_minor for o in outcomes] == [9_000, 8_000, 9_000, 8_300, 7_700]
    async with scratch["app"].acquire() as conn:
        report = await verify_ledger(conn)
        settled = dict(await conn.fetch(
            "SELECT currency, sum(balance_minor) FROM accounts WHERE kind = 'settlement' "
            "GROUP BY currency"))
    assert report.ok, report.problems
    # The fixture's EUR payment (2,500) plus this batch's; the decline moved nothing.
    assert settled == {"USD": 1_700, "EUR": 2_500 + 2_300}


async def test_heads_written_once_per_batch_carry_overdraft_and_chains_across_batches(scratch):
    # The batch keeps each cardholder's head in memory and writes it at the end (008): the
    # overdraft check mid-batch must see the batch's own earlier payments, and the next
    # batch must continue both chains from the heads written.
    ledger = Ledger(scratch["app"])
    await ledger.create_account(AccountSpec(account_id="dave", currency="EUR",
                                            home_country="DE", overdraft_limit_minor=500))
    await ledger.post_deposit(client_id="c", idem_key="d-dave", fingerprint=b"f",
                              account_id="dave", amount_minor=3_000, currency="EUR")

    def pay(n: int, amount: int) -> PaymentRequest:
        return PaymentRequest(client_id="c", idem_key=f"heads-{n}", fingerprint="aa",
                              transaction_id=f"heads-t{n}", account_id="dave", card_id="card",
                              merchant_id="m", amount_minor=amount, currency="EUR",
                              merchant_category="misc", country="DE", lat=None, lon=None,
                              event_time=datetime(2026, 11, 29, 11, n, tzinfo=UTC))
    first = await ledger.post_payments([pay(1, 2_000), pay(2, 1_400), pay(3, 1_000),
                                        pay(4, 100)])
    # 3,000 - 2,000 = 1,000; 1,000 - 1,400 = -400 (within the 500 overdraft);
    # -400 - 1,000 would be -1,400: declined, balance unchanged; -400 - 100 = -500: allowed.
    assert [(o.decision, o.balance_after_minor) for o in first] == [
        ("approve", 1_000), ("approve", -400), ("decline", -400), ("approve", -500)]
    second = await ledger.post_payments([pay(5, 1), pay(6, 1)])
    assert [(o.decision, o.balance_after_minor) for o in second] == [
        ("decline", -500), ("decline", -500)]
    async with scratch["app"].acquire() as conn:
        head = await conn.fetchrow("SELECT balance_minor, txn_seq, posting_seq FROM accounts "
                                   "WHERE account_id = 'dave'")
        last_txn = await conn.fetchval("SELECT max(account_txn_seq) FROM transactions "
                                       "WHERE account_id = 'dave'")
        last_posting = await conn.fetchval("SELECT max(seq) FROM postings "
                                           "WHERE account_id = 'dave'")
        report = await verify_ledger(conn)
    assert tuple(head) == (-500, 6, last_posting) and last_txn == 6
    assert last_posting == 4  # the deposit and the three approved payments
    assert report.ok, report.problems
