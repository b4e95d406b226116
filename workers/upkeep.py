"""What a worker process does besides running jobs: its heartbeat, and the reconciler.

The heartbeat (`keys.heartbeat`, PX `HEARTBEAT_TTL_S`, written every `HEARTBEAT_EVERY_S`) says
the process lives. Its id is in every lease token it takes and every arq in-progress key it
claims (`workers.claim`), so when it is killed, its key lapses within `HEARTBEAT_TTL_S` and
another worker claims the job and takes the pair's lease at once, instead of waiting for the
in-progress key (`job_timeout_s` + 10 s) and the lease (`timeout_s` + 5 s) to expire. A worker
whose event loop stalls longer than the TTL can lose its lease that way: its commit is then
refused (fenced by the token) and the other run redoes the work, at least once as ever.

The reconciler is the safety net under "a pair with work has exactly one job": whatever lost a
pair's job (an operator deleting arq keys, a Redis that lost writes, a bug), the pair is found
and given a fresh job within `worker.reconcile_interval_s`. Every worker process runs the loop;
a short Redis lock (`keys.RECONCILE_LOCK`, SET NX PX) lets one pass run per interval across
all of them. A pass walks only the pairs with work waiting (`keys.OWED_PAIRS`), not the
keyspace, and checks each in a Lua script, so it never schedules a second job for a pair.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from core import keys
from core.pairs import PairQueue
from core.redis_client import reraise_if_cancelling
from workers.runs import now_ms

log = structlog.get_logger("usersync.worker")

HEARTBEAT_TTL_S = 5.0
HEARTBEAT_EVERY_S = 1.0

LOCK_SHARE = 0.8
"""The reconciler lock lasts this share of the interval, so the worker that held it can take
it again at its next tick: passes come about once an interval, never two at once."""


async def beat(redis: Redis, worker_id: str) -> None:
    """Say this worker lives for the next `HEARTBEAT_TTL_S`."""
    await redis.set(keys.heartbeat(worker_id), b"1", px=int(HEARTBEAT_TTL_S * 1000))


async def heartbeat_forever(redis: Redis, worker_id: str) -> None:
    """Refresh the heartbeat every `HEARTBEAT_EVERY_S` until cancelled."""
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        try:
            await beat(redis, worker_id)
        except RedisError as exc:  # Redis away: nothing to take over meanwhile either
            reraise_if_cancelling(exc)
            log.warning("heartbeat_failed", error=type(exc).__name__, outcome="retry")


async def forget(redis: Redis, worker_id: str) -> None:
    """A worker stopping cleanly drops its heartbeat (its runs gave their leases back)."""
    try:
        await redis.delete(keys.heartbeat(worker_id))
    except RedisError:
        log.warning("heartbeat_not_removed", outcome="expires")


async def reconcile_once(redis: Redis, pairs: PairQueue, interval_s: float, owner: str) -> bool:
    """Run one reconciler pass if this process wins the interval's lock; whether it ran."""
    lock_ms = max(100, int(interval_s * LOCK_SHARE * 1000))
    if not await redis.set(keys.RECONCILE_LOCK, owner, nx=True, px=lock_ms):
        return False
    done = await pairs.reconcile(now_ms())
    if done.rescheduled:  # something lost a job: say so, it should not happen
        log.warning(
            "pairs_rescheduled", checked=done.checked, rescheduled=done.rescheduled, outcome="fixed"
        )
    else:
        log.debug("pairs_reconciled", checked=done.checked)
    return True


async def reconcile_forever(
    redis: Redis,
    pairs: PairQueue,
    settings: Callable[[], Settings],
    jitter: Callable[[], float] = random.random,
) -> None:
    """The reconciler loop of one worker process, until cancelled. `settings` is read each
    tick, so a reload changes the interval."""
    owner = uuid.uuid4().hex
    while True:
        interval_s = settings().worker.reconcile_interval_s
        await asyncio.sleep(interval_s * (0.9 + 0.2 * jitter()))
        try:
            await reconcile_once(redis, pairs, interval_s, owner)
        except RedisError as exc:  # Redis away: the next tick tries again
            reraise_if_cancelling(exc)
            log.warning("reconcile_failed", error=type(exc).__name__, outcome="retry")
