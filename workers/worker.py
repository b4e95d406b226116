"""The arq worker process: its settings, its start-up/shutdown hooks, and the `deliver` job.

arq facts this relies on (shared/notes/arq.md): an ordinary exception is not retried and
`max_tries` drops a job silently, so `deliver` never lets an exception escape; attempts are
counted by us (`retry.max_attempts`). Each run of a pair's job ends by scheduling the pair's
next job itself (a fresh id, see `core.pairs`); arq's `Retry` is used only to run the same
job again after a crash or while another run holds the pair's lease. Jobs are JSON, not
pickle, because the gateway writes them itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, expires_extra_ms
from arq.worker import Worker, func
from redis.asyncio import Redis

from config.settings import Settings
from core.log_context import new_context
from core.pairs import DELIVER_FUNCTION, PairQueue
from core.redis_client import RedisTarget, connect, master_client, pack_with_hiredis
from core.vendor_guard import VendorGuard
from workers.batching import ScriptBatcher
from workers.claim import JOB_END, SENDER, ClaimingWorker
from workers.engine import DeliveryEngine
from workers.instruments import DeliveryMetrics
from workers.runs import RunAgain
from workers.upkeep import beat, forget, heartbeat_forever, reconcile_forever
from workers.vendors.interface import VendorAdapter

log = structlog.get_logger("usersync.worker")

ARQ_MAX_TRIES = 10_000
"""arq's own bound, out of the way: ours is `retry.max_attempts`, counted in the status."""


ENGINE_REDIS = "usersync_redis"
"""The worker context's key of the engine's own Redis client."""

UPKEEP = "usersync_upkeep"
"""The worker context's key of the heartbeat and reconciler tasks (`workers.upkeep`)."""

CRASH_RETRY_S = 5
"""A run that crashed (a bug, Redis gone mid-run) runs again this much later."""


async def deliver(ctx: dict[str, Any], target: str, user_id: str) -> None:
    """arq job: one run of a pair's job; only `Retry` or cancellation leave it unfinished."""
    engine: DeliveryEngine = ctx["engine"]
    new_context(job_try=ctx.get("job_try"))
    try:
        await engine.run(target, user_id, ctx["job_id"], ctx.get(JOB_END))
    except RunAgain as again:
        raise Retry(defer=again.delay_s) from again
    except Exception as exc:  # the job's supervisor: an escaping exception would drop the job
        log.exception("delivery_crashed", vendor=target, user_id=user_id, outcome="retry")
        raise Retry(defer=CRASH_RETRY_S) from exc


def arq_redis(target: str | RedisTarget) -> dict[str, Any]:
    """arq Worker's Redis arguments: `redis_settings` for a URL; for Sentinels, a pool of our
    own (arq's `sentinel` settings give the Sentinels no password and the data nodes no
    timeouts), an ArqRedis that follows the primary through a failover."""
    if isinstance(target, RedisTarget) and target.sentinel is not None:
        pool = master_client(target, ArqRedis, socket_timeout=10, socket_connect_timeout=2)
        pool.job_serializer = orjson.dumps
        pool.job_deserializer = orjson.loads
        pool.default_queue_name = default_queue_name
        pool.expires_extra_ms = expires_extra_ms
        return {"redis_pool": pool}
    url = target if isinstance(target, str) else target.url
    if url is None:
        raise ValueError("no Redis configured: neither redis.url nor redis.sentinel")
    return {"redis_settings": RedisSettings.from_dsn(url)}


