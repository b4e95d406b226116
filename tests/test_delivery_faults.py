"""Retry policy, rate limit, circuit breaker and crash safety, with the sandbox misbehaving.

Time is asserted only as a lower bound where the behaviour is a wait (a slower machine cannot
make those fail), and as a generous comparison with a baseline measured in the same test.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from core import keys
from core.vendor_guard import VendorGuard
from tests.conftest import (
    ADMIN_TOKEN,
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
from usersync.redis_server import EmbeddedRedis

KIND = {"mileapp": "mileapp", "fleet-eu": "fleet", "plaspy": "plaspy", "partoo": "partoo"}


def vendors_with(redis_url: str, sandbox_url: str, **per_vendor: dict[str, Any]) -> Any:
    """The test vendors, with some settings replaced per instance."""
    vendors = make_raw_settings(redis_url, sandbox_url)["vendors"]
    for name, changes in per_vendor.items():
        vendors[name.replace("_", "-")].update(changes)
    return vendors


async def make_users(sandbox: Sandbox, count: int, first: int = 100) -> list[dict[str, str]]:
    """`count` users known to every sandbox vendor; their external ids per instance."""
    users = []
    for n in range(first, first + count):
        ids = {"fleet-eu": str(n), "mileapp": f"m{n}", "plaspy": f"p{n}", "partoo": f"t{n}"}
        for target, vendor_id in ids.items():
            await sandbox.put_user(KIND[target], vendor_id, {})
        users.append(ids)
    return users


def user_event(n: int, ids: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = event(f"evt-{n}", **overrides)
    body["user"] = {"id": f"emp-{n}", "version": 1, "external_ids": ids}
    body["changes"] = {"email": f"user{n}@example.com", "job_title": f"title {n}"}
    return body


async def test_503_with_retry_after_2_is_retried_about_2_seconds_later(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """A 503 carrying `Retry-After: 2` is retried no sooner than 2 s later, then delivered."""
    await sandbox.fault("fleet", status=503, retry_after="2", count=1)
    await gateway.post(event(targets=["fleet-eu"]))
    final = await gateway.wait_final("evt-1", timeout_s=15)
    assert final["targets"]["fleet-eu"]["status"] == "delivered"
    assert final["targets"]["fleet-eu"]["attempts"] == 2
    first, second = await sandbox.requests("fleet")
    assert first["status"] == 503
    waited = second["received_at"] - first["received_at"]
    assert 2.0 <= waited < 5.0, waited


async def test_retry_after_as_an_http_date_is_honoured(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """`Retry-After` given as an HTTP date (here 2 s ahead, at 1 s resolution) is a floor too."""
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    await sandbox.fault("partoo", status=429, retry_after=when, count=1)
    await gateway.post(event(targets=["partoo"]))
    final = await gateway.wait_final("evt-1", timeout_s=15)
    assert final["targets"]["partoo"]["status"] == "delivered"
    first, second = await sandbox.requests("partoo")
    assert second["received_at"] - first["received_at"] >= 1.5


async def test_429_slows_the_vendor_instance_for_every_pair(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """After a 429, the instance's shared rate is halved: 10 further calls to other users
    (20/s configured, so 10/s now) take at least ~0.85 s instead of ~0.45 s."""
    vendors = vendors_with(
        redis_server.url,
        sandbox.url,
        fleet_eu={"rate_limit": {"per_second": 20, "burst": 1, "recovery_s": 120}},
    )
    settings = make_settings(redis_server.url, sandbox.url, vendors=vendors)
    users = await make_users(sandbox, 11)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        await sandbox.fault("fleet", status=429, count=1)
        await gateway.post(user_event(0, users[0], targets=["fleet-eu"]))
        await gateway.wait_final("evt-0")
        state = await VendorGuard(redis).state("fleet-eu", settings.vendors["fleet-eu"], now_ms())
        assert state["rate"]["effective_per_second"] < 10.5
        assert state["rate"]["times_throttled"] == 1
        start = len(await sandbox.requests("fleet"))
        posted_at = time.time()  # the sandbox runs in this process: one clock
        await asyncio.gather(
            *(gateway.post(user_event(n, users[n], targets=["fleet-eu"])) for n in range(1, 11))
        )
        finals = [await gateway.wait_final(f"evt-{n}") for n in range(1, 11)]
    assert all(f["targets"]["fleet-eu"]["status"] == "delivered" for f in finals)
    calls = (await sandbox.requests("fleet"))[start:]
    assert len(calls) == 10
    # each call waits for its own slot, 100 ms apart at the halved rate (50 ms without the
    # 429): the last of 10 cannot come before 9 intervals after the posts, however late the
    # first one ran
    span = calls[-1]["received_at"] - posted_at
    assert span >= 0.85, span


async def test_a_400_is_dead_at_once_with_partoo_message_in_the_dead_letter(
    gateway: Gateway, worker: None, sandbox: Sandbox, redis: Redis
) -> None:
    """Partoo answers 400 with its `errors` message: one attempt, dead, the message in the
    status and in the attempt history, and the delivery indexed as a dead letter."""
    await sandbox.fault("partoo", status=400, body_failure="business_ids: unknown b9", count=1)
    await gateway.post(event(targets=["partoo", "fleet-eu"]))
    final = await gateway.wait_final("evt-1")
    partoo = final["targets"]["partoo"]
    assert partoo["status"] == "dead"
    assert partoo["attempts"] == 1
    assert partoo["last_http_status"] == 400
    assert "business_ids: unknown b9" in partoo["last_error"]
    assert final["targets"]["fleet-eu"]["status"] == "delivered"
    assert len(await sandbox.requests("partoo")) == 1
    history = orjson.loads(
        await redis.hget(keys.event("hris", "evt-1"), keys.history_field("partoo"))
    )
    assert [(h["attempt"], h["http_status"], h["outcome"]) for h in history] == [(1, 400, "dead")]
    assert "business_ids: unknown b9" in history[0]["error"]
    assert await redis.zrange(keys.DEAD_LETTERS, 0, -1) == [b"hris:evt-1:partoo"]


async def test_a_refused_coalesced_call_is_split_so_only_the_bad_event_dies(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """Changes coalesced into one call that Partoo refuses are then sent one by one, so only
    the change Partoo refuses again is dead; the others are delivered."""
    await sandbox.fault("partoo", latency_ms=300, count=1)
    await gateway.post(event("evt-1", targets=["partoo"], changes={"given_name": "Ada"}))

    async def in_flight() -> bool:
        return len(await sandbox.requests("partoo")) == 1

    await wait_until(in_flight, 5, "first call in flight")
    # refused twice: the merged call of evt-2 and evt-4, then evt-2 alone
    await sandbox.fault("partoo", status=400, body_failure="last_name refused", count=2)
    for n, changes in (
        (2, {"family_name": "Byron"}),
        (3, {"job_title": "Engineer"}),  # Partoo has no home for it: skipped, never sent
        (4, {"email": "ada@b.example"}),
    ):
        body = event(f"evt-{n}", targets=["partoo"], changes=changes)
        body["user"]["version"] = n
        await gateway.post(body)
    finals = {n: (await gateway.wait_final(f"evt-{n}"))["targets"]["partoo"] for n in range(1, 5)}
    assert {n: f["status"] for n, f in finals.items()} == {
        1: "delivered",
        2: "dead",
        3: "skipped",
        4: "delivered",
    }
    assert "last_name refused" in finals[2]["last_error"]
    assert [r["body"] for r in await sandbox.requests("partoo")] == [
        {"first_name": "Ada"},
        {"last_name": "Byron", "email": "ada@b.example"},
        {"last_name": "Byron"},
        {"email": "ada@b.example"},
    ]


async def test_circuit_breaker_holds_off_a_down_vendor_without_spending_attempts(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Partoo answers 503 for a while: after 3 failures the circuit opens and the other events
    wait without spending attempts. max_attempts is 3 and retries come within 0.2 s, so
    without the breaker every event would be dead long before Partoo is back; with it, every
    event is delivered, and while Partoo was down it got only the calls in flight when the
    circuit opened (at most 5, the in-flight limit) and one probe per cool-down."""
    vendors = vendors_with(
        redis_server.url,
        sandbox.url,
        partoo={"circuit_breaker": {"failure_threshold": 3, "cooldown_s": 0.5}},
    )
    settings = make_settings(redis_server.url, sandbox.url, vendors=vendors)
    users = await make_users(sandbox, 10)
    await sandbox.fault("partoo", status=503, count=10_000)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        for n in range(10):
            await gateway.post(user_event(n, users[n], targets=["partoo"]))

        async def opened() -> bool:
            guard = VendorGuard(redis)
            state = await guard.state("partoo", settings.vendors["partoo"], now_ms())
            return bool(state["circuit"]["state"] != "closed")

        await wait_until(opened, 10, "partoo circuit open")
        await asyncio.sleep(1.5)  # cool-downs of 0.5 s, then 1 s: each lets one probe through
        async with http.delete(f"{sandbox.url}/_sandbox/partoo/faults") as response:
            assert response.status == 200
        finals = [await gateway.wait_final(f"evt-{n}", timeout_s=20) for n in range(10)]
    assert [f["targets"]["partoo"]["status"] for f in finals] == ["delivered"] * 10
    journal = await sandbox.requests("partoo")
    failed_calls = [c for c in journal if c["status"] == 503]
    assert len(failed_calls) <= 5 + 4  # the calls in flight when it opened, then the probes
    spent = sum(f["targets"]["partoo"]["attempts"] for f in finals)
    assert spent == len(journal)  # every attempt is a call; waiting spent none


