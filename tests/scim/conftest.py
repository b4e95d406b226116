"""SCIM fixtures: a gateway whose sources `okta` and `entra` provision over SCIM (`scim: true`),
`restricted` too but only to fleet-eu and under `link_mode: create`, `hris` does not; and a
client speaking `application/scim+json` with a source's token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from config.settings import Settings
from tests.conftest import HRIS_TOKEN, Sandbox, make_settings, running_gateway
from usersync.redis_server import EmbeddedRedis

OKTA_TOKEN = "test-okta-scim-token-0123456789"
ENTRA_TOKEN = "test-entra-scim-token-0123456789"
RESTRICTED_TOKEN = "test-restricted-scim-token-0123456789"
SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LINKS = "urn:usersync:params:scim:schemas:extension:links:2.0:User"


def scim_sources() -> list[dict[str, Any]]:
    return [
        {"name": "hris", "token": HRIS_TOKEN},
        {"name": "okta", "token": OKTA_TOKEN, "scim": True},
        {"name": "entra", "token": ENTRA_TOKEN, "scim": True},
        {
            "name": "restricted",
            "token": RESTRICTED_TOKEN,
            "scim": True,
            "allowed_targets": ["fleet-eu"],
            "link_mode": "create",
        },
    ]


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url, sources=scim_sources())


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


@dataclass
class Scim:
    """An identity provider's client of /scim/v2, with one source's token."""

    url: str
    http: aiohttp.ClientSession
    token: str = OKTA_TOKEN

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = SCIM_JSON,
    ) -> Answer:
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            sent["Content-Type"] = content_type
        async with self.http.request(
            method, f"{self.url}/scim/v2{path}", data=data, headers=sent
        ) as response:
            text = await response.read()
            parsed = orjson.loads(text) if text else None
            return Answer(response.status, parsed, response.headers)

    def as_source(self, token: str) -> Scim:
        return Scim(self.url, self.http, token)

    async def create(self, user_name: str, **attributes: Any) -> Answer:
        """POST /Users of a user with this userName and attributes; asserts the 201."""
        body = {"schemas": [USER_SCHEMA], "userName": user_name, **attributes}
        answer = await self.call("POST", "/Users", body)
        assert answer.status == 201, answer.body
        return answer

    async def patch(self, user_id: str, *operations: dict[str, Any], **kwargs: Any) -> Answer:
        body = {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
        return await self.call("PATCH", f"/Users/{user_id}", body, **kwargs)


@pytest.fixture
async def scim(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession
) -> AsyncIterator[Scim]:
    async with running_gateway(settings) as url:
        yield Scim(url, http)


async def seed_scim_users(
    url: str, http: aiohttp.ClientSession, token: str, prefix: str, count: int = 20
) -> list[str]:
    """`count` SCIM users created with a SCIM source's token: their ids (for schemathesis,
    whose calls on /Users/{id} would otherwise only meet 404s)."""
    scim = Scim(url, http, token)
    return [
        (await scim.create(f"{prefix}-{n}@example.com", title="Seeded")).body["id"]
        for n in range(count)
    ]
