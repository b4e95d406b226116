"""Every registered kind end to end: its adapter's standard call reaches its simulator over
real Redis, gateway, worker and HTTP, and is accepted. A new kind (its folder and registry
line) is covered here without a line changed: the instances are made from the registry."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    running_worker,
)
from tests.kinds import DEMO_USERS, FIXTURES, NAMES
from usersync.redis_server import EmbeddedRedis


def instances(sandbox_url: str) -> dict[str, Any]:
    """One vendor instance per registered kind, named after it, pointing at the sandbox."""
    return {
        kind: {
            "kind": kind,
            "base_url": sandbox_url + fixtures.sandbox_path,
            "auth": {"token": fixtures.token},
            "timeout_s": 2,
            "retry": {"max_attempts": 2, "base_delay_s": 0.05, "max_delay_s": 0.1},
            **fixtures.settings,
        }
        for kind, fixtures in FIXTURES.items()
    }


@pytest.mark.parametrize("kind", NAMES)
async def test_standard_change_reaches_the_simulator(
    kind: str,
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
) -> None:
    """The kind's standard change to its demo user is delivered: the simulator received the
    documented call (method, path, credential, media type, body) once and answered it with
    a 2xx."""
    fixtures = FIXTURES[kind]
    settings = make_settings(redis_server.url, sandbox.url, vendors=instances(sandbox.url))
    body = event(
        f"kind-{kind}",
        targets=[kind],
        user={"id": "emp-42", "version": 1, "external_ids": {kind: DEMO_USERS[kind]}},
        changes=dict(fixtures.standard_change),
    )
    async with running_gateway(settings) as url, running_worker(settings):
        gateway = Gateway(url, http)
        status, answer = await gateway.post(body)
        assert status == 202, answer
        final = await gateway.wait_final(f"kind-{kind}")
    assert final["targets"][kind]["status"] == "delivered", final
    calls = await sandbox.requests(kind)
    assert len(calls) == 1
    call = calls[0]
    assert call["method"] == fixtures.update_method
    assert call["path"] == fixtures.update_url(fixtures.sandbox_path, DEMO_USERS[kind])
    for header, value in fixtures.auth_headers().items():
        assert call["headers"][header] == value
    assert call["headers"]["Content-Type"] == fixtures.media_type
    assert call["body"] == fixtures.standard_body
    assert 200 <= call["status"] < 300
