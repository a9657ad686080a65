"""Open-loop benchmark of the screening endpoint: fixed arrival rate, latency from schedule.

Closed-loop tools hide server stalls (coordinated omission), so each request is timed from the
moment it was *scheduled* to be sent, not from when a free connection let it go. Run against a
server started with `make run` (or `sentinel serve`):

    .venv/bin/python -m loadtest.bench --rate 1000 --seconds 10 --accounts 200

It creates its own accounts (funded so nothing is declined for money), then sends payments at
the given rate and prints throughput, status counts and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter

import aiohttp
import msgspec

from ops.application import Application
from ops.settings import load_settings


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


async def _setup_accounts(session: aiohttp.ClientSession, base: str, headers: dict[str, str],
                          count: int, run: str) -> list[str]:
    accounts = []
    for i in range(count):
        account_id = f"bench-{run}-{i}"
        async with session.post(f"{base}/v1/accounts", headers=headers, data=msgspec.json.encode(
                {"account_id": account_id, "currency": "EUR", "home_country": "DE"})) as r:
            assert r.status in (200, 201), await r.text()
        async with session.post(f"{base}/v1/accounts/{account_id}/deposits",
                                headers={**headers, "Idempotency-Key": f"fund-{account_id}"},
                                data=b'{"amount": "1000000000.00", "currency": "EUR"}') as r:
            assert r.status in (200, 201), await r.text()
        accounts.append(account_id)
    return accounts


async def run(args: argparse.Namespace) -> dict[str, float]:
    settings = load_settings()
    token = Application(settings).tokens().issue("bench", ["admin"], ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    run_id = uuid.uuid4().hex[:8]
    connector = aiohttp.TCPConnector(limit=args.connections)
    latencies_ms: list[float] = []
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        accounts = await _setup_accounts(session, args.url, headers, args.accounts, run_id)
        encoder = msgspec.json.Encoder()
        total = int(args.rate * args.seconds)
        interval_s = 1.0 / args.rate
        start = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            scheduled = start + i * interval_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = encoder.encode({
                "transaction_id": f"b{run_id}-{i}", "account_id": accounts[i % len(accounts)],
                "card_id": f"card-{i % 997}", "merchant_id": f"m-{i % 101}", "amount": "1.00",
                "currency": "EUR", "merchant_category": "grocery_pos", "country": "DE",
                "timestamp": "2026-11-29T10:00:00Z"})
            try:
                async with session.post(f"{args.url}/v1/transactions", data=body,
                                        headers={**headers, "Idempotency-Key": f"b{run_id}-{i}"}
                                        ) as r:
                    await r.read()
                    statuses[r.status] += 1
            except aiohttp.ClientError:
                statuses[0] += 1
            latencies_ms.append((time.perf_counter() - scheduled) * 1000)

        wall = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        wall = time.perf_counter() - wall
    latencies_ms.sort()
    result = {
        "sent": float(total), "rate_target": args.rate, "achieved_rps": total / wall,
        "ok": float(statuses[200]), "p50_ms": percentile(latencies_ms, 0.50),
        "p90_ms": percentile(latencies_ms, 0.90), "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": latencies_ms[-1] if latencies_ms else float("nan"),
        "mean_ms": statistics.fmean(latencies_ms) if latencies_ms else float("nan"),
    }
    print(f"statuses: {dict(statuses)}")
    for key, value in result.items():
        print(f"{key:>12}: {value:,.2f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SENTINEL_BENCH_URL",
                                                        "http://127.0.0.1:8080"))
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--connections", type=int, default=256)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
