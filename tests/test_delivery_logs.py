"""What delivery tells operators: circuit transitions logged where the vendor guard's reply
comes back, `dead` lines without retry fields, and what a target that is not final waits for
(`waiting_for`, `next_attempt_at`), with the real worker against the sandbox."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
from redis.asyncio import Redis

from config.settings import Settings
from core.vendor_guard import VendorGuard
from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    log_lines,
    make_raw_settings,
    running_gateway,
    running_worker,
    wait_until,
)
from usersync.redis_server import EmbeddedRedis

T0 = 1_700_000_000_000
"""An explicit clock for the guard's scripts (the tests of the breaker's own rules)."""


def settings_with(redis_url: str, sandbox_url: str, **fleet: Any) -> Settings:
    """The test settings with fleet-eu's settings changed."""
    raw = make_raw_settings(redis_url, sandbox_url)
    raw["vendors"]["fleet-eu"].update(fleet)
    return Settings.model_validate(raw)


def events_named(stream: io.BytesIO, *names: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(stream) if line["event"] in names]


async def test_circuit_transitions_are_logged_from_the_scripts_replies(
    redis: Redis, settings: Settings, log_output: io.BytesIO
) -> None:
    """Opening (failures, cool-down), the probe that makes it half-open, a failed probe
    reopening it with the doubled cool-down, and a successful one closing it: one line each,
    none for the calls in between."""
    vendor = settings.vendors["fleet-eu"].model_copy(
        update={
            "circuit_breaker": settings.vendors["fleet-eu"].circuit_breaker.model_copy(
                update={"failure_threshold": 2, "cooldown_s": 1.0}
            )
        }
    )
    guard = VendorGuard(redis)
    await guard.record("fleet-eu", vendor, T0, "a", "failure")
    await guard.record("fleet-eu", vendor, T0, "b", "failure")
    await guard.record("fleet-eu", vendor, T0, "c", "failure")  # already open: no new line
    assert (await guard.permit("fleet-eu", vendor, T0 + 500, "d", None)).verdict == "open"
    assert (await guard.permit("fleet-eu", vendor, T0 + 1_000, "p1", None)).verdict == "probe"
    await guard.record("fleet-eu", vendor, T0 + 1_000, "p1", "failure")
    assert (await guard.permit("fleet-eu", vendor, T0 + 3_000, "p2", None)).verdict == "probe"
    await guard.record("fleet-eu", vendor, T0 + 3_000, "p2", "success")
    await guard.record("fleet-eu", vendor, T0 + 3_000, "e", "success")  # closed: no line
    lines = events_named(log_output, "circuit_opened", "circuit_half_open", "circuit_closed")
    seen = [(line["event"], line["vendor"], line["failures"], line["cooldown_s"]) for line in lines]
    assert seen == [
        ("circuit_opened", "fleet-eu", 2, 1.0),
        ("circuit_half_open", "fleet-eu", 3, 1.0),
        ("circuit_opened", "fleet-eu", 4, 2.0),
        ("circuit_half_open", "fleet-eu", 4, 2.0),
        ("circuit_closed", "fleet-eu", 4, 2.0),
    ]
    assert [line.get("probe_failed") for line in lines if line["event"] == "circuit_opened"] == [
        False,
        True,
    ]


async def test_the_worker_logs_the_circuit_opening_with_its_commit(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    log_output: io.BytesIO,
) -> None:
    """A vendor failing `failure_threshold` times in a row: the worker's commit (one round
    trip with the guard's record) logs `circuit_opened` once, and the events held off by it
    say `circuit_open` with the time of their next attempt."""
    settings = settings_with(
        redis_server.url,
        sandbox.url,
        circuit_breaker={"failure_threshold": 2, "cooldown_s": 60},
        retry={"max_attempts": 5, "base_delay_s": 0.05, "max_delay_s": 0.05, "max_age_s": 600},
    )
    await sandbox.fault("fleet", status=503, count=100)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        assert (await gateway.post(event("cb-1", targets=["fleet-eu"])))[0] == 202

        async def held() -> bool:
            _, body = await gateway.get("/v1/events/cb-1")
            return bool(body["targets"]["fleet-eu"].get("waiting_for") == "circuit_open")

        await wait_until(held, 15, "cb-1 waiting for the open circuit")
        _, body = await gateway.get("/v1/events/cb-1")
    status = body["targets"]["fleet-eu"]
    assert status["status"] == "failed" and status["attempts"] == 2
    assert status["next_attempt_at"] is not None
    [opened] = events_named(log_output, "circuit_opened")
    assert (opened["vendor"], opened["failures"], opened["cooldown_s"]) == ("fleet-eu", 2, 60.0)


async def test_dead_lines_carry_no_retry_fields(
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    log_output: io.BytesIO,
) -> None:
    """Each failed call that will be retried logs `retry_in_s`; the last one, `dead`, does
    not (nothing follows it), and the dead status has no next attempt nor anything to wait
    for."""
    settings = settings_with(redis_server.url, sandbox.url)  # max_attempts 3
    await sandbox.fault("fleet", status=503, count=3)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        await gateway.post(event("dead-1", targets=["fleet-eu"]))
        final = await gateway.wait_final("dead-1", timeout_s=15)
    status = final["targets"]["fleet-eu"]
    assert status["status"] == "dead" and status["attempts"] == 3
    assert status["next_attempt_at"] is None and status["waiting_for"] is None
    calls = [line for line in events_named(log_output, "delivery_attempt") if line["attempt"]]
    assert [line["outcome"] for line in calls] == ["retry", "retry", "dead"]
    assert all("retry_in_s" in line for line in calls[:2])
    assert "retry_in_s" not in calls[2]


async def test_a_pending_status_says_what_it_waits_for(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Accepted and not yet taken: `queued`. A failed call waiting out its backoff:
    `retry_backoff` with the next attempt's time. The vendor's rate used up: `rate_limit`
    with the slot's time."""
    settings = settings_with(
        redis_server.url,
        sandbox.url,
        retry={"max_attempts": 3, "base_delay_s": 60, "max_delay_s": 60, "max_age_s": 600},
        rate_limit={"per_second": 0.02, "burst": 1},
    )
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        await gateway.post(event("wait-1", targets=["fleet-eu"]))
        _, body = await gateway.get("/v1/events/wait-1")
        assert body["targets"]["fleet-eu"]["waiting_for"] == "queued"
        assert body["targets"]["fleet-eu"]["next_attempt_at"] is None
        await sandbox.fault("fleet", status=503, count=1)
        async with running_worker(settings):

            async def target(event_id: str) -> dict[str, Any]:
                _, body = await gateway.get(f"/v1/events/{event_id}")
                return dict(body["targets"]["fleet-eu"])

            async def backing_off() -> bool:
                return (await target("wait-1")).get("waiting_for") == "retry_backoff"

            await wait_until(backing_off, 15, "wait-1 backing off")
            # the one call of the burst is spent: the next pair waits for a rate slot
            other = event("wait-2", targets=["fleet-eu"])
            other["user"] = {"id": "emp-43", "version": 1, "external_ids": {"fleet-eu": "42"}}
            await gateway.post(other)

            async def rate_limited() -> bool:
                return (await target("wait-2")).get("waiting_for") == "rate_limit"

            await wait_until(rate_limited, 15, "wait-2 waiting for a rate slot")
            first, second = await target("wait-1"), await target("wait-2")
    assert first["status"] == "failed" and first["attempts"] == 1
    assert first["next_attempt_at"] > first["updated_at"]
    assert second["status"] == "pending" and second["attempts"] == 0
    assert second["next_attempt_at"] > second["updated_at"]
