"""A bound on what sources can store: Redis nearly full refuses new events (503 storage_full)
while it lasts, and a source with no rate limit configured still has the default one.

Each test has its own redis-server (started here, so its `maxmemory` can be set) and the
product's gateway on loopback; no worker runs and the vendors are never called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from config.ingress import DEFAULT_SOURCE_RATE, SourceSettings
from core import keys
from tests.conftest import HRIS_TOKEN, IDP_TOKEN, event, make_settings, running_gateway, wait_until
from usersync.redis_server import EmbeddedRedis

CHUNK = 64 * 1024
"""Bytes of each value that fills the test Redis (small: one large write would hold as much
again in its connection's query buffer for a while, and Redis counts that memory too)."""
FILLER = 128
"""Chunks written to fill the test Redis (8 MiB)."""
BATCH = 5 * DEFAULT_SOURCE_RATE.burst
"""A batch this large empties a default allowance and leaves it owing 4 bursts (8 s at the
default rate): the next post is refused however slow the machine is."""


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedRedis, Redis]]:
    """A redis-server of this test alone (its maxmemory is changed), and a client of it."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    client = Redis.from_url(server.url)
    yield server, client
    await client.aclose()
    server.stop()


Post = Callable[..., Awaitable[tuple[int, dict[str, str], Any]]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def poster(http: aiohttp.ClientSession, url: str) -> Post:
    """POST a body to the gateway at `url`: (status, headers, JSON answer)."""

    async def post(
        body: Any, path: str = "/v1/events", token: str = HRIS_TOKEN
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with http.post(url + path, data=orjson.dumps(body), headers=headers) as response:
            return response.status, dict(response.headers), await response.json()

    return post


async def fill(client: Redis, chunks: int = FILLER) -> int:
    """Store `chunks` values of CHUNK bytes (`filler:{n}`) until Redis refuses one for
    memory; the number stored."""
    for n in range(chunks):
        try:
            await client.set(f"filler:{n}", b"x" * CHUNK)
        except OutOfMemoryError:
            return n
    return chunks


async def used_memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def test_a_nearly_full_redis_refuses_new_events_until_memory_is_freed(
    own_redis: tuple[EmbeddedRedis, Redis], http: aiohttp.ClientSession
) -> None:
    """Past `redis.max_memory_fraction` (0.9) of maxmemory, posts and batches are 503
    `storage_full` with Retry-After, while Redis itself still takes writes; once memory is
    freed, posts are accepted again."""
    server, client = own_redis
    settings = make_settings(server.url, "http://127.0.0.1:9")
    assert settings.redis.max_memory_fraction == 0.9
    async with running_gateway(settings) as url:
        post = poster(http, url)
        assert (await post(event("before")))[0] == 202
        assert await fill(client) == FILLER
        # used: 95% of maxmemory, past the gateway's 90% and short of Redis's own limit
        await client.config_set("maxmemory", int(await used_memory(client) / 0.95))
        answers: list[tuple[int, dict[str, str], Any]] = []

        async def refused() -> bool:
            answers.append(await post(event(f"during-{len(answers)}")))
            return answers[-1][0] == 503

        await wait_until(refused, 5, "a post refused for storage", every_s=0.1)
        status, headers, body = answers[-1]
        assert body["error"]["code"] == "storage_full" and int(headers["Retry-After"]) >= 1
        status, _, body = await post({"events": [event("batched")]}, "/v1/events:batch")
        assert (status, body["error"]["code"]) == (503, "storage_full")
        assert await client.set("probe", b"1")  # the gateway's bound, not Redis's refusal

        await client.delete(*[f"filler:{n}" for n in range(FILLER)])

        async def accepted() -> bool:
            answers.append(await post(event(f"after-{len(answers)}")))
            return answers[-1][0] == 202

        await wait_until(accepted, 5, "a post accepted once memory is freed", every_s=0.1)


async def test_redis_refusing_a_write_for_memory_is_storage_full(
    own_redis: tuple[EmbeddedRedis, Redis], http: aiohttp.ClientSession
) -> None:
    """With the gateway's own check off (fraction 0), Redis's `OOM command not allowed` on
    the ingest write is the same 503 `storage_full`, never another error; nothing is stored."""
    server, client = own_redis
    settings = make_settings(
        server.url,
        "http://127.0.0.1:9",
        redis={"url": server.url, "max_memory_fraction": 0},
        sources=[{"name": "hris", "token": HRIS_TOKEN, "rate_limit": None}],
    )
    async with running_gateway(settings) as url:
        post = poster(http, url)
        await client.config_set("maxmemory", await used_memory(client) + FILLER * CHUNK // 2)
        stored = await fill(client)  # until Redis refuses writes: past maxmemory
        assert stored < FILLER
        status, headers, body = await post(event("oom"))
        assert (status, body["error"]["code"]) == (503, "storage_full"), body
        assert "Retry-After" in headers
        assert await client.keys(keys.event("*", "*")) == []
        await client.delete(*[f"filler:{n}" for n in range(stored)])
        assert (await post(event("oom")))[0] == 202


async def test_a_source_without_a_rate_limit_gets_the_default(
    own_redis: tuple[EmbeddedRedis, Redis], http: aiohttp.ClientSession
) -> None:
    """A source whose config names no rate_limit is limited to DEFAULT_SOURCE_RATE (429
    once a batch has taken its burst); `rate_limit: null` opts a source out."""
    server, _ = own_redis
    assert SourceSettings(name="x", token="x" * 16).rate_limit == DEFAULT_SOURCE_RATE
    settings = make_settings(
        server.url,
        "http://127.0.0.1:9",
        gateway={"batch_max_events": BATCH},
        sources=[
            {"name": "hris", "token": HRIS_TOKEN},
            {"name": "idp", "token": IDP_TOKEN, "rate_limit": None},
        ],
    )
    big = {"events": [{}] * BATCH}  # each item refused (422), all of them counted
    async with running_gateway(settings) as url:
        post = poster(http, url)
        status, _, body = await post(big, "/v1/events:batch")
        assert (status, body["refused"]) == (200, BATCH)
        status, headers, body = await post(event("over"))
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert int(headers["Retry-After"]) >= 1
        for _ in range(2):  # the opted-out source is never refused for its rate
            assert (await post(big, "/v1/events:batch", IDP_TOKEN))[0] == 200
        assert (await post(event("idp-1", source="idp"), token=IDP_TOKEN))[0] == 202
