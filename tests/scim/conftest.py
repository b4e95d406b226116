"""SCIM fixtures: a gateway whose sources `okta` and `entra` provision over SCIM (`scim: true`),
`hris` does not, and a client speaking `application/scim+json` with a source's token."""

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


@pytest.fixture
async def scim(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession
) -> AsyncIterator[Scim]:
    async with running_gateway(settings) as url:
        yield Scim(url, http)
