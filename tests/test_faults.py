"""Faults for real: a vendor that is down, and worker processes stopped with events waiting."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    make_settings,
    running_gateway,
    running_worker,
    start_usersync,
    stop,
    wait_until,
    write_config,
)
from usersync.redis_server import EmbeddedRedis, free_port


async def test_vendor_refusing_connections_is_retried_then_dead(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A vendor whose port refuses connections is retried max_attempts times, then dead."""
    down = make_raw_settings(redis_server.url, sandbox.url)
    down["vendors"]["fleet-eu"]["base_url"] = f"http://127.0.0.1:{free_port()}/fleet/api"
    settings = make_settings(redis_server.url, sandbox.url, vendors=down["vendors"])
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        await gateway.post(event(targets=["fleet-eu", "partoo"]))
        final = await gateway.wait_final("evt-1")
    fleet = final["targets"]["fleet-eu"]
    assert fleet["status"] == "dead"
    assert fleet["attempts"] == 3
    assert fleet["last_http_status"] is None
    assert "network_error" in fleet["last_error"]
    assert final["targets"]["partoo"]["status"] == "delivered"


@pytest.mark.timeout(90)
async def test_events_waiting_for_a_worker_are_delivered_when_it_starts(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Events accepted while no worker runs wait in Redis; a worker process started later, then
    stopped with SIGTERM and started again, delivers every one of them exactly as accepted."""
    settings = make_settings(redis_server.url, sandbox.url)
    config = write_config(tmp_path, redis_server.url, sandbox.url)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        for n in range(20):  # 20 users: 20 pairs, so nothing is coalesced
            body = event(f"evt-{n}", targets=["fleet-eu"], changes={"job_title": f"title {n}"})
            body["user"]["id"] = f"emp-{n}"
            assert (await gateway.post(body))[0] == 202
        assert await redis.zcard("arq:queue") == 20

        await sandbox.fault("fleet", latency_ms=300, count=20)
        first = start_usersync("worker", config)
        try:

            async def delivered_some() -> bool:
                return bool(await sandbox.requests("fleet"))

            await wait_until(delivered_some, 20, "the first worker process delivers")
        finally:
            # in a thread: the sandbox answering the worker's calls runs on this event loop
            await asyncio.to_thread(stop, first, signal.SIGTERM)

        second = start_usersync("worker", config)
        try:
            finals = [await gateway.wait_final(f"evt-{n}", timeout_s=30) for n in range(20)]
        finally:
            stop(second)
    assert all(f["targets"]["fleet-eu"]["status"] == "delivered" for f in finals)
    delivered_titles = {
        r["body"]["position"] for r in await sandbox.requests("fleet") if r["status"] == 200
    }
    assert delivered_titles == {f"title {n}" for n in range(20)}
    assert await redis.zcard("arq:queue") == 0


@pytest.mark.timeout(120)
async def test_worker_killed_mid_delivery_loses_nothing(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A worker SIGKILLed while its calls are in flight: a new worker delivers every event after
    the in-progress lease expires; each event ends delivered."""
    settings = make_settings(redis_server.url, sandbox.url, worker={"job_timeout_s": 5})
    config = write_config(
        tmp_path,
        redis_server.url,
        sandbox.url,
        worker={"concurrency": 10, "poll_delay_s": 0.01, "job_timeout_s": 5},
    )
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        await sandbox.fault("partoo", latency_ms=1500, count=5)
        for n in range(5):  # 5 users: one call in flight per (vendor, user) pair
            body = event(f"evt-{n}", targets=["partoo"])
            body["user"]["id"] = f"emp-{n}"
            assert (await gateway.post(body))[0] == 202
        victim = start_usersync("worker", config)
        try:

            async def all_in_flight() -> bool:
                return len(await redis.keys("arq:in-progress:*")) == 5

            await wait_until(all_in_flight, 20, "5 deliveries in flight")
            await asyncio.sleep(0.3)  # the calls are now waiting on the slow vendor
        finally:
            stop(victim, signal.SIGKILL)
        successor = start_usersync("worker", config)
        try:
            finals = [await gateway.wait_final(f"evt-{n}", timeout_s=60) for n in range(5)]
        finally:
            stop(successor)
    assert [f["targets"]["partoo"]["status"] for f in finals] == ["delivered"] * 5
