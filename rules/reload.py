"""Hot reload: every process rebuilds its RuleSet within a second of any rule or list change.

A dedicated connection LISTENs on `sentinel_rules` (a trigger notifies on every new rule
version and every list change); a notification wakes the reload loop at once. A slower poll
(`poll_s`) covers notifications lost while that connection was down.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from rules.engine import RuleSet, RuleSetHolder
from rules.store import RuleStore

log = logging.getLogger(__name__)

CHANNEL = "sentinel_rules"


class RuleReloader:
    def __init__(self, store: RuleStore, holder: RuleSetHolder, dsn: str, *,
                 poll_s: float = 5.0) -> None:
        self._store = store
        self._holder = holder
        self._dsn = dsn
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.last_reload_s = 0.0

    async def load(self) -> RuleSet:
        version, rules = await self._store.live()
        rule_set = RuleSet(version, rules)
        rule_set.attach_lists(await self._store.load_lists(sorted(rule_set.list_names)))
        self._holder.current = rule_set
        self.reloads += 1
        self.last_reload_s = time.monotonic()
        return rule_set

    async def start(self) -> None:
        await self.load()
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="rule-reloader")

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self._dsn, timeout=2)
            await self._listener.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("rule change notifications unavailable, polling every %ss: %s",
                        self._poll_s, exc)
            self._listener = None

    def _notified(self, *args: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.load()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Keep screening with the rule set we have; try again at the next wake-up.
                log.warning("rule reload failed, keeping version %d: %s",
                            self._holder.current.version, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