async def latencies(gateway: Gateway, sandbox: Sandbox, ids: list[str], target: str) -> list[float]:
    """Seconds from acceptance to the vendor receiving each event's call."""
    journal = await sandbox.requests(KIND[target])
    received = {}
    for request in journal:
        body = request["body"]
        email = (
            body.get("email")
            if isinstance(body, dict)
            else next((op["value"] for op in body if op["path"] == "/email"), None)
        )
        received.setdefault(email, request["received_at"])
    result = []
    for event_id in ids:
        _, status = await gateway.get(f"/v1/events/{event_id}")
        accepted = iso_seconds(status["received_at"])
        n = event_id.removeprefix("evt-")
        result.append(received[f"user{n}@example.com"] - accepted)
    return result


@pytest.mark.timeout(120)
async def test_a_vendor_fully_down_does_not_slow_the_other_three(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Baseline: 20 events to 20 users, four vendors. Then Partoo stops answering (every call
    times out) and 20 more go out: the other three vendors' latency stays within noise of the
    baseline (at most 3x + 250 ms; without the bulkhead and breaker it would be >= 2 s)."""
    fast = {"rate_limit": {"per_second": 1000, "burst": 100}}  # only the outage may slow it
    vendors = vendors_with(
        redis_server.url, sandbox.url, mileapp=fast, fleet_eu=fast, plaspy=fast, partoo=fast
    )
    settings = make_settings(redis_server.url, sandbox.url, vendors=vendors)
    users = await make_users(sandbox, 41)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        await gateway.post(user_event(40, users[40]))  # warm-up: the worker is up and polling
        await gateway.wait_final("evt-40")
        for n in range(20):
            await gateway.post(user_event(n, users[n]))
        for n in range(20):
            await gateway.wait_final(f"evt-{n}")
        await sandbox.fault("partoo", latency_ms=60_000, count=10_000)
        for n in range(20, 40):
            await gateway.post(user_event(n, users[n]))

        async def others_done() -> bool:
            for n in range(20, 40):
                _, status = await gateway.get(f"/v1/events/evt-{n}")
                if any(
                    t["status"] != "delivered"
                    for name, t in status["targets"].items()
                    if name != "partoo"
                ):
                    return False
            return True

        await wait_until(others_done, 30, "the three healthy vendors delivered")
        for target in ("mileapp", "fleet-eu", "plaspy"):
            before = await latencies(gateway, sandbox, [f"evt-{n}" for n in range(20)], target)
            during = await latencies(gateway, sandbox, [f"evt-{n}" for n in range(20, 40)], target)
            base, down = statistics.median(before), statistics.median(during)
            assert down <= 3 * base + 0.25, (target, base, down)
        async with http.delete(f"{sandbox.url}/_sandbox/partoo/faults") as response:
            assert response.status == 200


@pytest.mark.timeout(180)
async def test_worker_sigkill_and_redis_restart_lose_nothing(
    sandbox: Sandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Two worker processes deliver 60 events (60 users x 2 vendors) while one is SIGKILLed
    mid-call and Redis (AOF on) is stopped and restarted: every event the gateway accepted
    (answered 202) ends delivered to both vendors, and their count is exactly the accepted
    count; posts made while Redis was down were answered 503 and are not counted."""
    own = EmbeddedRedis(tmp_path / "redis").start()
    try:
        settings = make_settings(own.url, sandbox.url, worker={"job_timeout_s": 4})
        config = write_config(
            tmp_path,
            own.url,
            sandbox.url,
            worker={"concurrency": 4, "poll_delay_s": 0.01, "job_timeout_s": 4},
        )
        users = await make_users(sandbox, 60)
        accepted: list[str] = []
        refused = 0
        await sandbox.fault("fleet", latency_ms=400, count=12)
        workers = [start_usersync("worker", config) for _ in range(2)]
        try:
            async with running_gateway(settings) as url:
                gateway = Gateway(url, http)

                async def post(n: int) -> None:
                    nonlocal refused
                    status, _ = await gateway.post(
                        user_event(n, users[n], targets=["fleet-eu", "partoo"])
                    )
                    if status == 202:
                        accepted.append(f"evt-{n}")
                    else:
                        assert status == 503
                        refused += 1

                for n in range(20):
                    await post(n)

                async def slow_calls_running() -> bool:
                    return len(await sandbox.requests("fleet")) >= 2

                await wait_until(slow_calls_running, 20, "calls in flight")
                stop(workers[0], signal.SIGKILL)
                for n in range(20, 40):
                    await post(n)
                own.stop()  # SIGTERM: Redis writes its AOF and exits
                for n in range(40, 45):
                    await post(n)
                own.start()
                workers.append(start_usersync("worker", config))
                for n in range(45, 60):
                    await post(n)
                finals = [await gateway.wait_final(e, timeout_s=60) for e in accepted]
        finally:
            for process in workers:
                stop(process, signal.SIGKILL)
        assert refused == 5
        assert len(accepted) == 55
        assert len(finals) == len(accepted)
        for final in finals:
            assert {t: s["status"] for t, s in final["targets"].items()} == {
                "fleet-eu": "delivered",
                "partoo": "delivered",
            }, final
        delivered_emails = {
            r["body"]["email"] for r in await sandbox.requests("partoo") if r["status"] == 200
        }
        assert {f"user{e.removeprefix('evt-')}@example.com" for e in accepted} <= delivered_emails
    finally:
        own.stop()


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def iso_seconds(value: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_a_replay_gets_its_full_max_age_again(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A dead letter older than `retry.max_age_s` is replayed and its first call fails with a
    503: it is retried (max_age counts from the replay), not dead at once."""
    vendors = vendors_with(
        redis_server.url,
        sandbox.url,
        fleet_eu={"retry": {"max_attempts": 5, "base_delay_s": 0.05, "max_age_s": 2}},
    )
    settings = make_settings(redis_server.url, sandbox.url, vendors=vendors)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        body = event("evt-old", targets=["fleet-eu"], user={"id": "emp-9"})  # no link: dead
        await gateway.post(body)
        assert (await gateway.wait_final("evt-old"))["targets"]["fleet-eu"]["status"] == "dead"
        await asyncio.sleep(2.2)  # now older than max_age
        assert (await gateway.put("/v1/users/emp-9/links/fleet-eu", {"id": "42"}))[0] == 200
        await sandbox.fault("fleet", status=503, count=1)
        headers = {"Authorization": "Bearer " + ADMIN_TOKEN}
        replay = f"{url}/v1/dead-letters/hris:evt-old:fleet-eu/replay"
        async with http.post(replay, headers=headers) as response:
            assert response.status == 202
        fleet = (await gateway.wait_final("evt-old"))["targets"]["fleet-eu"]
    assert (fleet["status"], fleet["attempts"]) == ("delivered", 2), fleet
    assert fleet["replayed_at"] is not None


async def test_pairs_held_off_by_an_open_circuit_run_as_soon_as_a_probe_succeeds(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """The circuit opens on one failure; 9 more pairs wait. The probe after the cool-down is
    slow (1 s) but succeeds; the pairs that found it in flight were told to wait for its
    expiry (timeout + 5 s = 7 s), yet they run as soon as it succeeds, not 7 s later."""
    vendors = vendors_with(
        redis_server.url,
        sandbox.url,
        partoo={"circuit_breaker": {"failure_threshold": 1, "cooldown_s": 1}},
    )
    settings = make_settings(redis_server.url, sandbox.url, vendors=vendors)
    users = await make_users(sandbox, 10)
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        await sandbox.fault("partoo", status=503, count=1)
        await sandbox.fault("partoo", latency_ms=1000, count=1)  # the probe
        await gateway.post(user_event(0, users[0], targets=["partoo"]))

        async def opened() -> bool:
            state = await VendorGuard(redis).state("partoo", settings.vendors["partoo"], now_ms())
            return bool(state["circuit"]["times_opened"] == 1)

        await wait_until(opened, 10, "partoo circuit open")
        for n in range(1, 10):
            await gateway.post(user_event(n, users[n], targets=["partoo"]))
        finals = [await gateway.wait_final(f"evt-{n}", timeout_s=20) for n in range(10)]
    assert [f["targets"]["partoo"]["status"] for f in finals] == ["delivered"] * 10
    calls = await sandbox.requests("partoo")
    probe = calls[1]
    assert probe["status"] == 200
    after_probe = [c["received_at"] - (probe["received_at"] + 1.0) for c in calls[2:]]
    assert len(after_probe) >= 8
    assert max(after_probe) < 4.5, after_probe  # without the wake-up: >= 6 s
