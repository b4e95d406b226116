"""A failover of the Redis primary mid-stream loses no accepted event: real redis-servers
(a primary, two replicas, three Sentinels), a `usersync gateway` and two `usersync worker`
processes on `redis.sentinel` with `min_replicas_ack: 1`, the primary SIGKILLed while
sources post a few hundred events a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Sandbox, stop
from tests.ha.harness import (
    TARGETS,
    Tally,
    email,
    last_values,
    make_users,
    source,
    start_gateway,
    start_worker,
    wait_delivered,
)
from tests.ha.sentinel_cluster import SentinelCluster, sentinel_cluster

pytestmark = pytest.mark.timeout(110)  # six Redis and three usersync processes start and stop

USERS = 8
BEFORE_KILL_S = 3.0
AFTER_RECOVERY_S = 3.0
RECOVERY_BOUND_S = 30.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    with sentinel_cluster(tmp_path / "redis", replicas=2) as started:
        yield started


async def test_sigkill_of_the_primary_loses_no_accepted_event(
    cluster: SentinelCluster, sandbox: Sandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every event answered 202 is delivered to every vendor, each vendor ends on each user's
    highest version, and clients saw only 202, 503 with Retry-After, or 200 duplicates."""
    users = await make_users(sandbox, USERS)
    workers = [start_worker(tmp_path, cluster, sandbox, n) for n in range(2)]
    processes = list(workers)
    try:
        url, gateway = await start_gateway(tmp_path, cluster, sandbox, http, 0)
        processes.append(gateway)
        tally, halt = Tally(), asyncio.Event()
        sources = [
            asyncio.create_task(source(http, [url], n, ids, tally, halt))
            for n, ids in enumerate(users)
        ]
        await asyncio.sleep(BEFORE_KILL_S)
        before = len(tally.accepted)
        old_primary = cluster.primary()
        tally.kill_at = time.monotonic()
        old_primary.kill()
        with contextlib.suppress(TimeoutError):  # asserted below
            await asyncio.wait_for(tally.recovered.wait(), RECOVERY_BOUND_S)
        await asyncio.sleep(AFTER_RECOVERY_S)
        halt.set()
        await asyncio.gather(*sources)
        late = await wait_delivered(cluster, tally.accepted, timeout_s=45)
        held = await last_values(sandbox, users)
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                stop(process)

    recovery = (
        None if tally.first_202_after_kill is None else tally.first_202_after_kill - tally.kill_at
    )
    print(  # the figures the report quotes (pytest -s)
        f"\nfailover: {len(tally.accepted)} events accepted ({before} before the kill), "
        f"answers {dict(tally.statuses)}, kill to first 202: "
        f"{'none' if recovery is None else f'{recovery:.2f}s'}, "
        f"503s: {tally.statuses[503]} {dict(tally.refusals)}, events lost: {len(late)}"
    )
    assert cluster.primary() is not old_primary
    assert recovery is not None, "no 202 after the kill"
    assert not tally.unexpected, tally.unexpected[:10]
    assert tally.missing_retry_after == 0
    assert tally.unreachable == 0  # the gateway itself never went away
    assert set(tally.statuses) <= {200, 202, 503}, tally.statuses
    assert set(tally.refusals) <= {"redis_unavailable", "replication_timeout"}, tally.refusals
    assert not late, late[:10]
    for user in range(USERS):
        for target in TARGETS:
            assert held[(target, user)] == email(user, tally.highest[user]), (target, user)
