"""The enrich stage: the cardholder's profile and the velocity features the live rules need.

Profiles come from PostgreSQL through a small in-process cache (one query per batch for the
misses); velocity and the model's card-history summaries come from Redis in one pipeline per
batch. An unknown account fails here (404) before any rule runs. With Redis down, velocity
features are unknown (null), so rules that need them do not match, and the card history is
unknown (NaN, imputed by the model): screening degrades instead of stopping.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from redis.exceptions import RedisError

from ledger.errors import UnknownAccount
from ledger.records import AccountState
from ledger.repository import Ledger
from model.history import HISTORY_FIELDS
from model.scorer import ModelHolder
from rules.engine import RuleSetHolder
from stages.screening import Screening
from stages.velocity import VelocityStore

log = logging.getLogger(__name__)


class ProfileCache:
    """Account profiles by id, kept `ttl_s` (profiles change rarely; balances are not here)."""

    def __init__(self, ledger: Ledger, *, ttl_s: float = 60.0, max_entries: int = 100_000) -> None:
        self._ledger = ledger
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, AccountState]] = {}

    async def get_many(self, account_ids: set[str]) -> dict[str, AccountState]:
        now = time.monotonic()
        found: dict[str, AccountState] = {}
        missing = []
        for account_id in account_ids:
            entry = self._entries.get(account_id)
            if entry is not None and now - entry[0] < self._ttl_s:
                found[account_id] = entry[1]
            else:
                missing.append(account_id)
        if missing:
            if len(self._entries) > self._max_entries:
                self._entries.clear()  # crude but bounded; a miss costs one batched query
            for state in await self._ledger.get_accounts(missing):
                self._entries[state.account_id] = (now, state)
                found[state.account_id] = state
        return found


class EnrichStage:
    def __init__(self, profiles: ProfileCache, velocity: VelocityStore,
                 rules: RuleSetHolder, models: ModelHolder | None = None) -> None:
        self._profiles = profiles
        self._velocity = velocity
        self._rules = rules
        self._models = models or ModelHolder()

    async def __call__(self, batch: list[Screening]) -> list[object]:
        profiles = await self._profiles.get_many({s.request.account_id for s in batch})
        known = [s for s in batch if s.request.account_id in profiles]
        for item in known:
            item.account = profiles[item.request.account_id]
        wanted = self._rules.current.velocity
        history = self._models.current is not None
        if known and (wanted or history):
            try:
                features, summaries = await self._velocity.read(
                    [s.request for s in known], wanted, history=history)
            except RedisError as exc:
                log.warning("velocity unavailable for %d transactions: %s", len(known), exc)
                features = [dict.fromkeys(wanted) for _ in known]
                summaries = np.full((len(known) if history else 0, len(HISTORY_FIELDS)), np.nan)
            for item, values in zip(known, features, strict=True):
                item.velocity = values
            for item, summary in zip(known, summaries, strict=False):
                item.history = summary
        return [s if s.account is not None else UnknownAccount(s.request.account_id)
                for s in batch]
