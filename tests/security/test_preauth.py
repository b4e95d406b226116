"""Nothing is read before authentication, and what is read at once is bounded: a request the
headers can refuse (unknown source, stale timestamp, missing or wrong credentials, a declared
body over the limit) is answered while its client has sent only the headers; bodies being
read take from the process's `max_inflight_body_bytes` (503 `overloaded` past it); a chunked
body counts as it streams and is cut off at the limit (413)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from redis.asyncio import Redis

from config.settings import Settings
from core import keys
from core.signing import SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    Sandbox,
    event,
    make_settings,
    running_gateway,
    wait_until,
)
from tests.security.raw_http import Answer, answer_to, close, connect, head, read_answer
from usersync.redis_server import EmbeddedRedis

HRIS_SECRET = "test-hris-hmac-secret-0123"
BATCH = "/v1/events:batch"
BATCH_LIMIT = 4096 * 100
"""The test settings' batch body limit: max_body_bytes (4096) x batch_max_events (100)."""
SIGNING_SOURCES = [
    {"name": "hris", "token": HRIS_TOKEN, "hmac_secret": HRIS_SECRET},
    {"name": "idp", "token": IDP_TOKEN, "allowed_targets": ["fleet-eu"]},
]
FAKE_SIGNATURE = "sha256=" + "ab" * 32


def signed_by(source: str, timestamp: str) -> dict[str, str]:
    return {SOURCE_HEADER: source, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: FAKE_SIGNATURE}


def json_head(length: int, **headers: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Content-Length": str(length), **headers}


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    return make_settings(redis_server.url, sandbox.url, sources=SIGNING_SOURCES)


REFUSED_FROM_HEADERS = {
    "unknown_source_1970": (signed_by("nobody", "1"), 401, "bad_signature"),
    "known_source_1970": (signed_by("hris", "1"), 401, "stale_signature"),
    "source_without_secret": (signed_by("idp", "1"), 401, "bad_signature"),
    "signature_incomplete": ({SOURCE_HEADER: "hris", TIMESTAMP_HEADER: "1"}, 401, "bad_signature"),
    "no_credentials": ({}, 401, "unauthorized"),
    "wrong_bearer": ({"Authorization": "Bearer wrong-token-wrong-token"}, 401, "unauthorized"),
    "bearer_of_another_source": (
        {"Authorization": f"Bearer {IDP_TOKEN}", **signed_by("hris", str(int(time.time())))},
        401,
        "unauthorized",
    ),
    "admin_token": ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 403, "forbidden"),
}


@pytest.mark.parametrize("path", ["/v1/events", BATCH, "/v1/events:preview"])
@pytest.mark.parametrize("case", list(REFUSED_FROM_HEADERS))
async def test_refused_from_the_headers_before_the_body_is_sent(
    settings: Settings, redis: Redis, path: str, case: str
) -> None:
    """A request its headers condemn is answered while the client has sent only those
    headers (a body of 400,000 bytes declared, none sent), and nothing is stored."""
    headers, status, code = REFUSED_FROM_HEADERS[case]
    async with running_gateway(settings) as url:
        answer = await answer_to(url, "POST", path, json_head(400_000, **headers))
    assert (answer.status, answer.code) == (status, code)
    assert await redis.keys(keys.event("*", "*")) == []


async def test_declared_body_over_the_limit_is_413_before_it_is_sent(settings: Settings) -> None:
    """A valid bearer token with a Content-Length over the limit is 413 from the headers."""
    auth = {"Authorization": f"Bearer {HRIS_TOKEN}"}
    async with running_gateway(settings) as url:
        single = await answer_to(url, "POST", "/v1/events", json_head(4097, **auth))
        batch = await answer_to(url, "POST", BATCH, json_head(BATCH_LIMIT + 1, **auth))
    assert (single.status, single.code) == (413, "body_too_large")
    assert (batch.status, batch.code) == (413, "body_too_large")


# --- the process's bound on bodies being read -------------------------------------------------


def _budget(app: web.Application) -> Any:
    from gateway.body import BODY_BUDGET  # new with the bound: imported here so the header
    # tests above also run against a gateway that has none

    return app[BODY_BUDGET]


