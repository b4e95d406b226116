"""`redis.min_replicas_ack` holds for SCIM writes too: against a Redis with no replica, a
create is not promised (503 `replication_timeout`, a SCIM error, with Retry-After); what was
stored on the primary alone is found by the identity provider's retry (409 uniqueness, then
its lookup), and its event was stored once."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from redis.asyncio import Redis

from core import keys
from tests.conftest import Sandbox, make_settings, running_gateway
from tests.scim.conftest import ERROR_SCHEMA, USER_SCHEMA, Scim, scim_sources
from usersync.redis_server import EmbeddedRedis


async def test_too_few_replicas_is_503_then_the_retry_finds_the_user(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """No replica acknowledges: 503 replication_timeout, never a 201; the retried create is
    409 uniqueness, the lookup finds the one user, and one event is stored."""
    asking = make_settings(
        redis_server.url,
        sandbox.url,
        sources=scim_sources(),
        redis={"min_replicas_ack": 1, "replica_ack_timeout_ms": 50},
    )
    body = {"schemas": [USER_SCHEMA], "userName": "ada@example.com"}
    async with running_gateway(asking) as url:
        answer = await Scim(url, http).call("POST", "/Users", body)
    assert (answer.status, answer.body["schemas"]) == (503, [ERROR_SCHEMA]), answer.body
    assert "replicas" in answer.body["detail"]
    assert answer.headers["Retry-After"] == "1"
    plain = make_settings(redis_server.url, sandbox.url, sources=scim_sources())
    async with running_gateway(plain) as url:
        scim = Scim(url, http)
        assert (await scim.call("POST", "/Users", body)).status == 409
        found = await scim.call("GET", "/Users?filter=" + quote('userName eq "ada@example.com"'))
    assert found.body["totalResults"] == 1
    user_id = found.body["Resources"][0]["id"]
    assert await redis.exists(keys.event("okta", f"scim:{user_id}:1")) == 1
