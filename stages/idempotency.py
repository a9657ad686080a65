"""Idempotency in Redis: claim keys with in-flight markers, remember outcomes, release.

The admission stage claims the keys of a batch inside the rate-limit script
(`stages/admit.py`): an absent key is claimed with an in-flight marker if the request is
allowed; a known key answers the request without a limit: an in-flight marker means 409, a
finished record is replayed, another fingerprint is 422. The
respond stage remembers outcomes. Redis is only the fast path: when it is down every item goes
on and the ledger's UNIQUE (client, key) decides.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from ledger.records import PaymentRecord
from stages.resp import Commands
from stages.screening import Screening

log = logging.getLogger(__name__)

# Compare-and-delete: only the owner of an in-flight marker (ARGV[i] for KEYS[i]) may release
# it. Returns how many were released.
_RELEASE_SCRIPT = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then released = released + redis.call('DEL', key) end
end
return released
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
        self._releasing: list[tuple[str, bytes]] = []  # asked for in this turn of the loop
        self._released: asyncio.Future[None] | None = None  # when they are
        self._release_task: asyncio.Task[None] | None = None  # held: the loop keeps no ref

    @property
    def inflight_ttl_ms(self) -> int:
        """How long a claim's in-flight marker lives (a crashed edge's claims expire)."""
        return self._inflight_ttl_ms

    def key(self, client_id: str, idem_key: str) -> str:
        return f"{self._prefix}:idem:{client_id}:{idem_key}"

    def new_marker(self, fingerprint: str) -> bytes:
        return self._encode(CachedOutcome(fingerprint=fingerprint, token=os.urandom(8).hex()))

    def queue_remember(self, pipe: Commands, items: Sequence[Screening]) -> None:
        """Queue the storing of outcomes (idempotent: the same value again)."""
        for item in items:
            outcome = CachedOutcome(fingerprint=item.request.fingerprint, record=item.record)
            pipe.set(item.cache_key, self._encode(outcome), px=self._ttl_ms)

    async def release(self, item: Screening) -> None:
        """Drop our in-flight marker after a failure, so a retry is not told 409.

        The releases asked for in one turn of the event loop go to Redis in one script call:
        under overload a whole batch of requests expires at once, and one call each ran out
        of redis-py's connections (100) and left their markers. Never raises: a Redis failure
        is logged once per call and the markers expire by themselves
        (SENTINEL_IDEMPOTENCY_INFLIGHT_TTL_S)."""
        if not item.marker:
            return
        self._releasing.append((item.cache_key, item.marker))
        if self._released is None:
            loop = asyncio.get_running_loop()
            self._released = loop.create_future()
            self._release_task = loop.create_task(self._release_pending(self._released))
        # Shielded: a caller cancelled (its client went away) must not cancel the others'.
        await asyncio.shield(self._released)

    async def _release_pending(self, released: asyncio.Future[None]) -> None:
        # Runs after the callers of this turn have queued theirs; later ones start a new call.
        pending, self._releasing, self._released = self._releasing, [], None
        try:
            await self._release(keys=[key for key, _ in pending],
                                args=[marker for _, marker in pending])
        except RedisError as exc:
            log.warning("could not release %d idempotency marker(s), they expire within %d s: "
                        "%s", len(pending), self._inflight_ttl_ms // 1000, exc)
        finally:
            released.set_result(None)

    async def forget_all(self) -> None:
        """Delete every idempotency key under this prefix (tests and operators only)."""
        async for key in self._client.scan_iter(match=f"{self._prefix}:idem:*", count=1000):
            await self._client.delete(key)
