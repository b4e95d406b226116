"""Scale-out: two `usersync gateway` and three `usersync worker` processes on one
Sentinel-managed Redis share the load, and losing a gateway and a worker (SIGKILL) mid-run
loses no accepted event and breaks no user's order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
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

pytestmark = pytest.mark.timeout(110)  # four Redis and five usersync processes start and stop

USERS = 8
BEFORE_KILL_S = 3.0
AFTER_KILL_S = 3.0
JOB_TIMEOUT_S = 3
"""The smallest the settings allow: a killed worker's claimed job is free again after arq's
in-progress lease (job timeout + 10 s), when another worker takes it over."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    with sentinel_cluster(tmp_path / "redis", replicas=1) as started:
        yield started


async def test_a_gateway_and_a_worker_killed_mid_run_lose_no_accepted_event(
    cluster: SentinelCluster, sandbox: Sandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Events spread over both gateways; after one gateway and one worker are SIGKILLed every
    accepted event is delivered to every vendor, each ending on each user's highest version."""
    users = await make_users(sandbox, USERS)
    job_timeout = {"worker": {"job_timeout_s": JOB_TIMEOUT_S, "metrics_port": 0}}
    workers = [start_worker(tmp_path, cluster, sandbox, n, **job_timeout) for n in range(3)]
    processes = list(workers)
    try:
        started = [await start_gateway(tmp_path, cluster, sandbox, http, n) for n in range(2)]
        processes += [process for _, process in started]
        urls = [url for url, _ in started]
        tally, halt = Tally(), asyncio.Event()
        sources = [
            asyncio.create_task(source(http, urls, n, ids, tally, halt))
            for n, ids in enumerate(users)
        ]
        await asyncio.sleep(BEFORE_KILL_S)
        before = len(tally.accepted)
        workers[0].send_signal(signal.SIGKILL)
        started[0][1].send_signal(signal.SIGKILL)
        await asyncio.sleep(AFTER_KILL_S)
        halt.set()
        await asyncio.gather(*sources)
        late = await wait_delivered(cluster, tally.accepted, timeout_s=45)
        held = await last_values(sandbox, users)
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                stop(process)

    print(  # the figures the report quotes (pytest -s)
        f"\nscale-out: {len(tally.accepted)} events accepted ({before} before the kills), "
        f"answers {dict(tally.statuses)}, posts to the killed gateway: {tally.unreachable}, "
        f"not delivered: {len(late)}"
    )
    assert before > 0 and len(tally.accepted) > before
    assert not tally.unexpected, tally.unexpected[:10]
    assert tally.missing_retry_after == 0
    assert set(tally.statuses) <= {200, 202, 503}, tally.statuses
    assert not late, late[:10]
    for user in range(USERS):
        for target in TARGETS:
            assert held[(target, user)] == email(user, tally.highest[user]), (target, user)
