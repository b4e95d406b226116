"""Urgent deliveries overtake backlogs: with tens of thousands of changes queued for a vendor
limited to 20 calls/s, a deactivation posted last reaches the vendor long before the backlog
drains, and the backlog still delivers each user's changes in order afterwards."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from core.event import Event
from core.vendor_guard import VendorGuard
from tests.conftest import (
    HRIS_TOKEN,
    IDP_TOKEN,
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    running_gateway,
    running_worker,
    wait_until,
)
from tests.test_vendor_guard import vendor
from usersync.redis_server import EmbeddedRedis

TARGET = "fleet-eu"
USERS = 1000
VERSIONS = 20
"""USERS x VERSIONS = 20,000 events: 1,000 calls at 20/s, about 50 s of backlog."""
PER_BATCH = 1000
STILL_WAITING = 5000
"""Events of the backlog that must still wait when the urgent one is delivered."""
SAMPLE_USER = "bulk-200"
"""Its call comes about 10 s into the drain, after the urgent one: its order is checked."""


def urgent_settings(redis_url: str, sandbox_url: str) -> Settings:
    raw = make_raw_settings(
        redis_url,
        sandbox_url,
        gateway={"max_body_bytes": 16 * 1024 * 1024, "batch_max_events": PER_BATCH},
        sources=[
            {
                "name": "hris",
                "token": HRIS_TOKEN,
                "rate_limit": {"per_second": 100_000, "burst": 100_000},
            },
            {"name": "idp", "token": IDP_TOKEN, "allowed_targets": [TARGET]},
        ],
    )
    raw["vendors"][TARGET]["rate_limit"] = {"per_second": 20, "burst": 20}
    return Settings.model_validate(raw)


def change(user: str, version: int) -> dict[str, Any]:
    return event(
        f"{user}-v{version}",
        targets=[TARGET],
        user={"id": user, "version": version, "external_ids": {TARGET: USER_IDS[TARGET]}},
        changes={"email": f"{user}.{version}@example.com"},
    )


async def post_batch(gateway: Gateway, events: list[dict[str, Any]]) -> None:
    status, answer = await gateway.post({"events": events}, path="/v1/events:batch")
    assert status in (200, 207), answer


async def test_a_deactivation_overtakes_a_backlog_of_20000(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis
) -> None:
    """The deactivation is delivered while > STILL_WAITING events wait; order holds after."""
    settings = urgent_settings(redis_server.url, sandbox.url)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, sandbox.http)
        for first in range(0, USERS * VERSIONS, PER_BATCH):
            await post_batch(
                gateway,
                [
                    change(f"bulk-{n % USERS}", n // USERS + 1)
                    for n in range(first, first + PER_BATCH)
                ],
            )
        assert await redis.zcard(keys.waiting(TARGET)) == USERS * VERSIONS
        async with running_worker(settings):

            async def backlog_reserved() -> bool:  # the pairs have taken slots far ahead
                tat = await redis.hget(keys.vendor(TARGET), keys.VENDOR_TAT)
                return tat is not None and float(tat) > time.time() * 1000 + 20_000

            await wait_until(backlog_reserved, 30, "the backlog's slots reserved", every_s=0.2)
            deactivation = event(
                "leaver-1",
                type="user.deactivated",
                targets=[TARGET],
                user={"id": "leaver", "version": 1, "external_ids": {TARGET: USER_IDS[TARGET]}},
                # fleet has no active flag: the email change is what its call carries
                changes={"active": False, "email": "leaver@example.com"},
            )
            assert Event.model_validate(deactivation).urgent
            posted = time.monotonic()
            status, answer = await gateway.post(deactivation)
            assert status == 202, answer
            final = await gateway.wait_final("leaver-1", timeout_s=15)
            took_s = time.monotonic() - posted
            waiting = await redis.zcard(keys.waiting(TARGET))
            assert final["targets"][TARGET]["status"] == "delivered", final["targets"]
            assert waiting > STILL_WAITING, waiting
            print(f"\nurgent: posted to delivered {took_s:.2f} s, {waiting} events still waiting")
            for version in range(1, VERSIONS + 1):
                await gateway.wait_final(f"{SAMPLE_USER}-v{version}", timeout_s=30)
            applied = await redis.hgetall(keys.applied(TARGET, SAMPLE_USER))
            assert int(applied[b"email"]) == VERSIONS  # the vendor ended on the newest change


async def test_urgent_calls_take_slots_that_normal_ones_give_back(redis: Redis) -> None:
    """Behind a backlog an urgent permit goes at once (its own lane, spaced by the rate), and
    as many normal reserved slots as urgent calls took are given up when they come due, their
    pairs reserving again after the backlog: the vendor sees no more calls than its rate."""
    guard, settings, now = VendorGuard(redis), vendor(per_second=10, burst=1), 1_000_000
    alone = await guard.permit(TARGET, settings, now - 10_000, "alone", None, urgent=True)
    assert alone.verdict == "go"  # no backlog: an ordinary permit, nothing owed
    assert await redis.hget(keys.vendor(TARGET), keys.VENDOR_OWED) is None
    normal = [await guard.permit(TARGET, settings, now, f"n-{n}", None) for n in range(10)]
    assert [p.verdict for p in normal] == ["go"] + ["rate"] * 9
    first = await guard.permit(TARGET, settings, now, "u-1", None, urgent=True)
    second = await guard.permit(TARGET, settings, now, "u-2", None, urgent=True)
    assert first.verdict == "go"
    assert (second.verdict, second.wait_ms) == ("rate", 100)  # the lane is spaced by the rate
    due = [p.slot_ms for p in normal[1:4]]
    assert None not in due
    answers = [
        await guard.permit(TARGET, settings, slot, f"n-{n + 1}", slot)
        for n, slot in enumerate(due)
        if slot is not None
    ]
    assert [a.verdict for a in answers] == ["rate", "rate", "go"]  # two given back, then kept
    last_reserved = normal[-1].slot_ms
    assert last_reserved is not None
    assert all(a.slot_ms is not None and a.slot_ms > last_reserved for a in answers[:2])
