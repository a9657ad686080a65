"""The respond stage: after the commit, remember outcomes and update velocity history.

Both are Redis writes in one pipeline (one round trip) per micro-batch. They run after the
commit, so a Redis failure here costs only speed (a retry is replayed by the ledger) and the
batch's transactions missing from velocity history, never correctness of the ledger.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from stages.idempotency import IdempotencyCache
from stages.lua import run_pipeline
from stages.resp import Commands, RedisPipelines
from stages.screening import Screening
from stages.velocity import VelocityStore

log = logging.getLogger(__name__)


class RespondStage:
    def __init__(self, client: RedisPipelines, cache: IdempotencyCache,
                 velocity: VelocityStore | None = None) -> None:
        self._client = client
        self._cache = cache
        self._velocity = velocity

    async def __call__(self, batch: list[Screening]) -> list[object]:
        fresh = [s.request for s in batch if s.record is not None and not s.record.replayed]
        velocity = self._velocity

        def build(pipe: Commands) -> None:
            self._cache.queue_remember(pipe, batch)
            if velocity is not None:
                velocity.queue_record(pipe, fresh)

        try:
            await run_pipeline(self._client, build, velocity.scripts if velocity else ())
        except RedisError as exc:
            log.warning("could not remember %d outcomes nor record %d transactions in velocity "
                        "history: %s", len(batch), len(fresh), exc)
        return [item.record for item in batch]
