"""Lua scripts by SHA in pipelines: Redis forgetting its scripts costs a reload, not a batch."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from stages.lua import LuaScript, ScriptKeys, run_pipeline
from stages.resp import RedisPipelines
from tests.conftest import unique

pytestmark = pytest.mark.integration

ECHO = LuaScript("return {KEYS[1], ARGV[1]}")
INCR = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


async def test_scripts_are_loaded_when_redis_answers_noscript(
        redis_client: redis.Redis, redis_pipelines: RedisPipelines):
    key = unique("sentinel-test-lua")
    await redis_client.script_flush()
    replies = await run_pipeline(
        redis_pipelines, lambda pipe: (ECHO.queue(pipe, [key], ["a"]), INCR.queue(pipe, [key], [2])),
        [ECHO, INCR])
    assert replies == [[key.encode(), b"a"], 2]
    assert await redis_client.script_exists(ECHO.sha, INCR.sha) == [True, True]
    # Loaded now: the next pipeline is one round trip, no reload.
    replies = await run_pipeline(redis_pipelines, lambda pipe: INCR.queue(pipe, [key], [3]),
                                 [INCR])
    assert replies == [5]
    await redis_client.delete(key)


async def test_a_pipeline_with_plain_commands_and_scripts_runs_once_when_loaded(
        redis_client: redis.Redis, redis_pipelines: RedisPipelines):
    key = unique("sentinel-test-lua")
    await redis_client.script_load(INCR.source)

    def build(pipe):
        pipe.set(key + ":plain", "x")
        INCR.queue(pipe, [key], [1])

    assert await run_pipeline(redis_pipelines, build, [INCR]) == [b"OK", 1]
    await redis_client.delete(key, key + ":plain")


async def test_after_noscript_only_the_refused_commands_run_again(
        redis_client: redis.Redis, redis_pipelines: RedisPipelines):
    # INCR is loaded and runs; ECHO is not and is refused. Running the whole pipeline again
    # would add 2 twice: only ECHO may run again.
    key = unique("sentinel-test-lua")
    await redis_client.script_flush()
    await redis_client.script_load(INCR.source)

    def build(pipe):
        INCR.queue(pipe, [key], [2])
        ECHO.queue(pipe, [key], ["b"])
        pipe.command("INCRBY", key + ":plain", 1)

    assert await run_pipeline(redis_pipelines, build, [ECHO, INCR]) == [2, [key.encode(), b"b"], 1]
    assert int(await redis_client.get(key)) == 2
    assert int(await redis_client.get(key + ":plain")) == 1
    await redis_client.delete(key, key + ":plain")


def test_script_keys_name_each_distinct_key_once_by_its_lua_index():
    keys = ScriptKeys()
    assert [keys.index("a"), keys.index("b"), keys.index("a")] == [1, 2, 1]
    assert keys.append("a") == 3  # a key of its own, on purpose
    assert keys.keys == ["a", "b", "a"]
