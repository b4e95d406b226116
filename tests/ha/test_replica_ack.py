"""`redis.min_replicas_ack` against a Redis with no replica: no 202 is promised; the answer is
503 `replication_timeout` with Retry-After, and the event, stored on the primary alone, is
answered 200 duplicate when retried."""

from __future__ import annotations

import aiohttp

from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
)
from usersync.redis_server import EmbeddedRedis


async def test_too_few_replicas_is_503_replication_timeout_then_a_duplicate(
    redis_server: EmbeddedRedis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """No replica acknowledges within the timeout: 503 replication_timeout with Retry-After,
    never a 202; the retry of the same event_id, once acks are not asked, is 200 duplicate."""
    asking = make_settings(
        redis_server.url,
        sandbox.url,
        redis={"min_replicas_ack": 1, "replica_ack_timeout_ms": 50},
    )
    body = event("evt-replica-ack-1")
    async with (
        running_gateway(asking) as url,
        http.post(
            url + "/v1/events", json=body, headers={"Authorization": "Bearer " + HRIS_TOKEN}
        ) as response,
    ):
        status, answer = response.status, await response.json()
        retry_after = response.headers.get("Retry-After")
    assert status == 503, answer
    assert answer["error"]["code"] == "replication_timeout"
    assert retry_after is not None
    plain = make_settings(redis_server.url, sandbox.url)
    async with running_gateway(plain) as url:
        status, answer = await Gateway(url, http).post(body)
    assert status == 200, answer
    assert answer["duplicate"] is True


async def test_an_admin_link_write_waits_for_replicas_too(
    redis_server: EmbeddedRedis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """PUT of a link with no replica to acknowledge it: 503 replication_timeout with
    Retry-After, the link written on the primary (the PUT is safe to repeat)."""
    asking = make_settings(
        redis_server.url,
        sandbox.url,
        redis={"min_replicas_ack": 1, "replica_ack_timeout_ms": 50},
    )
    path = "/v1/users/emp-replica-ack/links/fleet-eu"
    async with (
        running_gateway(asking) as url,
        http.put(
            url + path, json={"id": "4242"}, headers={"Authorization": "Bearer " + ADMIN_TOKEN}
        ) as response,
    ):
        status, answer = response.status, await response.json()
        retry_after = response.headers.get("Retry-After")
    assert status == 503, answer
    assert answer["error"]["code"] == "replication_timeout"
    assert retry_after is not None
    plain = make_settings(redis_server.url, sandbox.url)
    async with running_gateway(plain) as url:
        status, answer = await Gateway(url, http).get(path, token=ADMIN_TOKEN)
    assert status == 200, answer
    assert answer["id"] == "4242"
