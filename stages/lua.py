"""Lua scripts called by SHA inside redis-py pipelines, one round trip per micro-batch.

redis-py's own `Script` objects make every `pipeline.execute()` send `SCRIPT EXISTS` first: one
more round trip per batch on the hot path (py-spy: `Pipeline.load_scripts`, BENCHMARKS.md).
Here the SHA is computed locally and the pipeline carries plain EVALSHA; when Redis answers
NOSCRIPT (restarted, or `SCRIPT FLUSH`) the scripts are loaded and the pipeline is built and
run once more, so only pipelines whose commands may safely run twice use `run_pipeline`.
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
    """Build and execute a pipeline; on NOSCRIPT load `scripts` and run it again (once)."""
    pipe = client.pipeline(transaction=False)
    build(pipe)
    try:
        replies: list[object] = await pipe.execute()
    except NoScriptError:
        for script in scripts:
            await client.script_load(script.source)
        pipe = client.pipeline(transaction=False)
        build(pipe)
        replies = await pipe.execute()
    return replies
