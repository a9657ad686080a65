"""SIGTERM during a burst: every accepted request is answered and recorded, nothing else is."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import msgspec

from ops.application import Application
from tests.conftest import unique, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_sigterm_during_burst_loses_nothing(database, pool):
    port = _free_port()
    env = {**os.environ, "SENTINEL_DATABASE_URL": database.database_url,
           "SENTINEL_ADMIN_DATABASE_URL": database.admin_database_url,
           "SENTINEL_REDIS_PREFIX": database.redis_prefix,
           "SENTINEL_JWT_SECRET": database.jwt_secret, "SENTINEL_HTTP_PORT": str(port),
           "SENTINEL_LOG_LEVEL": "WARNING",
           "SENTINEL_PROCESSES": "1",  # one edge process; tests/ops/test_supervisor.py has N
           "SENTINEL_RATE_LIMIT_CARD_PER_S": "0"}  # the burst pays with one card
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    token = Application(database).tokens().issue("shutdown-test", ["admin"])
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    account = unique("acct")
    try:
        async with aiohttp.ClientSession() as session:
            async def ready() -> bool:
                try:
                    async with session.get(f"{base}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False
            await wait_for(ready, timeout_s=30)
            async with session.post(f"{base}/v1/accounts", headers=auth, data=msgspec.json.encode(
                    {"account_id": account, "currency": "EUR", "home_country": "DE"})) as r:
                assert r.status == 201
            async with session.post(f"{base}/v1/accounts/{account}/deposits",
                                    headers={**auth, "Idempotency-Key": unique("d")},
                                    data=b'{"amount": "100000.00", "currency": "EUR"}') as r:
                assert r.status == 201

            answered: list[str] = []
            refused = 0
            first_answers = asyncio.Event()

            async def pay(i: int) -> None:
                nonlocal refused
                txn_id = f"{account}-t{i}"
                body = {"transaction_id": txn_id, "account_id": account, "card_id": "c",
                        "merchant_id": "m", "amount": "1.00", "currency": "EUR",
                        "merchant_category": "misc", "country": "DE",
                        "timestamp": "2026-11-29T10:00:00Z"}
                try:
                    async with session.post(f"{base}/v1/transactions",
                                            headers={**auth, "Idempotency-Key": f"k{i}"},
                                            data=msgspec.json.encode(body)) as r:
                        payload = await r.json(content_type=None)
                        if r.status == 200:
                            answered.append(txn_id)
                            if len(answered) >= 20:
                                first_answers.set()
                        else:
                            assert r.status == 503, payload
                            refused += 1
                except aiohttp.ClientConnectionError:
                    refused += 1  # never accepted: the listener was already closed

            tasks = [asyncio.create_task(pay(i)) for i in range(400)]
            await asyncio.wait_for(first_answers.wait(), 30)
            proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks)
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    print(f"answered={len(answered)} refused={refused}")
    assert code == 0, (await proc.stderr.read()).decode()
    recorded = {r["transaction_id"] for r in await pool.fetch(
        "SELECT transaction_id FROM transactions WHERE account_id = $1", account)}
    assert recorded == set(answered)
    assert len(answered) + refused == 400
    assert len(answered) >= 20
