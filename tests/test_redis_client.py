"""`core.redis_client`: hiredis packing must send exactly what redis-py would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis_client import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
    connect,
    pack_with_hiredis,
    reraise_if_cancelling,
)
from usersync.redis_server import EmbeddedRedis

ARGS = st.lists(
    st.text(max_size=20)
    | st.binary(max_size=20)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False),
    max_size=12,
)


@given(st.sampled_from(["EVALSHA", "SET", "CONFIG GET", b"HSET", b"CLIENT LIST"]), ARGS)
def test_same_bytes_as_redis_py(command: Any, args: list[Any]) -> None:
    ours = b"".join(HiredisConnection().pack_command(command, *args))
    theirs = b"".join(Connection().pack_command(command, *args))
    assert ours == theirs


@pytest.mark.parametrize("bad", [None, True, object()])
def test_an_unpackable_argument_is_a_data_error(bad: Any) -> None:
    with pytest.raises(DataError):
        HiredisConnection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", HiredisConnection),
        ("rediss://127.0.0.1:6380/0", HiredisSSLConnection),
        ("unix:///tmp/redis.sock", HiredisUnixConnection),
    ],
)
async def test_each_scheme_keeps_its_transport(url: str, kind: type) -> None:
    client = connect(url)
    assert client.connection_pool.connection_class is kind
    await client.aclose()


async def test_scripts_with_many_arguments_round_trip(redis_server: EmbeddedRedis) -> None:
    client = connect(redis_server.url)
    try:
        keys = [f"k{n}" for n in range(13)]
        values = ["é" * 50, b"\x00\xff", 12345678901234, 0.25, "x" * 10_000]
        reply = await client.eval(  # type: ignore[misc]
            "return {#KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], #ARGV[5]}",
            len(keys),
            *keys,
            *values,
        )
        assert reply == [13, "é".encode() * 50, b"\x00\xff", b"12345678901234", b"0.25", 10_000]
    finally:
        await client.aclose()


async def test_a_pool_built_elsewhere_opens_hiredis_connections(
    redis_server: EmbeddedRedis,
) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    pack_with_hiredis(client)
    try:
        assert client.connection_pool.connection_class is HiredisConnection
        assert await client.set("packed", "yes") and await client.get("packed") == b"yes"
    finally:
        await client.aclose()


async def test_a_cancellation_turned_into_a_redis_error_still_cancels_the_loop() -> None:
    """redis-py may turn a cancellation that lands mid-command into its own error; a loop that
    catches Redis errors (the storage gauge, the heartbeat, the reconciler) still ends when
    cancelled, so an app's cleanup or a worker's shutdown never waits on it forever."""

    async def loop() -> None:
        while True:
            try:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    raise RedisTimeoutError("Timeout reading from socket") from None
            except RedisError as exc:
                reraise_if_cancelling(exc)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
