"""The respond stage: after the commit, remember outcomes and update velocity history.

Both are Redis writes in one pipeline per micro-batch. They run after the commit, so a Redis
failure here costs only speed (a retry is replayed by the ledger) or one transaction missing
from velocity history, never correctness of the ledger.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from stages.idempotency import IdempotencyCache
from stages.screening import Screening
from stages.velocity import VelocityStore

log = logging.getLogger(__name__)


class RespondStage:
    def __init__(self, cache: IdempotencyCache, velocity: VelocityStore | None = None) -> None:
        self._cache = cache
        self._velocity = velocity

    async def __call__(self, batch: list[Screening]) -> list[object]:
        try:
            await self._cache.remember(batch)
        except RedisError as exc:
            log.warning("could not remember %d idempotent outcomes in Redis: %s", len(batch), exc)
        fresh = [s.request for s in batch if s.record is not None and not s.record.replayed]
        if self._velocity is not None and fresh:
            try:
                await self._velocity.record(fresh)
            except RedisError as exc:
                log.warning("velocity history missed %d transactions: %s", len(fresh), exc)
        return [item.record for item in batch]