def build_worker(
    settings: Settings,
    redis_url: str | RedisTarget,
    adapters: Mapping[str, VendorAdapter],
    *,
    handle_signals: bool = True,
    metrics: DeliveryMetrics | None = None,
) -> Worker:
    """An arq Worker wired to our engine; the caller runs it (`async_run` or `run`).
    `metrics`: the process's instruments, which outlive the arq workers it restarts."""
    instruments = metrics or DeliveryMetrics.of(settings)
    worker_id = uuid.uuid4().hex

    async def startup(ctx: dict[str, Any]) -> None:
        connector = aiohttp.TCPConnector(limit=settings.worker.concurrency * 2, limit_per_host=0)
        session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        # The engine's scripts go through a client of our own; it and arq's pool pack commands
        # with hiredis (core.redis_client).
        pack_with_hiredis(ctx["redis"])
        redis = connect(redis_url, socket_timeout=10, socket_connect_timeout=2)
        # the runs' script calls (begin, permit, commit, the job's end) share round trips
        batcher = ScriptBatcher(redis)
        ctx[SENDER] = batcher.send  # the claiming worker ends its jobs through it
        pairs = PairQueue(redis, settings.retention.events_s, send=batcher.send)
        ctx["session"] = session
        ctx[ENGINE_REDIS] = redis
        guard = VendorGuard(redis, on_transition=instruments.transition, send=batcher.send)
        ctx["engine"] = DeliveryEngine(
            settings, pairs, guard, adapters, session, metrics=instruments, worker_id=worker_id
        )
        await beat(redis, worker_id)  # alive before its first claim
        ctx[UPKEEP] = [
            asyncio.create_task(heartbeat_forever(redis, worker_id)),
            asyncio.create_task(reconcile_forever(redis, pairs, lambda: ctx["engine"].settings)),
        ]
        log.info(
            "worker_started", concurrency=settings.worker.concurrency, vendors=sorted(adapters)
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        upkeep: list[asyncio.Task[None]] = ctx.pop(UPKEEP, [])
        for task in upkeep:
            task.cancel()
        await asyncio.gather(*upkeep, return_exceptions=True)
        if upkeep:
            await forget(ctx[ENGINE_REDIS], worker_id)
        session: aiohttp.ClientSession | None = ctx.get("session")
        if session is not None:
            await session.close()
        redis: Redis | None = ctx.get(ENGINE_REDIS)
        if redis is not None:
            await redis.aclose()
        log.info("worker_stopped")

    return ClaimingWorker(
        functions=[func(deliver, name=DELIVER_FUNCTION, max_tries=ARQ_MAX_TRIES)],
        worker_id=worker_id,
        **arq_redis(redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=settings.worker.concurrency,
        poll_delay=settings.worker.poll_delay_s,
        job_timeout=settings.worker.job_timeout_s,
        keep_result=0,
        max_tries=ARQ_MAX_TRIES,
        handle_signals=handle_signals,
        job_serializer=orjson.dumps,
        job_deserializer=orjson.loads,
        health_check_interval=30,
        log_results=False,
    )


def worker_running(worker: Worker) -> bool:
    """Whether `worker` is taking jobs: started (its engine built, so Redis answered), its
    poll loop alive, and not being stopped (`stop_worker`)."""
    main = worker.main_task
    return (
        "engine" in worker.ctx and main is not None and not main.done() and worker.allow_pick_jobs
    )


async def stop_worker(worker: Worker, grace_s: float) -> None:
    """Stop taking jobs, give running deliveries `grace_s`, cancel the rest, then close.

    The poll loop is not cancelled but asked to end (arq's burst mode with no jobs left to
    start): cancelled in the middle of starting a job, it would leave a WATCH pipeline holding
    a Redis connection. Job tasks still running after the grace are cancelled; they keep their
    queue entry and run again (at-least-once). arq's own `close()` would cancel and gather
    jobs cancelled before their function started, raise CancelledError, and skip closing the
    Redis pool and our HTTP session, so it only runs once nothing is left to cancel.
    """
    stop_taking_jobs(worker)
    running = [task for task in worker.tasks.values() if not task.done()]
    if running:
        await asyncio.wait(running, timeout=grace_s)
    left = sorted(job_id for job_id, task in worker.tasks.items() if not task.done())
    if left:  # each run's lease is given back as it is cancelled (log lease_released)
        log.warning("shutdown_handed_back", jobs=left, count=len(left), grace_s=grace_s)
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if worker.main_task is not None:
        await asyncio.wait([worker.main_task], timeout=grace_s)
        if not worker.main_task.done():
            worker.main_task.cancel()
            await asyncio.wait([worker.main_task])
    worker.tasks.clear()
    await worker.close()


def stop_taking_jobs(worker: Worker) -> None:
    """The drain's start: no new job is taken; those running go on (see `stop_worker`)."""
    worker.allow_pick_jobs = False
    worker.burst = True
    worker.max_burst_jobs = 0  # the poll loop returns at its next turn


def apply_settings(
    worker: Worker, settings: Settings, adapters: Mapping[str, VendorAdapter]
) -> None:
    """New settings for the jobs a running worker starts from now on (SIGHUP): a new engine
    in the worker's context, which `deliver` reads as each job starts, so a job already
    running finishes on the engine (settings, adapters) it started with. The HTTP session,
    the Redis clients, the metrics and each vendor's in-flight limit (when its size is
    unchanged: the calls in flight hold it) carry over. A worker not started yet starts
    with the settings it was built with; its supervisor builds the next one with these."""
    old = worker.ctx.get("engine")
    if not isinstance(old, DeliveryEngine):
        return
    new = DeliveryEngine(
        settings,
        old.pairs,
        old.guard,
        adapters,
        old.session,
        old.random,
        metrics=old.metrics,
        worker_id=old.worker_id,
    )
    for name, bulkhead in old.bulkheads.items():
        if name in new.bulkheads and settings.in_flight_limit(name) == bulkhead.limit:
            new.bulkheads[name] = bulkhead
    worker.ctx["engine"] = new
