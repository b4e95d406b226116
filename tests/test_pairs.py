"""The pair scripts on a real Redis: one scheduled job per pair, the lease, fenced commits."""

from __future__ import annotations

from redis.asyncio import Redis

from core import keys
from core.pairs import Commit, EventUpdate, PairQueue
from core.status import TargetStatus
from core.store import IngestRecord, Store
from tests.conftest import event

RETENTION_S = 3600


def record(event_id: str, order: int) -> IngestRecord:
    body = event(event_id)
    return IngestRecord(
        source="hris",
        event_id=event_id,
        user_id="emp-42",
        order_key=order,
        event_json=str(body).encode(),
        acceptance={"event_id": event_id},
        targets=["fleet-eu"],
        links={},
        name_parts={},
    )


async def ingest(redis: Redis, *orders: int) -> None:
    store = Store(redis, RETENTION_S)
    for n, order in enumerate(orders):
        created, _ = await store.ingest(record(f"evt-{n}", order), "2026-11-22T10:15:00.000Z")
        assert created


async def pair_job(redis: Redis) -> str:
    job = await redis.hget(keys.pair("fleet-eu", "emp-42"), keys.PAIR_JOB)
    assert job is not None
    return bytes(job).decode()


async def test_a_pair_gets_one_job_however_many_events_arrive(redis: Redis) -> None:
    """Three events for one pair: one arq job, and the pending set holds all three in order."""
    await ingest(redis, 3, 1, 2)
    assert await redis.zcard("arq:queue") == 1
    assert await redis.zrange(keys.pending("fleet-eu", "emp-42"), 0, -1) == [
        b"hris:evt-1",
        b"hris:evt-2",
        b"hris:evt-0",
    ]
    assert await redis.exists("arq:job:" + await pair_job(redis))


async def test_begin_takes_the_lease_once_and_refuses_other_jobs(redis: Redis) -> None:
    """Only the pair's own job may begin; while its run holds the lease another is busy."""
    await ingest(redis, 1)
    pairs = PairQueue(redis, RETENTION_S)
    job = await pair_job(redis)
    assert (await pairs.begin("fleet-eu", "emp-42", "deliver:other", "t0", 5000, 10)).verdict == (
        "stale"
    )
    first = await pairs.begin("fleet-eu", "emp-42", job, "t1", 5000, 10)
    assert first.verdict == "ok"
    assert first.batch is not None
    assert [p.ref for p in first.batch.pending] == ["hris:evt-0"]
    second = await pairs.begin("fleet-eu", "emp-42", job, "t2", 5000, 10)
    assert second.verdict == "busy"
    assert 0 < second.busy_ms <= 5000


async def test_a_commit_with_a_lost_lease_writes_nothing(redis: Redis) -> None:
    """A run whose lease expired and was taken by another cannot commit its outcome."""
    await ingest(redis, 1)
    pairs = PairQueue(redis, RETENTION_S)
    job = await pair_job(redis)
    assert (await pairs.begin("fleet-eu", "emp-42", job, "old", 5000, 10)).verdict == "ok"
    await redis.set(keys.lease("fleet-eu", "emp-42"), "new")  # as if it expired and was retaken
    delivered = TargetStatus(status="delivered", updated_at="2026-11-22T10:15:01.000Z")
    update = EventUpdate("hris:evt-0", delivered.to_json(), b"[]", remove=True)
    ok = await pairs.commit(
        "fleet-eu", "emp-42", "old", 0, Commit("next", updates=[update], applied={"email": 1})
    )
    assert ok is False
    status = await redis.hget(keys.event("hris", "evt-0"), keys.status_field("fleet-eu"))
    assert TargetStatus.from_json(status).status == "pending"
    assert await redis.zcard(keys.pending("fleet-eu", "emp-42")) == 1
    assert not await redis.exists(keys.applied("fleet-eu", "emp-42"))


async def test_commit_schedules_a_fresh_job_while_changes_remain(redis: Redis) -> None:
    """After a run settles one of two events, the pair gets a new job id (never the old one);
    once nothing is pending the pair is cleared and its lease dropped."""
    await ingest(redis, 1, 2)
    pairs = PairQueue(redis, RETENTION_S)
    job = await pair_job(redis)
    await pairs.begin("fleet-eu", "emp-42", job, "t1", 5000, 1)
    done = TargetStatus(status="delivered", updated_at="2026-11-22T10:15:01.000Z").to_json()
    settle_first = Commit("next", updates=[EventUpdate("hris:evt-0", done, b"[]", remove=True)])
    assert await pairs.commit("fleet-eu", "emp-42", "t1", 0, settle_first)
    next_job = await pair_job(redis)
    assert next_job != job
    assert await redis.zscore("arq:queue", next_job) is not None
    assert not await redis.exists(keys.lease("fleet-eu", "emp-42"))
    await pairs.begin("fleet-eu", "emp-42", next_job, "t2", 5000, 1)
    settle_second = Commit("next", updates=[EventUpdate("hris:evt-1", done, b"[]", remove=True)])
    assert await pairs.commit("fleet-eu", "emp-42", "t2", 0, settle_second)
    assert not await redis.exists(keys.pair("fleet-eu", "emp-42"))
    assert not await redis.exists(keys.pending("fleet-eu", "emp-42"))


async def test_jobs_of_one_instant_keep_the_order_they_were_scheduled(redis: Redis) -> None:
    """A burst schedules many pair jobs within one millisecond; arq takes equal scores in id
    order, which would group them by vendor (ids start with the vendor). The fraction from
    the job sequence keeps them in scheduling order, so the vendors interleave."""
    store = Store(redis, RETENTION_S)
    records = [
        IngestRecord(
            source="hris",
            event_id=f"burst-{n}",
            user_id=f"emp-{n}",
            order_key=1,
            event_json=b"{}",
            acceptance={"event_id": f"burst-{n}"},
            targets=["plaspy", "fleet-eu", "mileapp"],
            links={},
            name_parts={},
        )
        for n in range(5)
    ]
    await store.ingest_many(records, "2026-11-22T10:15:00.000Z")
    queued = [job.decode() for job in await redis.zrange("arq:queue", 0, -1)]
    vendors = [job.split(":")[1] for job in queued]
    assert vendors == ["plaspy", "fleet-eu", "mileapp"] * 5, queued
