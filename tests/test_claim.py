"""`ClaimingWorker.start_jobs` starts exactly the jobs arq's own would: due, not in progress,
no more than the free slots; each with its in-progress key set for arq's timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import Retry, func
from redis.asyncio import Redis

from core.scripts import ScriptCall
from tests.conftest import wait_until
from usersync.redis_server import EmbeddedRedis
from workers.batching import ScriptBatcher
from workers.claim import JOB_END, ClaimingWorker, JobEnd


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


async def flaky(ctx: dict[str, Any], how: str) -> None:
    """A job that ends as told: done, Retry in 60 s, or waiting until cancelled."""
    await ctx["redis"].rpush("claim-test:ran", f"{how}:{ctx['job_try']}")
    if how == "retry":
        raise Retry(defer=60)
    if how == "hang":
        await asyncio.Event().wait()


async def ran_at_least(redis: Redis, n: int) -> bool:
    return bool(await redis.llen("claim-test:ran") >= n)


def sending_worker(url: str, redis: Redis) -> ClaimingWorker:
    """A ClaimingWorker whose jobs end through a batcher, as the usersync worker's do."""
    return ClaimingWorker(
        functions=[func(flaky, name="flaky")],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=10,
        keep_result=0,
        handle_signals=False,
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
        send=ScriptBatcher(redis).send,
    )


async def test_a_claimed_job_runs_from_the_claim_and_ends_as_arq_ends_it(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    """A claimed job gets arq's try count and its arguments from the claim; a finished one
    leaves no key and no queue entry, a Retry stays queued later, a cancelled one stays
    queued and due, each without its in-progress key, as arq's own finish leaves them."""
    client = await pool(redis_server.url)
    worker = sending_worker(redis_server.url, redis)
    try:
        for how in ("done", "retry", "hang"):
            await client.enqueue_job("flaky", how, _job_id=how)
        before = await redis.zscore("arq:queue", "retry")
        worker.ctx["redis"] = redis
        worker._pool = client
        await worker.start_jobs([b"done", b"retry", b"hang"])
        await asyncio.gather(worker.tasks["done"], worker.tasks["retry"])
        await wait_until(lambda: ran_at_least(redis, 3), 10, "the three jobs started")
        worker.tasks["hang"].cancel()
        await asyncio.gather(worker.tasks["hang"])  # arq's run_job swallows the cancellation
        ran = sorted(v.decode() for v in await redis.lrange("claim-test:ran", 0, -1))
        assert ran == ["done:1", "hang:1", "retry:1"]
        assert await redis.zscore("arq:queue", "done") is None
        assert not await redis.exists(
            "arq:job:done", "arq:retry:done", in_progress_key_prefix + "done"
        )
        retry_score = await redis.zscore("arq:queue", "retry")
        assert before is not None and retry_score is not None and retry_score >= before + 60_000
        assert await redis.exists("arq:job:retry", "arq:job:hang") == 2
        assert await redis.zscore("arq:queue", "hang") is not None
        assert not await redis.exists(in_progress_key_prefix + "retry")
        assert not await redis.exists(in_progress_key_prefix + "hang")
        assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, 2, 0)
        await worker.start_jobs([b"hang"])  # its second run counts its second try
        await wait_until(lambda: ran_at_least(redis, 4), 10, "the job's second run started")
        assert (await redis.lrange("claim-test:ran", -1, -1)) == [b"hang:2"]
        worker.tasks["hang"].cancel()
        await asyncio.gather(worker.tasks["hang"])
    finally:
        await client.aclose()
        await redis.flushdb()


async def test_a_job_not_plain_goes_to_arqs_own_run(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    """A claimed job whose function the worker does not have is failed by arq's own
    run_job, as arq fails it: finished, its keys gone."""
    client = await pool(redis_server.url)
    worker = sending_worker(redis_server.url, redis)
    try:
        await client.enqueue_job("unknown", _job_id="u")
        worker._pool = client
        await worker.start_jobs([b"u"])
        await asyncio.gather(*worker.tasks.values())
        assert await redis.zscore("arq:queue", "u") is None
        assert not await redis.exists("arq:job:u", in_progress_key_prefix + "u")
        assert worker.jobs_failed == 1
    finally:
        await client.aclose()
        await redis.flushdb()


async def ends_itself(ctx: dict[str, Any], how: str) -> None:
    """A job that sends its own end with a call of its own (as the engine sends it with the
    pair's commit), or only says it did."""
    end: JobEnd = ctx[JOB_END]
    if how == "sends":
        append = ctx["redis"].register_script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
        await ctx["send"]([ScriptCall(append, ["claim-test:ran"], [how]), end.call])
    end.sent = True


async def test_a_job_that_sends_its_end_is_not_ended_again(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    """A job that sent its end with its own calls is finished (no key, no queue entry) and
    its worker sends nothing more: one that only says so keeps its keys."""
    client = await pool(redis_server.url)
    batcher = ScriptBatcher(redis)
    worker = ClaimingWorker(
        functions=[func(ends_itself, name="ends_itself")],
        redis_settings=RedisSettings.from_dsn(redis_server.url),
        max_jobs=10,
        keep_result=0,
        handle_signals=False,
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
        send=batcher.send,
    )
    try:
        for how in ("sends", "says"):
            await client.enqueue_job("ends_itself", how, _job_id=how)
        worker.ctx.update(redis=redis, send=batcher.send)
        worker._pool = client
        await worker.start_jobs([b"sends", b"says"])
        await asyncio.gather(*worker.tasks.values())
        assert await redis.lrange("claim-test:ran", 0, -1) == [b"sends"]
        assert await redis.zscore("arq:queue", "sends") is None
        assert not await redis.exists(
            "arq:job:sends", "arq:retry:sends", in_progress_key_prefix + "sends"
        )
        assert await redis.zscore("arq:queue", "says") is not None
        assert await redis.exists("arq:job:says", in_progress_key_prefix + "says") == 2
        assert worker.jobs_complete == 2
    finally:
        await client.aclose()
        await redis.flushdb()
