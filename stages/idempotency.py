"""The idempotency stage: answers retries from Redis before they cost a ledger round trip.

One pipelined `SET key marker NX PX ttl GET` per micro-batch. An absent key is claimed with an
in-flight marker; an in-flight marker means 409, a finished record is replayed, another
fingerprint is 422. Redis is only the fast path: when it is down every item goes on and the
ledger's UNIQUE (client, key) decides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import msgspec
import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from ledger.errors import IdempotencyKeyReused
from ledger.records import PaymentRecord
from pipeline import Finish
from stages.screening import RequestInFlight, Screening

log = logging.getLogger(__name__)

# Compare-and-delete: only the owner of an in-flight marker may release it.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CachedOutcome(msgspec.Struct, array_like=True):
    """What Redis holds under an idempotency key: in flight (record None) or finished."""

    fingerprint: str
    token: str = ""
    record: PaymentRecord | None = None


class IdempotencyCache:
    """Redis side of idempotency: claim, remember and release keys."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int,
                 inflight_ttl_s: int) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_ms = ttl_s * 1000
        self._inflight_ttl_ms = inflight_ttl_s * 1000
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(CachedOutcome).decode
        self._release = client.register_script(_RELEASE_SCRIPT)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def key(self, client_id: str, idem_key: str) -> str:
        return f"{self._prefix}:idem:{client_id}:{idem_key}"

    def new_marker(self, fingerprint: str) -> bytes:
        return self._encode(CachedOutcome(fingerprint=fingerprint, token=os.urandom(8).hex()))

    async def claim(self, items: Sequence[Screening]) -> list[CachedOutcome | None]:
        """Claim every key not yet known; returns what was there before (None: claimed)."""
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            pipe.set(item.cache_key, item.marker, nx=True, px=self._inflight_ttl_ms, get=True)
        previous = await pipe.execute()
        return [None if raw is None else self._decode(raw) for raw in previous]

    def queue_remember(self, pipe: Pipeline, items: Sequence[Screening]) -> None:
        """Queue the storing of outcomes (idempotent: the same value again)."""
        for item in items:
            outcome = CachedOutcome(fingerprint=item.request.fingerprint, record=item.record)
            pipe.set(item.cache_key, self._encode(outcome), px=self._ttl_ms)

    async def remember(self, items: Sequence[Screening]) -> None:
        pipe = self._client.pipeline(transaction=False)
        self.queue_remember(pipe, items)
        await pipe.execute()

    async def release(self, item: Screening) -> None:
        """Drop our in-flight marker after a failure, so a retry is not told 409."""
        if item.marker:
            await self._release(keys=[item.cache_key], args=[item.marker])

    async def forget_all(self) -> None:
        """Delete every idempotency key under this prefix (tests and operators only)."""
        async for key in self._client.scan_iter(match=f"{self._prefix}:idem:*", count=1000):
            await self._client.delete(key)


class IdempotencyStage:
    """Pipeline handler: claim keys in one Redis round trip per micro-batch."""

    def __init__(self, cache: IdempotencyCache) -> None:
        self._cache = cache

    async def __call__(self, batch: list[Screening]) -> list[object]:
        for item in batch:
            item.marker = self._cache.new_marker(item.request.fingerprint)
        try:
            previous = await self._cache.claim(batch)
        except RedisError as exc:
            log.warning("idempotency cache unavailable, falling back to the ledger: %s", exc)
            for item in batch:
                item.marker = b""
            return list(batch)
        return [self._decide(item, prior) for item, prior in zip(batch, previous, strict=True)]

    @staticmethod
    def _decide(item: Screening, prior: CachedOutcome | None) -> object:
        if prior is None:
            return item
        item.marker = b""
        if prior.fingerprint != item.request.fingerprint:
            return IdempotencyKeyReused()
        if prior.record is None:
            return RequestInFlight()
        return Finish(msgspec.structs.replace(prior.record, replayed=True))
