"""Where and how a merchant's webhooks go right now: URL, delivery flag, live secrets.

Read at every attempt (so a changed URL, a stop or a rotation applies to retries already
queued) through a short cache: a burst for one merchant costs one query per `ttl_s`, and a
change reaches every worker within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg
import msgspec

GONE_REASON = "the endpoint answered 410 Gone"


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    merchant_id: str
    url: str | None
    delivery_enabled: bool
    secrets: list[str]

    @property
    def deliverable(self) -> bool:
        return self.url is not None and self.delivery_enabled and bool(self.secrets)


_QUERY = """
    SELECT m.merchant_id, m.webhook_url AS url, m.delivery_enabled,
           array(SELECT s.secret FROM merchant_secrets s
                  WHERE s.merchant_id = m.merchant_id
                    AND (s.expires_at IS NULL OR s.expires_at > now())
                  ORDER BY s.secret_id DESC) AS secrets
      FROM merchants m WHERE m.merchant_id = $1"""


class EndpointCache:
    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, Endpoint | None]] = {}

    async def get(self, merchant_id: str) -> Endpoint | None:
        """The merchant's endpoint, or None when the merchant does not exist."""
        now = self._clock()
        cached = self._entries.get(merchant_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        row = await self._pool.fetchrow(_QUERY, merchant_id)
        endpoint = None if row is None else Endpoint(
            merchant_id=row["merchant_id"], url=row["url"],
            delivery_enabled=row["delivery_enabled"], secrets=list(row["secrets"]))
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[merchant_id] = (now, endpoint)
        return endpoint

    async def disable_gone(self, merchant_id: str, url: str) -> bool:
        """Stop deliveries to a URL that answered 410; False when the URL changed since."""
        self._entries.pop(merchant_id, None)
        result: str = await self._pool.execute(
            "UPDATE merchants SET delivery_enabled = false, disabled_reason = $3, "
            "updated_at = now() WHERE merchant_id = $1 AND webhook_url = $2 "
            "AND delivery_enabled", merchant_id, url, GONE_REASON)
        return result.endswith(" 1")
