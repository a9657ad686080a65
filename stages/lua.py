"""Lua scripts called by SHA inside pipelines (stages/resp.py), one round trip per micro-batch.

redis-py's own `Script` objects make every `pipeline.execute()` send `SCRIPT EXISTS` first: one
more round trip per batch on the hot path (py-spy: `Pipeline.load_scripts`, BENCHMARKS.md).
Here the SHA is computed locally and the pipeline carries plain EVALSHA. A command Redis
answers NOSCRIPT (restarted, or `SCRIPT FLUSH`) did not run: the scripts are loaded and
exactly those commands run again, so a script that must not run twice (the admission script
consumes rate limits and claims keys) is as safe in `run_pipeline` as a read-only one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from redis.exceptions import NoScriptError

from stages.resp import Commands, RedisPipelines


class ScriptKeys:
    """The KEYS of one script call: each distinct key once, which the script finds by its
    1-based index (ARGV then carries indexes, not names)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, key: str) -> int:
        at = self._index.get(key)
        if at is None:
            self.keys.append(key)
            at = self._index[key] = len(self.keys)
        return at

    def append(self, key: str) -> int:
        """`key` as an entry of its own, even if it is there already; its index."""
        self.keys.append(key)
        return len(self.keys)


class LuaScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis's script id

    def queue(self, pipe: Commands, keys: Sequence[str], args: Sequence[object]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]


async def run_pipeline(client: RedisPipelines, build: Callable[[Commands], None],
                       scripts: Sequence[LuaScript]) -> list[object]:
    """Build and execute a pipeline; the commands Redis refused with NOSCRIPT run again once
    `scripts` are loaded, and only those. The first error left raises, as redis-py's
    `execute()` does."""
    pipe = Commands()
    build(pipe)
    replies = await client.execute(pipe.stack)
    missed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missed:
        for loaded in await client.execute([("SCRIPT", "LOAD", s.source) for s in scripts]):
            if isinstance(loaded, Exception):
                raise loaded
        again = [pipe.stack[i] for i in missed]
        for i, reply in zip(missed, await client.execute(again), strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
