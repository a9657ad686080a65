"""Before a run: the bench's accounts created and funded through the API, and the size of a
real screening answer (the ceiling server answers with as many bytes)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec

from loadtest.workload import Account, EverydayPayments, World, account_body, deposit_body

SETUP_CONCURRENCY = 32


class SetupError(RuntimeError):
    """The server refused to create or fund an account, or to screen the probe payment."""


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                body: dict[str, Any]) -> bytes:
    async with session.post(url, headers=headers, data=msgspec.json.encode(body)) as response:
        answer = await response.read()
        if response.status not in (200, 201):
            raise SetupError(f"POST {url}: {response.status} {answer.decode(errors='replace')}")
        return answer


async def _open_account(session: aiohttp.ClientSession, base_url: str,
                        headers: dict[str, str], account: Account) -> None:
    await _post(session, f"{base_url}/v1/accounts", headers, account_body(account))
    await _post(session, f"{base_url}/v1/accounts/{account.account_id}/deposits",
                {**headers, "Idempotency-Key": f"fund-{account.account_id}"},
                deposit_body(account))


async def open_accounts(base_url: str, headers: dict[str, str], world: World) -> int:
    """Create and fund every account of `world`; returns the size in bytes of the answer to
    one everyday payment (the probe, sent once everything is funded)."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(session: aiohttp.ClientSession, account: Account) -> None:
        async with limit:
            await _open_account(session, base_url, headers, account)

    async with aiohttp.ClientSession() as session:
        async with asyncio.TaskGroup() as group:
            for account in world.accounts:
                group.create_task(one(session, account))
        probe_id = f"{world.accounts[0].account_id}-probe"
        answer = await _post(session, f"{base_url}/v1/transactions",
                             {**headers, "Idempotency-Key": probe_id},
                             EverydayPayments(world, seed=0).body(probe_id, 0))
    return len(answer)
