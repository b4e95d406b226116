"""`ScriptBatcher`: concurrent callers' script calls share pipelines, and each caller still
gets exactly its own replies and errors, in order."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.scripts import ScriptCall
from usersync.redis_server import EmbeddedRedis, free_port
from workers.batching import WRITERS, ScriptBatcher

APPEND = "redis.call('RPUSH', KEYS[1], ARGV[1]); return redis.call('LLEN', KEYS[1])"
FAIL = "return redis.error_reply('refused ' .. ARGV[1])"


async def test_concurrent_callers_get_their_own_replies_in_order(redis: Redis) -> None:
    """Each of 50 concurrent callers gets its own calls' replies, in its order; an error
    Redis answers one call is that call's reply alone."""
    append, fail = redis.register_script(APPEND), redis.register_script(FAIL)
    batcher = ScriptBatcher(redis)

    async def caller(n: int) -> list[object]:
        return await batcher.send(
            [
                ScriptCall(append, [f"batch:{n}"], [f"{n}-a"]),
                ScriptCall(fail, [], [n]),
                ScriptCall(append, [f"batch:{n}"], [f"{n}-b"]),
            ]
        )

    answers = await asyncio.gather(*(caller(n) for n in range(50)))
    for n, (first, error, second) in enumerate(answers):
        assert (first, second) == (1, 2)
        assert isinstance(error, ResponseError) and str(error) == f"refused {n}"
        assert await redis.lrange(f"batch:{n}", 0, -1) == [f"{n}-a".encode(), f"{n}-b".encode()]


async def test_concurrent_callers_share_connections(redis_server: EmbeddedRedis) -> None:
    """200 concurrent callers are served through at most WRITERS connections: their calls
    went in shared pipelines, not one round trip each."""
    client = Redis.from_url(redis_server.url)
    try:
        append = client.register_script(APPEND)
        batcher = ScriptBatcher(client)
        replies = await asyncio.gather(
            *(batcher.send([ScriptCall(append, ["batch:shared"], [n])]) for n in range(200))
        )
        assert sorted(reply[0] for reply in replies) == list(range(1, 201))
        pool = client.connection_pool
        assert 1 <= len(pool._available_connections) + len(pool._in_use_connections) <= WRITERS
    finally:
        await client.delete("batch:shared")
        await client.aclose()


async def test_a_script_redis_lost_is_loaded_again(redis: Redis) -> None:
    """After SCRIPT FLUSH (a restarted Redis) the calls still run and answer."""
    append = redis.register_script(APPEND)
    batcher = ScriptBatcher(redis)
    await batcher.send([ScriptCall(append, ["batch:lost"], ["x"])])
    await redis.script_flush()
    assert await batcher.send([ScriptCall(append, ["batch:lost"], ["y"])]) == [2]


async def test_a_connection_error_fails_every_caller_and_the_next_send_too() -> None:
    """With Redis unreachable every caller of the pipeline gets the connection error, and a
    later send gets its own (no writer left stuck)."""
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        append = client.register_script(APPEND)
        batcher = ScriptBatcher(client)
        outcomes = await asyncio.gather(
            *(batcher.send([ScriptCall(append, ["k"], [n])]) for n in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes)
        with pytest.raises(RedisConnectionError):
            await batcher.send([ScriptCall(append, ["k"], [9])])
    finally:
        await client.aclose()
