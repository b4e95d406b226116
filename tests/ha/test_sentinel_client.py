"""`core.redis_client` on `redis.sentinel`: the product's client and arq's pool reach the
primary the Sentinels name, pack with hiredis, and follow a failover without being rebuilt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from config.storage import RedisSentinelSettings
from core.redis_client import HiredisSentinelConnection, RedisTarget, connect
from tests.ha.sentinel_cluster import MASTER, SentinelCluster, sentinel_cluster
from workers.worker import arq_redis

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    with sentinel_cluster(tmp_path / "redis", replicas=1) as started:
        yield started


def target_of(cluster: SentinelCluster) -> RedisTarget:
    return RedisTarget(sentinel=RedisSentinelSettings(addresses=cluster.addresses, master=MASTER))


async def test_clients_follow_a_failover_without_a_restart(cluster: SentinelCluster) -> None:
    """The product's client and arq's pool write to the primary; once the Sentinels have
    promoted the replica of a SIGKILLed primary, both write to the new primary, the same
    client objects, hiredis packing kept."""
    target = target_of(cluster)
    client = connect(target, socket_timeout=2, socket_connect_timeout=1)
    pool = arq_redis(target)["redis_pool"]
    try:
        assert client.connection_pool.connection_class is HiredisSentinelConnection
        await client.set("before", "1")
        await pool.set("arq-before", "1")
        old = cluster.primary()
        old.kill()
        deadline = time.monotonic() + 30
        for writer, key in ((client, "after"), (pool, "arq-after")):
            while True:  # refused until the Sentinels have promoted the replica
                try:
                    await writer.set(key, "1")
                    break
                except RedisConnectionError:
                    assert time.monotonic() < deadline, "never reached the new primary"
                    await asyncio.sleep(0.1)
        new = cluster.primary()
        assert new is not old
        assert new.call("GET", "before") == b"1"
        assert new.call("GET", "after") == b"1"
        assert new.call("GET", "arq-after") == b"1"
        assert new.call("ROLE")[0] == b"master"
    finally:
        await client.aclose()
        await pool.aclose()
