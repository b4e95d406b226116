"""A backlog older than `retention.events_s` loses no event: an event owed to a target keeps no
TTL until its last target is final, and one whose record is gone anyway ends a dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from tests.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    running_worker,
    wait_until,
)
from usersync.redis_server import EmbeddedRedis

RETENTION_S = 5
"""The smallest retention the settings allow: the test outwaits it."""
USERS = ("emp-1", "emp-2", "emp-3")
VERSIONS = 4


@pytest.fixture
def short_retention(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url, retention={"events_s": RETENTION_S})


@pytest.fixture
async def gateway_only(
    short_retention: Settings, redis: Redis, sandbox: Sandbox
) -> AsyncIterator[Gateway]:
    async with running_gateway(short_retention) as url:
        yield Gateway(url, sandbox.http)


async def test_a_backlog_older_than_the_retention_is_all_delivered(
    gateway_only: Gateway, short_retention: Settings, redis: Redis
) -> None:
    """Events waiting with no worker past retention.events_s are kept, then all delivered."""
    ids = []
    for user in USERS:
        for version in range(1, VERSIONS + 1):
            event_id = f"{user}-v{version}"
            body = event(event_id, user={**event()["user"], "id": user, "version": version})
            status, answer = await gateway_only.post(body)
            assert status == 202, answer
            ids.append(event_id)
    assert all([await redis.pttl(keys.event("hris", i)) == -1 for i in ids])  # owed: no TTL
    await asyncio.sleep(RETENTION_S + 1.5)
    assert all([await redis.exists(keys.event("hris", i)) for i in ids])
    async with running_worker(short_retention):
        for event_id in ids:
            final = await gateway_only.wait_final(event_id, timeout_s=20)
            states = {t: s["status"] for t, s in final["targets"].items()}
            assert set(states.values()) == {"delivered"}, (event_id, states)
    ttls = [await redis.pttl(keys.event("hris", i)) for i in ids]
    assert all(0 < ttl <= RETENTION_S * 1000 for ttl in ttls), ttls  # final: retention runs


async def test_a_pending_event_whose_record_is_gone_is_a_dead_letter(
    gateway_only: Gateway, short_retention: Settings, redis: Redis
) -> None:
    """A pending ref whose event hash vanished ends a dead letter shown `expired`, counted."""
    body = event("gone-1", targets=["fleet-eu", "partoo"])
    status, answer = await gateway_only.post(body)
    assert status == 202, answer
    await redis.delete(keys.event("hris", "gone-1"))  # evicted behind the product's back
    letters = {f"hris:gone-1:{target}" for target in ("fleet-eu", "partoo")}

    async def indexed() -> bool:
        members = {m.decode() for m in await redis.zrange(keys.DEAD_LETTERS, 0, -1)}
        return letters <= members

    async with running_worker(short_retention):
        await wait_until(indexed, 15, "dead letters of the vanished event")
    for target in ("fleet-eu", "partoo"):
        assert await redis.zcard(keys.pending(target, "emp-42")) == 0
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with gateway_only.http.get(gateway_only.url + "/v1/dead-letters", headers=headers) as r:
        listed = await r.json()
    shown = {item["id"]: item for item in listed["dead_letters"]}
    assert set(shown) == letters
    assert all(item["expired"] for item in shown.values())
    async with gateway_only.http.get(gateway_only.url + "/metrics", headers=headers) as r:
        text = await r.text()
    assert "usersync_dead_letters 2.0" in text