@pytest.fixture
def served_gateway(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A factory: `async with served_gateway(settings) as (url, app)` runs the gateway as
    usersync.runtime serves it (conftest's running_gateway), with its app at hand: the
    app built is noted on its way to being served, nothing else changes."""
    from gateway.app import create_gateway_app as build
    from usersync import runtime

    built: list[web.Application] = []

    def noting(*args: Any, **kwargs: Any) -> web.Application:
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runtime, "create_gateway_app", noting)

    @contextlib.asynccontextmanager
    async def start(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
        async with running_gateway(settings) as url:
            yield url, built[-1]

    return start


def batch_of(size: int, event_id: str) -> bytes:
    """A valid one-event batch padded with spaces to exactly `size` bytes."""
    raw = orjson.dumps({"events": [event(event_id, targets=["fleet-eu"])]})
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


async def test_bodies_read_at_once_are_bounded(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, served_gateway: Any
) -> None:
    """With `max_inflight_body_bytes` 65,536: a body declared 60,000 bytes holds what has
    arrived (100 bytes: a 10,000-byte body still goes through); once it holds 59,999, a
    further 10,000-byte body is 503 `overloaded` with Retry-After, declared (before a byte is
    read) or chunked (at the chunk that passes); when the first ends, all is given back."""
    settings = make_settings(
        redis_server.url, sandbox.url, gateway={"max_inflight_body_bytes": 65_536}
    )
    auth = {"Authorization": f"Bearer {HRIS_TOKEN}"}
    async with served_gateway(settings) as (url, app):
        budget = _budget(app)

        def holds(size: int) -> Any:
            async def condition() -> bool:
                return bool(budget.in_use == size)

            return condition

        first = batch_of(60_000, "first")
        reader, writer = await connect(url)
        writer.write(head("POST", BATCH, json_head(len(first), **auth)) + first[:100])
        await wait_until(holds(100), 5, "the first body's 100 bytes taken")
        meanwhile = await answer_to(
            url, "POST", BATCH, json_head(10_000, **auth), batch_of(10_000, "m")
        )
        writer.write(first[100:-1])
        await wait_until(holds(59_999), 5, "the first body's 59,999 bytes taken")
        declared = await answer_to(
            url, "POST", BATCH, json_head(10_000, **auth), batch_of(10_000, "x")
        )
        chunked = await answer_to(
            url,
            "POST",
            BATCH,
            {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **auth},
            b"2710\r\n" + b" " * 10_000 + b"\r\n",
        )
        writer.write(first[-1:])
        finished = await asyncio.wait_for(read_answer(reader), 10)
        await close(writer)
        assert budget.in_use == 0
        after = await answer_to(
            url, "POST", BATCH, json_head(10_000, **auth), batch_of(10_000, "y")
        )
    for refused in (declared, chunked):
        assert (refused.status, refused.code) == (503, "overloaded")
        assert refused.headers["retry-after"] == "1"
    for accepted in (meanwhile, finished, after):
        assert accepted.status == 200 and accepted.json()["accepted"] == 1


async def test_a_chunked_body_counts_as_it_streams_and_stops_at_the_limit(
    settings: Settings, served_gateway: Any
) -> None:
    """A chunked body's bytes are taken from the budget as they arrive; past the batch limit
    it is cut off with 413, and the budget is given back."""
    auth = {"Authorization": f"Bearer {HRIS_TOKEN}"}
    chunk = b" " * 65_536
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    async with served_gateway(settings) as (url, app):
        budget = _budget(app)
        reader, writer = await connect(url)
        writer.write(
            head(
                "POST",
                BATCH,
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **auth},
            )
            + framed * 2
        )
        await writer.drain()

        async def counted() -> bool:
            return bool(budget.in_use == 2 * len(chunk))

        await wait_until(counted, 5, "two chunks counted")
        for _ in range(BATCH_LIMIT // len(chunk)):
            writer.write(framed)
        answer: Answer = await asyncio.wait_for(read_answer(reader), 10)
        await close(writer)
        assert budget.in_use == 0
    assert (answer.status, answer.code) == (413, "body_too_large")
