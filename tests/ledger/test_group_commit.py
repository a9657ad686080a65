"""The group-commit function directly: batches with twins, and a deadlock that is retried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec

from ledger.errors import IdempotencyKeyReused, TransactionExists, UnknownAccount
from ledger.records import AccountSpec, PaymentRecord, PaymentRequest, RuleHit
from tests.conftest import unique


async def _account(ledger, balance_minor: int = 100_000) -> str:
    account_id = unique("acct")
    await ledger.create_account(AccountSpec(account_id=account_id, currency="EUR",
                                            home_country="DE"))
    await ledger.post_deposit(client_id="c", idem_key=unique("d"), fingerprint=b"f",
                              account_id=account_id, amount_minor=balance_minor,
                              currency="EUR")
    return account_id


def _payment(account_id: str, **changes) -> PaymentRequest:
    base = PaymentRequest(client_id="c", idem_key=unique("k"), fingerprint="aa",
                          transaction_id=unique("t"), account_id=account_id, card_id="card",
                          merchant_id="m", amount_minor=1_000, currency="EUR",
                          merchant_category="misc", country="DE", lat=None, lon=None,
                          event_time=datetime(2026, 11, 29, tzinfo=UTC))
    return msgspec.structs.replace(base, **changes)


async def test_one_batch_with_twins_and_refusals(ledger):
    account = await _account(ledger)
    first = _payment(account)
    outcomes = await ledger.post_payments([
        first,
        first,                                                    # exact twin: replay
        msgspec.structs.replace(first, fingerprint="bb"),         # same key, other body
        _payment(account, transaction_id=first.transaction_id),   # same txn, other key
        _payment("nobody"),
        _payment(account, decision="flag", reasons=["rule_x"]),
    ])
    assert isinstance(outcomes[0], PaymentRecord) and not outcomes[0].replayed
    assert isinstance(outcomes[1], PaymentRecord) and outcomes[1].replayed
    assert outcomes[1].balance_after_minor == outcomes[0].balance_after_minor == 99_000
    assert isinstance(outcomes[2], IdempotencyKeyReused)
    assert isinstance(outcomes[3], TransactionExists)
    assert isinstance(outcomes[4], UnknownAccount)
    assert outcomes[5].decision == "flag" and outcomes[5].reasons == ["rule_x"]
    assert outcomes[5].balance_after_minor == 98_000


async def test_crossed_key_locks_deadlock_and_the_batch_is_retried(ledger, pool):
    a, b = await _account(ledger), await _account(ledger)
    k1, k2 = _payment(a), _payment(b)
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        # Another session holds key 2 and will want key 1: the batch below holds key 1 and
        # waits for key 2, a deadlock PostgreSQL breaks by aborting the batch (it waited first).
        await other.execute("INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, "
                            "transaction_id) VALUES ('c', $1, '\\x00', $2)",
                            k2.idem_key, unique("t"))
        batch = asyncio.create_task(ledger.post_payments([k1, k2]))
        await asyncio.sleep(0.2)  # let the batch take key 1 and block on key 2
        blocked = asyncio.create_task(other.execute(
            "INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, transaction_id) "
            "VALUES ('c', $1, '\\x00', 'x') ON CONFLICT DO NOTHING", k1.idem_key))
        await asyncio.wait({batch, blocked}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait_for(blocked, 10)
        await tx.rollback()
    outcomes = await asyncio.wait_for(batch, 10)
    assert [type(o) for o in outcomes] == [PaymentRecord, PaymentRecord]
    assert [o.replayed for o in outcomes] == [False, False]


async def test_a_batch_finds_its_accounts_by_key_never_by_scanning_them_all(admin_pool):
    # Regression: the lock query used to scan the whole accounts table for every batch, so
    # posting slowed down with every account opened. Measured in one transaction, rolled back.
    async with admin_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        prefix = unique("bulk")
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency, balance_minor) "
            "SELECT $1 || '-' || n, 'cardholder', 'EUR', 10000 "
            "FROM generate_series(1, 5000) AS n", prefix)
        await conn.execute("ANALYZE accounts")
        batch = [_payment(f"{prefix}-{n}") for n in (1, 2500, 5000)]
        rows = await conn.fetch("SELECT status FROM ledger_post_payments($1::jsonb)",
                                msgspec.json.encode(batch).decode())
        scans = await conn.fetchval(
            "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'accounts'")
        await tx.rollback()  # the bulk accounts stay out of the test database
    assert [row["status"] for row in rows] == ["recorded"] * 3
    assert scans == 0


async def test_rule_hits_of_a_batch_are_written_for_their_own_transactions(ledger, pool):
    # 008 writes the batch's rule hits in one statement at its end: each hit must stay with
    # its transaction, payments without hits get none, and a refused payment's hits vanish.
    change_ids = [r["change_id"] for r in await pool.fetch(
        "SELECT change_id FROM rule_versions ORDER BY change_id LIMIT 2")]
    assert len(change_ids) == 2  # the default rules (migration 004)
    account = await _account(ledger)
    hit = [RuleHit(change_id=change_ids[0], shadow=True)]
    both = [RuleHit(change_id=change_ids[0], shadow=False),
            RuleHit(change_id=change_ids[1], shadow=True)]
    batch = [_payment(account, hits=hit), _payment(account),
             _payment("nobody", hits=hit), _payment(account, hits=both, decision="decline")]
    outcomes = await ledger.post_payments(batch)
    assert isinstance(outcomes[2], UnknownAccount)
    rows = await pool.fetch(
        "SELECT transaction_id, change_id, shadow FROM transaction_rule_hits "
        "WHERE transaction_id = ANY($1::text[]) ORDER BY transaction_id, change_id",
        [p.transaction_id for p in batch])
    assert sorted((r["transaction_id"], r["change_id"], r["shadow"]) for r in rows) == sorted([
        (batch[0].transaction_id, change_ids[0], True),
        (batch[3].transaction_id, change_ids[0], False),
        (batch[3].transaction_id, change_ids[1], True)])


async def test_answers_are_the_rows_replays_included(ledger):
    # The function answers as it decides (migration 011): every answered field must be what
    # the row holds, for new payments, a twin replayed inside the batch and a replay of a
    # committed one, with one cardholder in a batch (heads moved by key) and with several.
    one, two = await _account(ledger), await _account(ledger)
    first = _payment(one, decision="flag", reasons=["rule_x"], risk_score=0.734512,
                     rules_version=7, model_version="m-1")
    batch = [first, first, _payment(one, amount_minor=2_500)]
    again = [first, _payment(two), _payment(one), _payment(two, amount_minor=4_000)]
    answers = await ledger.post_payments(batch) + await ledger.post_payments(again)
    assert [a.replayed for a in answers] == [False, True, False, True, False, False, False]
    for answer in answers:
        assert isinstance(answer, PaymentRecord)
        row = await ledger.get_transaction(answer.transaction_id)
        assert (answer.decision, answer.risk_score, answer.reasons, answer.balance_after_minor,
                answer.currency, answer.rules_version, answer.model_version,
                answer.recorded_at) == (
                row.decision, row.risk_score, row.reasons, row.balance_after_minor,
                row.currency, row.rules_version, row.model_version, row.recorded_at)
    assert answers[0].reasons == ["rule_x"] and answers[0].rules_version == 7
    assert answers[0].recorded_at < answers[2].recorded_at
    assert [a.balance_after_minor for a in answers] == [
        99_000, 99_000, 96_500, 99_000, 99_000, 95_500, 95_000]
    assert (await ledger.get_account(one)).balance_minor == 95_500
    assert (await ledger.get_account(two)).balance_minor == 95_000
