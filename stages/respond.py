"""The respond stage: remembers committed outcomes in Redis, then hands back the record.

Runs after the commit, so a Redis failure here costs only speed on a later retry (the
ledger replays it), never correctness.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from stages.idempotency import IdempotencyCache
from stages.screening import Screening

log = logging.getLogger(__name__)


class RespondStage:
    def __init__(self, cache: IdempotencyCache) -> None:
        self._cache = cache

    async def __call__(self, batch: list[Screening]) -> list[object]:
        try:
            await self._cache.remember(batch)
        except RedisError as exc:
            log.warning("could not remember %d idempotent outcomes in Redis: %s", len(batch), exc)
        return [item.record for item in batch]
