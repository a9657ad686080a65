"""Lua scripts called by SHA inside redis-py pipelines, one round trip per micro-batch.

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

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError


class LuaScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis's script id

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[object]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]


async def run_pipeline(client: redis.Redis, build: Callable[[Pipeline], None],
                       scripts: Sequence[LuaScript]) -> list[object]:
    """Build and execute a pipeline; the commands Redis refused with NOSCRIPT run again once
    `scripts` are loaded, and only those. The first error left raises, as `execute()` does."""
    pipe = client.pipeline(transaction=False)
    build(pipe)
    replies: list[object] = await pipe.execute(raise_on_error=False)
    missed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missed:
        for script in scripts:
            await client.script_load(script.source)
        again = client.pipeline(transaction=False)
        build(again)
        again.command_stack = [again.command_stack[i] for i in missed]
        for i, reply in zip(missed, await again.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
