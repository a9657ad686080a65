"""The stages' Redis pipeline client: packing, URLs, and behaviour against the real Redis."""

from __future__ import annotations

import asyncio
import socket

import hiredis
import pytest
import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stages.resp import Commands, RedisPipelines, reply_error
from tests.conftest import unique


@pytest.mark.parametrize("args", [
    ("EVALSHA", "abc", 2, "k1", b"k2", 0, "", 1.5, -3, 123456789012345, 0.1),
    ("SET", "key", b"\x00\xff binary", "PX", 60000),
    ("SET", "ключ", "ünïcode"),
])
def test_commands_are_packed_exactly_as_redis_py_packs_them(args: tuple) -> None:
    assert hiredis.pack_command(args) == b"".join(Connection().pack_command(*args))


def test_the_builder_queues_plain_tuples() -> None:
    pipe = Commands()
    pipe.evalsha("sha", 1, "k", 5)
    pipe.set("a", b"v", px=100)
    pipe.set("b", "w")
    pipe.command("INCRBY", "c", 2)
    assert pipe.stack == [("EVALSHA", "sha", 1, "k", 5), ("SET", "a", b"v", "PX", 100),
                          ("SET", "b", "w"), ("INCRBY", "c", 2)]


def test_error_replies_become_redis_py_exceptions() -> None:
    assert type(reply_error(hiredis.ReplyError("NOSCRIPT No matching script."))) is NoScriptError
    other = reply_error(hiredis.ReplyError("ERR value is not an integer"))
    assert type(other) is ResponseError and str(other) == "ERR value is not an integer"


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6380/3", {"_host": "127.0.0.1", "_port": 6380, "_unix_path": None,
                                  "_hello": [("SELECT", 3)]}),
    ("redis://localhost", {"_host": "localhost", "_port": 6379, "_hello": []}),
    ("redis://:s%40cret@h/0", {"_host": "h", "_hello": [("AUTH", "s@cret")]}),
    ("redis://app:pw@h:1/2", {"_port": 1, "_hello": [("AUTH", "app", "pw"), ("SELECT", 2)]}),
    ("unix:///run/redis.sock?db=4", {"_unix_path": "/run/redis.sock",
                                     "_hello": [("SELECT", 4)]}),
])
def test_urls_are_read_as_redis_py_reads_them(url: str, expected: dict) -> None:
    client = RedisPipelines.from_url(url)
    assert {name: getattr(client, name) for name in expected} == expected


def test_tls_urls_use_tls_and_other_schemes_are_refused() -> None:
    assert RedisPipelines.from_url("rediss://h:6380/0")._ssl is not None
    assert RedisPipelines.from_url("redis://h:6380/0")._ssl is None
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisPipelines.from_url("http://h:6379")



@pytest.mark.integration
async def test_replies_come_in_order_with_error_replies_in_their_slots(
        redis_client: redis.Redis, redis_pipelines: RedisPipelines) -> None:
    key = unique("sentinel-test-resp")
    replies = await redis_pipelines.execute([
        ("SET", key, "text"), ("INCR", key), ("GET", key), ("CLIENT", "ID")])
    assert replies[0] == b"OK" and replies[2] == b"text"
    assert isinstance(replies[1], ResponseError) and "not an integer" in str(replies[1])
    # The same connection serves the next pipeline.
    assert await redis_pipelines.execute([("CLIENT", "ID")]) == [replies[3]]
    assert await redis_pipelines.execute([]) == []
    await redis_client.delete(key)


@pytest.mark.integration
async def test_a_timed_out_pipeline_drops_its_connection_so_late_replies_reach_nobody(
        redis_client: redis.Redis) -> None:
    client = RedisPipelines.from_url("redis://127.0.0.1:6379/0", timeout_s=0.2)
    [first_id] = await client.execute([("CLIENT", "ID")])
    key = unique("sentinel-test-resp-empty")
    with pytest.raises(RedisTimeoutError, match=r"within 0\.2 s"):
        await client.execute([("BLPOP", key, 1)])  # Redis answers nil after 1 s
    # A new connection answers the next pipeline: its replies, not the BLPOP's late nil.
    [other_id, pong] = await client.execute([("CLIENT", "ID"), ("PING",)])
    assert isinstance(other_id, int) and other_id != first_id and pong == b"PONG"
    await redis_client.delete(key)
    await client.aclose()


@pytest.mark.integration
async def test_a_connection_redis_closed_is_replaced_before_use(
        redis_client: redis.Redis) -> None:
    client = RedisPipelines.from_url("redis://127.0.0.1:6379/0")
    [first_id] = await client.execute([("CLIENT", "ID")])
    assert await redis_client.client_kill_filter(_id=first_id) == 1
    await asyncio.sleep(0.05)  # the close reaches the idle connection
    [second_id] = await client.execute([("CLIENT", "ID")])
    assert second_id != first_id
    await client.aclose()


@pytest.mark.integration
async def test_the_url_database_is_selected(redis_client: redis.Redis) -> None:
    key = unique("sentinel-test-resp-db")
    client = RedisPipelines.from_url("redis://127.0.0.1:6379/1")
    assert await client.execute([("SET", key, "in-1", "PX", 60_000)]) == [b"OK"]
    other = redis.Redis.from_url("redis://127.0.0.1:6379/1")
    assert await other.get(key) == b"in-1" and await redis_client.get(key) is None
    await other.delete(key)
    await other.aclose()
    await client.aclose()


@pytest.mark.integration
async def test_unreachable_or_refusing_redis_raises_connection_errors() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RedisConnectionError, match="cannot reach Redis"):
        await RedisPipelines.from_url(f"redis://127.0.0.1:{port}/0").execute([("PING",)])
    wrong_password = RedisPipelines.from_url("redis://:wrong@127.0.0.1:6379/0")
    with pytest.raises(RedisConnectionError, match="refused the connection"):
        await wrong_password.execute([("PING",)])
