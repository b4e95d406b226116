"""Take-over after a worker dies: the call a SIGKILLed `usersync worker` had in flight is made
again by another worker once the dead one's heartbeat lapses, not after its arq in-progress key
(`job_timeout_s` + 10 s) and its lease expire. Default job and vendor timeouts."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    running_gateway,
    start_usersync,
    stop,
    wait_until,
)
from usersync.redis_server import EmbeddedRedis

TARGET = "fleet-eu"
SLOW_CALL_MS = 8000
"""The killed worker's call: still in flight when it dies (the vendor's timeout is 10 s)."""
BOUND_S = 30
"""The wait the test allows: below the 40 s arq's in-progress key alone would hold the job."""


async def workers_alive(redis: Redis) -> int:
    return len([key async for key in redis.scan_iter(match=keys.heartbeat("*"))])


async def test_a_killed_workers_call_is_made_again_by_another_worker(
    tmp_path: Path, redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis
) -> None:
    """SIGKILL mid-call: the event is delivered by the surviving worker within the bound."""
    raw = make_raw_settings(
        redis_server.url,
        sandbox.url,
        worker={"concurrency": 10, "poll_delay_s": 0.05, "job_timeout_s": 30, "metrics_port": 0},
    )
    raw["vendors"][TARGET]["timeout_s"] = 10  # the defaults: lease 15 s, in-progress key 40 s
    settings = Settings.model_validate(raw)
    config = tmp_path / "usersync.yaml"
    config.write_text(yaml.safe_dump(raw))
    first = start_usersync("worker", config)
    second = None
    try:
        await wait_until(lambda: _alive(redis, 1), 30, "first worker up", every_s=0.1)
        async with running_gateway(settings) as url:
            gateway = Gateway(url, sandbox.http)
            await sandbox.fault("fleet", latency_ms=SLOW_CALL_MS, count=1)
            status, answer = await gateway.post(event("slow-1", targets=[TARGET]))
            assert status == 202, answer

            async def in_flight() -> bool:
                return bool(await redis.exists(keys.lease(TARGET, "emp-42")))

            await wait_until(in_flight, 10, "the first worker's call in flight")
            second = start_usersync("worker", config)
            await wait_until(lambda: _alive(redis, 2), 30, "second worker up", every_s=0.1)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_at = time.monotonic()
            final = await gateway.wait_final("slow-1", timeout_s=BOUND_S)
            took_s = time.monotonic() - killed_at
            assert final["targets"][TARGET]["status"] == "delivered"
            print(f"\ntakeover: SIGKILL to delivered by the other worker: {took_s:.2f} s")
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)


async def _alive(redis: Redis, n: int) -> bool:
    return await workers_alive(redis) >= n
