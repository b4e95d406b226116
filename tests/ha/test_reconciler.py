"""The reconciler: a pair with work waiting whose job vanished gets a fresh one within
`worker.reconcile_interval_s`, and a pair whose job is in place never gets a second."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.constants import default_queue_name, job_key_prefix
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from core.pairs import PairQueue
from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    running_worker,
    wait_until,
)
from usersync.redis_server import EmbeddedRedis

INTERVAL_S = 0.5
TARGET = "fleet-eu"


@pytest.fixture
def fast_reconcile(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(
        redis_server.url,
        sandbox.url,
        worker={
            "concurrency": 10,
            "poll_delay_s": 0.01,
            "job_timeout_s": 10,
            "reconcile_interval_s": INTERVAL_S,
        },
    )


@pytest.fixture
async def gateway_only(
    fast_reconcile: Settings, redis: Redis, sandbox: Sandbox
) -> AsyncIterator[Gateway]:
    async with running_gateway(fast_reconcile) as url:
        yield Gateway(url, sandbox.http)


async def pair_job(redis: Redis, user_id: str = "emp-42") -> str:
    job = await redis.hget(keys.pair(TARGET, user_id), keys.PAIR_JOB)
    assert job is not None
    return bytes(job).decode()


async def test_a_pair_whose_job_vanished_is_delivered(
    gateway_only: Gateway, fast_reconcile: Settings, redis: Redis
) -> None:
    """Its arq job key and queue entry deleted behind the product's back, the event is still
    delivered: the reconciler gives the pair a new job, and forgets the pair once done."""
    status, answer = await gateway_only.post(event("lost-job", targets=[TARGET]))
    assert status == 202, answer
    job = await pair_job(redis)
    await redis.delete(job_key_prefix + job)
    await redis.zrem(default_queue_name, job)
    assert await redis.zcard(default_queue_name) == 0
    async with running_worker(fast_reconcile):
        final = await gateway_only.wait_final("lost-job", timeout_s=15)
        assert final["targets"][TARGET]["status"] == "delivered"

        async def forgotten() -> bool:
            return not await redis.sismember(keys.OWED_PAIRS, keys.pending(TARGET, "emp-42"))

        await wait_until(forgotten, 5, "the delivered pair leaves the owed set")


async def test_a_pair_with_its_job_in_place_gets_no_second_one(
    gateway_only: Gateway, redis: Redis
) -> None:
    """A pass over pairs whose jobs are queued reschedules none; one whose job is gone gets
    exactly one, and a second pass adds nothing."""
    for user in ("u-1", "u-2", "u-3"):
        body = event(f"e-{user}", targets=[TARGET], user={**event()["user"], "id": user})
        status, answer = await gateway_only.post(body)
        assert status == 202, answer
    pairs = PairQueue(redis, 3600)
    first = await pairs.reconcile(0)
    assert (first.checked, first.rescheduled) == (3, 0)
    assert await redis.zcard(default_queue_name) == 3
    await redis.zrem(default_queue_name, await pair_job(redis, "u-2"))
    second = await pairs.reconcile(0)
    third = await pairs.reconcile(0)
    assert (second.rescheduled, third.rescheduled) == (1, 0)
    assert await redis.zcard(default_queue_name) == 3
    assert await redis.zscore(default_queue_name, await pair_job(redis, "u-2")) is not None
