"""Group-commit benchmark of the ledger alone: batches of payments straight into PostgreSQL.

    .venv/bin/python -m loadtest.ledger_bench --batch 256 --batches 40 --workers 4

Uses its own scratch database (created and dropped), so it never touches real data.
Prints payments per second and milliseconds per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from ledger.migrate import drop_database, migrate
from ledger.records import AccountSpec, PaymentRequest
from ledger.repository import Ledger
from loadtest.servers import services_cpu_s
from ops.settings import load_settings


def _db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def run(args: argparse.Namespace) -> None:
    settings = load_settings()
    name = f"sentinel_bench_{uuid.uuid4().hex[:8]}"
    admin, app = _db(settings.admin_database_url, name), _db(settings.database_url, name)
    await migrate(admin, app)
    pool = await asyncpg.create_pool(app, min_size=args.workers, max_size=args.workers)
    try:
        ledger = Ledger(pool)
        accounts = [f"a{i}" for i in range(args.accounts)]
        for account in accounts:
            await ledger.create_account(AccountSpec(account_id=account, currency="EUR",
                                                    home_country="DE"))
            await ledger.post_deposit(client_id="b", idem_key=f"d-{account}", fingerprint=b"f",
                                      account_id=account, amount_minor=10**12, currency="EUR")
        now = datetime.now(UTC)
        counter = iter(range(10**9))

        def batch() -> list[PaymentRequest]:
            out = []
            for _ in range(args.batch):
                i = next(counter)
                out.append(PaymentRequest(
                    client_id="b", idem_key=f"k{i}", fingerprint="ab", transaction_id=f"t{i}",
                    account_id=accounts[i % len(accounts)], card_id="c", merchant_id="m",
                    amount_minor=100, currency="EUR", merchant_category="misc", country="DE",
                    lat=None, lon=None, event_time=now))
            return out

        batch_ms: list[float] = []

        async def worker(n: int) -> None:
            for _ in range(n):
                b = batch()
                started = time.perf_counter()
                await ledger.post_payments(b)
                batch_ms.append((time.perf_counter() - started) * 1000)

        per_worker = args.batches // args.workers
        pg_cpu, started = services_cpu_s()["postgresql"], time.perf_counter()
        await asyncio.gather(*(worker(per_worker) for _ in range(args.workers)))
        elapsed = time.perf_counter() - started
        pg_cpu = services_cpu_s()["postgresql"] - pg_cpu  # before the pool's backends exit
        total = per_worker * args.workers * args.batch
        batch_ms.sort()
        print(f"payments: {total}  batch: {args.batch}  workers: {args.workers}  "
              f"accounts: {args.accounts}")
        print(f"throughput: {total / elapsed:,.0f} payments/s")
        print(f"batch ms: p50 {batch_ms[len(batch_ms) // 2]:.1f}  "
              f"p99 {batch_ms[int(len(batch_ms) * 0.99)]:.1f}  "
              f"per payment {sum(batch_ms) / total:.3f} ms")
        print(f"PostgreSQL CPU per payment: {pg_cpu / total * 1000:.3f} ms "
              "(every postgres process on this machine)")
    finally:
        await pool.close()
        await drop_database(admin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
