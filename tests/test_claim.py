"""`ClaimingWorker.start_jobs` starts exactly the jobs arq's own would: due, not in progress,
no more than the free slots; each with its in-progress key set for arq's timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import func
from redis.asyncio import Redis

from usersync.redis_server import EmbeddedRedis
from workers.claim import ClaimingWorker


async def record(ctx: dict[str, Any], name: str) -> None:
    await ctx["redis"].rpush("claim-test:ran", name)
    await ctx["release"].wait()


async def pool(url: str) -> ArqRedis:
    return await create_pool(
        RedisSettings.from_dsn(url), job_serializer=orjson.dumps, job_deserializer=orjson.loads
    )


def claiming_worker(url: str, max_jobs: int) -> ClaimingWorker:
    return ClaimingWorker(
        functions=[func(record, name="record")],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=max_jobs,
        keep_result=0,
        handle_signals=False,
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
    )


async def test_claims_due_free_jobs_up_to_the_free_slots(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    client = await pool(redis_server.url)
    release = asyncio.Event()
    worker = claiming_worker(redis_server.url, max_jobs=3)
    try:
        for name in ("a", "b", "c", "d"):
            await client.enqueue_job("record", name, _job_id=name)
        await client.enqueue_job("record", "later", _job_id="later", _defer_by=60)
        await redis.set(in_progress_key_prefix + "b", b"1")  # another worker runs b
        worker.ctx["release"] = release
        worker.ctx["redis"] = redis
        worker._pool = client  # what arq's main() sets before polling
        ids = [b"a", b"b", b"c", b"later", b"d", b"gone"]
        await worker.start_jobs(ids)
        # a, c and d are due and free (3 slots); b is in progress, `later` is not due and
        # `gone` is not queued: skipped without taking a slot, as arq skips them
        assert sorted(worker.tasks) == ["a", "c", "d"]
        assert worker.job_counter == 3
        ttl = await redis.pttl(in_progress_key_prefix + "a")
        assert 0 < ttl <= int(worker.in_progress_timeout_s * 1000)
        assert not await redis.exists(in_progress_key_prefix + "later")
        await worker.start_jobs([b"e"])  # no slot is free: nothing is claimed
        assert sorted(worker.tasks) == ["a", "c", "d"]
        release.set()
        await asyncio.gather(*worker.tasks.values())
        ran = sorted(v.decode() for v in await redis.lrange("claim-test:ran", 0, -1))
        assert ran == ["a", "c", "d"]
        assert worker.job_counter == 0
        # finished jobs leave the queue as arq finishes them; b and `later` stay queued
        assert await redis.zscore("arq:queue", "b") is not None
        assert await redis.zscore("arq:queue", "a") is None
    finally:
        release.set()
        await client.aclose()
        await redis.flushdb()


async def test_claims_no_more_than_the_free_slots(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    client = await pool(redis_server.url)
    release = asyncio.Event()
    worker = claiming_worker(redis_server.url, max_jobs=2)
    try:
        for name in ("p", "q", "r"):
            await client.enqueue_job("record", name, _job_id=name)
        worker.ctx.update(release=release, redis=redis)
        worker._pool = client
        await worker.start_jobs([b"p", b"q", b"r"])
        assert sorted(worker.tasks) == ["p", "q"]
        assert not await redis.exists(in_progress_key_prefix + "r")  # left for a free slot
        release.set()
        await asyncio.gather(*worker.tasks.values())
        await worker.start_jobs([b"r"])
        await asyncio.gather(*worker.tasks.values())
        assert sorted(v.decode() for v in await redis.lrange("claim-test:ran", 0, -1)) == [
            "p",
            "q",
            "r",
        ]
    finally:
        release.set()
        await client.aclose()
        await redis.flushdb()
