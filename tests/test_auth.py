"""Who may call the gateway (docs/contract.md §2): bearer tokens (in clear or hashed in the config), HMAC
request signatures (stale, replayed, tampered, of another source), signatures required, the
admin token kept apart, per-source rate limits shared through Redis, and the CLI signing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from pydantic import ValidationError
from redis.asyncio import Redis

from config import ConfigError, load_settings
from config.settings import Settings
from core import keys
from core.signing import (
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    signature_headers,
    signature_hex,
)
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    IDP_TOKEN,
    Gateway,
    Sandbox,
    event,
    make_raw_settings,
    make_settings,
    run_cli,
    running_gateway,
)
from tests.test_admin_api import ADMIN_CALLS
from usersync.redis_server import EmbeddedRedis

HRIS_SECRET = "test-hris-hmac-secret-0123"
IDP_SECRET = "test-idp-hmac-secret-0123"
SKEW_S = 300


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sources(**hris: Any) -> list[dict[str, Any]]:
    """The two test sources, both able to sign; `hris` keys replace or extend hris's."""
    return [
        {"name": "hris", "token": HRIS_TOKEN, "hmac_secret": HRIS_SECRET, **hris},
        {
            "name": "idp",
            "token": IDP_TOKEN,
            "hmac_secret": IDP_SECRET,
            "allowed_targets": ["fleet-eu"],
        },
    ]


def sign(
    body: bytes, source: str = "hris", secret: str = HRIS_SECRET, at: float | None = None
) -> dict[str, str]:
    return signature_headers(source, secret, body, at)


async def call(
    gateway: Gateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """(status, parsed JSON answer, response headers) of one raw request."""
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    async with gateway.http.request(
        method, gateway.url + path, data=body, headers=sent
    ) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None, response.headers


async def post_signed(
    gateway: Gateway, body: dict[str, Any] | bytes, path: str = "/v1/events", **sign_args: Any
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return await gateway.post(raw, token=None, path=path, headers=sign(raw, **sign_args))


def error_code(answer: Any) -> str:
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    return str(answer["error"]["code"])


async def stored_events(redis: Redis) -> list[bytes]:
    return sorted(await redis.keys(keys.event("*", "*")))


@pytest.fixture
def gateway_with(
    redis_server: EmbeddedRedis, sandbox: Sandbox, redis: Redis, http: aiohttp.ClientSession
) -> Any:
    """A factory: `async with gateway_with(**overrides) as gw` runs a gateway on the test
    settings with `overrides` merged in."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Gateway]:
        settings = make_settings(redis_server.url, sandbox.url, **overrides)
        async with running_gateway(settings) as url:
            yield Gateway(url, http)

    return start


@pytest.fixture
async def signing(gateway_with: Any) -> AsyncIterator[Gateway]:
    """A gateway whose two sources have an hmac_secret (either auth works)."""
    async with gateway_with(sources=sources()) as gateway:
        yield gateway


# --- bearer tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token-wrong-token",
        f"Bearer {HRIS_TOKEN}x",
        f"Bearer {HRIS_TOKEN[:-1]}",
        f"Basic {HRIS_TOKEN}",
        f"Bearer {sha256_hex(HRIS_TOKEN)}",
    ],
)
async def test_wrong_bearer_token_is_401_and_stores_nothing(
    gateway: Gateway, redis: Redis, header: str | None
) -> None:
    """A missing, wrong, truncated or extended token, another scheme, or the token's hash
    itself is 401 `unauthorized`, with WWW-Authenticate, and nothing is stored."""
    headers = {"Authorization": header} if header else {}
    status, answer, response_headers = await call(
        gateway, "POST", "/v1/events", orjson.dumps(event()), headers
    )
    assert (status, error_code(answer)) == (401, "unauthorized")
    assert response_headers["WWW-Authenticate"] == "Bearer"
    assert await stored_events(redis) == []


async def test_hashed_source_token_is_accepted(gateway_with: Any, redis: Redis) -> None:
    """A source configured with `token_sha256` (either case of hex) posts and reads with the
    token; its hash as a bearer token is refused."""
    hashed = [
        {"name": "hris", "token_sha256": sha256_hex(HRIS_TOKEN)},
        {"name": "idp", "token_sha256": sha256_hex(IDP_TOKEN).upper()},
    ]
    async with gateway_with(sources=hashed) as gateway:
        assert (await gateway.post(event(targets=["fleet-eu"])))[0] == 202
        assert (await gateway.get("/v1/events/evt-1"))[0] == 200
        body = event(targets=["fleet-eu"], source="idp")
        assert (await gateway.post(body, token=IDP_TOKEN))[0] == 202
        status, answer = await gateway.post(event("evt-2"), token=sha256_hex(HRIS_TOKEN))
        assert (status, error_code(answer)) == (401, "unauthorized")
    assert len(await stored_events(redis)) == 2


async def test_hashed_admin_token(gateway_with: Any) -> None:
    """`admin_token_sha256`: the admin token opens the admin calls, its hash does not, and a
    source token is still 403 there."""
    gateway_settings = {"admin_token": None, "admin_token_sha256": sha256_hex(ADMIN_TOKEN)}
    async with gateway_with(gateway=gateway_settings) as gateway:
        assert (await gateway.get("/v1/dead-letters", token=ADMIN_TOKEN))[0] == 200
        assert (await gateway.get("/v1/users/emp-1/links", token=ADMIN_TOKEN))[0] == 200
        status, answer = await gateway.get("/v1/dead-letters", token=sha256_hex(ADMIN_TOKEN))
        assert (status, error_code(answer)) == (401, "unauthorized")
        status, answer = await gateway.get("/v1/dead-letters", token=HRIS_TOKEN)
        assert (status, error_code(answer)) == (403, "forbidden")
        status, answer = await gateway.post(event(), token=ADMIN_TOKEN)
        assert (status, error_code(answer)) == (403, "forbidden")


# --- signatures -------------------------------------------------------------------------------


async def test_signed_post_preview_and_status(signing: Gateway, redis: Redis) -> None:
    """A signature alone authenticates POST /v1/events, POST /v1/events:preview and
    GET /v1/events/{id} (which signs the empty body)."""
    status, answer = await post_signed(signing, event(targets=["fleet-eu"]))
    assert status == 202, answer
    assert answer["targets"] == ["fleet-eu"]
    status, answer = await post_signed(signing, event("evt-p"), path="/v1/events:preview")
    assert status == 200, answer
    assert set(answer["targets"]) == {"mileapp", "fleet-eu", "plaspy", "partoo"}
    status, answer, _ = await call(signing, "GET", "/v1/events/evt-1", headers=sign(b""))
    assert status == 200, answer
    assert list(answer["targets"]) == ["fleet-eu"]
    assert len(await stored_events(redis)) == 1  # the preview stored nothing


async def test_signed_status_only_for_the_signing_source(signing: Gateway) -> None:
    """A signed status read is the signing source's: another source's event is a 404."""
    assert (await signing.post(event(targets=["fleet-eu"])))[0] == 202
    headers = sign(b"", source="idp", secret=IDP_SECRET)
    status, answer, _ = await call(signing, "GET", "/v1/events/evt-1", headers=headers)
    assert (status, error_code(answer)) == (404, "not_found")


@pytest.mark.parametrize("offset_s", [-SKEW_S - 5, SKEW_S + 5, -10 * SKEW_S, 10**9])
async def test_stale_timestamp_is_401(signing: Gateway, redis: Redis, offset_s: int) -> None:
    """A correctly signed request whose timestamp is outside now ± skew (past or future) is
    401 `stale_signature`, and nothing is stored."""
    status, answer = await post_signed(signing, event(), at=time.time() + offset_s)
    assert (status, error_code(answer)) == (401, "stale_signature")
    assert await stored_events(redis) == []


@pytest.mark.parametrize("offset_s", [-SKEW_S + 5, SKEW_S - 5])
async def test_timestamp_within_skew_is_accepted(signing: Gateway, offset_s: int) -> None:
    """Inside the window, in the past or in the future, a signature is accepted."""
    status, answer = await post_signed(signing, event(), at=time.time() + offset_s)
    assert status == 202, answer


async def test_skew_window_is_configurable(gateway_with: Any) -> None:
    """`gateway.signature_skew_s` narrows the window."""
    async with gateway_with(sources=sources(), gateway={"signature_skew_s": 5}) as gateway:
        status, answer = await post_signed(gateway, event(), at=time.time() - 30)
        assert (status, error_code(answer)) == (401, "stale_signature")
        assert (await post_signed(gateway, event(), at=time.time() - 1))[0] == 202


async def test_replayed_signature_is_401(signing: Gateway, redis: Redis) -> None:
    """The same signed request sent again (even with the signature's hex in upper case, or
    to another endpoint) is 401 `replayed_signature`; the signature is remembered for twice
    the skew; a fresh signature of the same body is fine (and a duplicate event)."""
    raw = orjson.dumps(event(targets=["fleet-eu"]))
    headers = sign(raw, at=time.time() - 1)
    digest = headers[SIGNATURE_HEADER].removeprefix("sha256=")
    assert (await signing.post(raw, token=None, headers=headers))[0] == 202
    for path, sent in (
        ("/v1/events", headers),
        ("/v1/events:preview", headers),
        ("/v1/events", {**headers, SIGNATURE_HEADER: "sha256=" + digest.upper()}),
    ):
        status, answer = await signing.post(raw, token=None, path=path, headers=sent)
        assert (status, error_code(answer)) == (401, "replayed_signature"), path
    key = keys.signature("hris", digest)
    assert 2 * SKEW_S * 1000 - 5000 < await redis.pttl(key) <= 2 * SKEW_S * 1000
    status, answer = await post_signed(signing, raw)
    assert status == 200 and answer["duplicate"] is True, answer


async def test_replayed_signed_status_read_is_401(signing: Gateway) -> None:
    """Signed GETs are single-use too."""
    await signing.post(event(targets=["fleet-eu"]))
    headers = sign(b"")
    assert (await call(signing, "GET", "/v1/events/evt-1", headers=headers))[0] == 200
    status, answer, _ = await call(signing, "GET", "/v1/events/evt-1", headers=headers)
    assert (status, error_code(answer)) == (401, "replayed_signature")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda raw: raw.replace(b"ada@example.com", b"eve@example.com"),
        lambda raw: raw + b" ",
        lambda raw: raw.replace(b'"fleet-eu"', b'"partoo"'),
    ],
)
async def test_tampered_body_is_401(signing: Gateway, redis: Redis, tamper: Any) -> None:
    """A body changed after signing (one field, trailing whitespace, the targets) is 401
    `bad_signature`, and nothing is stored."""
    raw = orjson.dumps(event(targets=["fleet-eu"]))
    changed = tamper(raw)
    assert changed != raw
    status, answer = await signing.post(changed, token=None, headers=sign(raw))
    assert (status, error_code(answer)) == (401, "bad_signature")
    assert await stored_events(redis) == []


async def test_tampered_timestamp_is_401(signing: Gateway) -> None:
    """The timestamp is signed too: moving it (still within the skew) breaks the signature."""
    raw = orjson.dumps(event())
    headers = sign(raw)
    headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) - 1)
    status, answer = await signing.post(raw, token=None, headers=headers)
    assert (status, error_code(answer)) == (401, "bad_signature")


async def test_signature_with_another_sources_secret_is_401(signing: Gateway, redis: Redis) -> None:
    """Signed with idp's secret but claiming to be hris (and the other way round), or with a
    source that has no secret, is 401 `bad_signature`."""
    status, answer = await post_signed(signing, event(), source="hris", secret=IDP_SECRET)
    assert (status, error_code(answer)) == (401, "bad_signature")
    body = event(source="idp", targets=["fleet-eu"])
    status, answer = await post_signed(signing, body, source="idp", secret=HRIS_SECRET)
    assert (status, error_code(answer)) == (401, "bad_signature")
    status, answer = await post_signed(signing, event(), source="nobody", secret=HRIS_SECRET)
    assert (status, error_code(answer)) == (401, "bad_signature")
    assert await stored_events(redis) == []
    assert (await post_signed(signing, body, source="idp", secret=IDP_SECRET))[0] == 202


async def test_signature_of_a_source_without_secret_is_401(gateway: Gateway) -> None:
    """The default test sources have no hmac_secret: any signature is refused."""
    status, answer = await post_signed(gateway, event(), secret=HRIS_TOKEN)
    assert (status, error_code(answer)) == (401, "bad_signature")


@pytest.mark.parametrize(
    "change",
    [
        {SOURCE_HEADER: None},
        {TIMESTAMP_HEADER: None},
        {SIGNATURE_HEADER: None},
        {SOURCE_HEADER: None, TIMESTAMP_HEADER: None},
        {SIGNATURE_HEADER: ""},
        {TIMESTAMP_HEADER: "soon"},
        {TIMESTAMP_HEADER: "-12"},
        {TIMESTAMP_HEADER: "1.5e9"},
        {"strip_scheme": True},
        {"scheme": "sha1="},
        {"truncate": True},
    ],
)
async def test_missing_or_malformed_signature_headers_are_401(
    signing: Gateway, redis: Redis, change: dict[str, Any]
) -> None:
    """Any signature header missing, empty or malformed is 401 `bad_signature`, even with a
    valid bearer token alongside, and nothing is stored."""
    raw = orjson.dumps(event())
    headers: dict[str, str] = sign(raw)
    digest = headers[SIGNATURE_HEADER].removeprefix("sha256=")
    if change.pop("strip_scheme", False):
        headers[SIGNATURE_HEADER] = digest
    if "scheme" in change:
        headers[SIGNATURE_HEADER] = change.pop("scheme") + digest
    if change.pop("truncate", False):
        headers[SIGNATURE_HEADER] = "sha256=" + digest[:-2]
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    for token in (None, HRIS_TOKEN):
        status, answer = await signing.post(raw, token=token, headers=headers)
        assert (status, error_code(answer)) == (401, "bad_signature"), token
    assert await stored_events(redis) == []


async def test_bearer_and_signature_together(signing: Gateway) -> None:
    """Both may be sent: they must name the same source; a wrong token next to a good
    signature is refused, and spends no signature."""
    raw = orjson.dumps(event())
    headers = sign(raw)
    status, answer = await signing.post(raw, token="wrong-token-wrong-token", headers=headers)
    assert (status, error_code(answer)) == (401, "unauthorized")
    status, answer = await signing.post(raw, token=IDP_TOKEN, headers=headers)
    assert (status, error_code(answer)) == (401, "unauthorized")
    status, answer = await signing.post(raw, token=ADMIN_TOKEN, headers=headers)
    assert (status, error_code(answer)) == (403, "forbidden")
    status, answer = await signing.post(raw, token=HRIS_TOKEN, headers=headers)
    assert status == 202, answer


@pytest.mark.parametrize(
    "overrides",
    [
        {"sources": sources(require_signature=True)},
        {"sources": sources(), "gateway": {"require_signatures": True}},
    ],
    ids=["source_require_signature", "gateway_require_signatures"],
)
async def test_signature_required_refuses_bearer_only(
    gateway_with: Any, redis: Redis, overrides: dict[str, Any]
) -> None:
    """When signatures are required, the bearer token alone is 401 `signature_required` (for
    posts, previews and status reads); signed requests go through."""
    async with gateway_with(**overrides) as gateway:
        for path in ("/v1/events", "/v1/events:preview"):
            status, answer = await gateway.post(event(targets=["fleet-eu"]), path=path)
            assert (status, error_code(answer)) == (401, "signature_required"), path
        assert await stored_events(redis) == []
        assert (await post_signed(gateway, event(targets=["fleet-eu"])))[0] == 202
        status, answer = await gateway.get("/v1/events/evt-1")
        assert (status, error_code(answer)) == (401, "signature_required")
        assert (await call(gateway, "GET", "/v1/events/evt-1", headers=sign(b"")))[0] == 200
        assert (await gateway.get("/v1/events/evt-1", token=ADMIN_TOKEN))[0] == 200


async def test_signature_required_only_for_that_source(gateway_with: Any) -> None:
    """`require_signature` on hris leaves idp free to use its token."""
    async with gateway_with(sources=sources(require_signature=True)) as gateway:
        body = event(source="idp", targets=["fleet-eu"])
        assert (await gateway.post(body, token=IDP_TOKEN))[0] == 202


async def test_oversize_signed_body_is_413_while_streaming(signing: Gateway, redis: Redis) -> None:
    """A chunked body past max_body_bytes is cut off with 413 even though it carries a
    signature (verified only over a body read within the limit), not 401."""
    chunk = b" " * 1024
    sent = chunk * 100

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield chunk

    async with signing.http.post(
        signing.url + "/v1/events",
        data=chunks(),
        headers={"Content-Type": "application/json", **sign(sent)},
    ) as response:
        assert response.status == 413
        assert error_code(await response.json()) == "body_too_large"
    assert await redis.keys(keys.signature("*", "*")) == []  # no signature was spent


async def test_signed_post_to_a_target_the_source_may_not_use_is_403(
    signing: Gateway, redis: Redis
) -> None:
    """idp may only target fleet-eu: partoo is 403 `target_not_allowed`, signed or with the
    token; a signed event naming another source than the signer is 403 too."""
    body = event(source="idp", targets=["fleet-eu", "partoo"])
    status, answer = await post_signed(signing, body, source="idp", secret=IDP_SECRET)
    assert (status, error_code(answer)) == (403, "target_not_allowed")
    assert answer["error"]["details"] == {"targets": ["partoo"]}
    status, answer = await signing.post(body, token=IDP_TOKEN)
    assert (status, error_code(answer)) == (403, "target_not_allowed")
    status, answer = await post_signed(
        signing, event(source="hris"), "/v1/events", source="idp", secret=IDP_SECRET
    )
    assert (status, error_code(answer)) == (403, "source_mismatch")
    assert await stored_events(redis) == []


# --- the admin API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        *ADMIN_CALLS,
        ("GET", "/v1/users/emp-1/links", None),
        ("PUT", "/v1/users/emp-1/links/fleet-eu", {"id": "42"}),
    ],
)
async def test_admin_calls_refuse_source_credentials(
    signing: Gateway, redis: Redis, method: str, path: str, body: Any
) -> None:
    """Every admin call: a source's token is 403, a source's valid signature 401 (it is not
    an admin credential), the admin token goes through."""
    raw = orjson.dumps(body) if body is not None else None
    status, answer, _ = await call(
        signing, method, path, raw, {"Authorization": f"Bearer {HRIS_TOKEN}"}
    )
    assert (status, error_code(answer)) == (403, "forbidden")
    status, answer, _ = await call(signing, method, path, raw, sign(raw or b""))
    assert (status, error_code(answer)) == (401, "unauthorized")
    status, answer, _ = await call(
        signing, method, path, raw, {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert status < 400 or error_code(answer) == "not_found", answer


# --- rate limits ------------------------------------------------------------------------------


async def test_rate_limit_gives_429_with_retry_after_and_recovers(
    gateway_with: Any, redis: Redis
) -> None:
    """Over `rate_limit` (2/s, burst 2) a post is 429 `rate_limited` with an integer
    Retry-After ≥ 1; previews count; status reads do not; other sources are not limited;
    after the interval one more post goes through."""
    limited = sources(rate_limit={"per_second": 2, "burst": 2})
    async with gateway_with(sources=limited) as gateway:
        assert (await gateway.post(event("evt-1", targets=["fleet-eu"])))[0] == 202
        status, _ = await gateway.post(event("evt-p"), path="/v1/events:preview")
        assert status == 200
        status, answer, headers = await call(
            gateway,
            "POST",
            "/v1/events",
            orjson.dumps(event("evt-2")),
            {"Authorization": f"Bearer {HRIS_TOKEN}"},
        )
        assert (status, error_code(answer)) == (429, "rate_limited")
        assert headers["Retry-After"] == "1"
        assert answer["error"]["details"] == {"retry_after_s": 1}
        status, answer = await gateway.post(event("evt-p"), path="/v1/events:preview")
        assert (status, error_code(answer)) == (429, "rate_limited")
        assert (await gateway.get("/v1/events/evt-1"))[0] == 200
        body = event(source="idp", targets=["fleet-eu"])
        assert (await gateway.post(body, token=IDP_TOKEN))[0] == 202
        await asyncio.sleep(0.55)
        assert (await gateway.post(event("evt-2", targets=["fleet-eu"])))[0] == 202
        assert (await gateway.post(event("evt-3", targets=["fleet-eu"])))[0] == 429
    assert await redis.exists(keys.source_rate("hris")) == 1
    assert await redis.exists(keys.source_rate("idp")) == 0


async def test_retry_after_rounds_the_wait_up(gateway_with: Any) -> None:
    """At 0.25/s the next post is ~4 s away: Retry-After says 4 (whole seconds, rounded up)."""
    limited = sources(rate_limit={"per_second": 0.25, "burst": 1})
    async with gateway_with(sources=limited) as gateway:
        assert (await gateway.post(event("evt-1", targets=["fleet-eu"])))[0] == 202
        status, answer, headers = await call(
            gateway,
            "POST",
            "/v1/events",
            orjson.dumps(event("evt-2")),
            {"Authorization": f"Bearer {HRIS_TOKEN}"},
        )
        assert (status, error_code(answer)) == (429, "rate_limited")
        assert headers["Retry-After"] == "4", headers


async def test_refused_credentials_do_not_count(gateway_with: Any) -> None:
    """Wrong tokens, bad, stale and replayed signatures spend nothing of the source's rate
    (burst 3: after them, exactly three posts still go through)."""
    limited = sources(rate_limit={"per_second": 0.5, "burst": 3})
    async with gateway_with(sources=limited) as gateway:
        raw = orjson.dumps(event("evt-0", targets=["fleet-eu"]))
        for _ in range(3):
            assert (await gateway.post(raw, token="wrong-token-wrong-token"))[0] == 401
            assert (await gateway.post(raw, token=None, headers=sign(raw + b" ")))[0] == 401
            stale = sign(raw, at=time.time() - 2 * SKEW_S)
            assert (await gateway.post(raw, token=None, headers=stale))[0] == 401
        headers = sign(raw)
        assert (await gateway.post(raw, token=None, headers=headers))[0] == 202  # 1
        for _ in range(3):
            assert (await gateway.post(raw, token=None, headers=headers))[0] == 401
        assert (await gateway.post(event("evt-1", targets=["fleet-eu"])))[0] == 202  # 2
        assert (await gateway.post(event("evt-2", targets=["fleet-eu"])))[0] == 202  # 3
        assert (await gateway.post(event("evt-3", targets=["fleet-eu"])))[0] == 429


async def test_rate_limit_is_shared_by_gateway_processes(gateway_with: Any) -> None:
    """Two gateways on one Redis share a source's allowance."""
    limited = sources(rate_limit={"per_second": 0.5, "burst": 2})
    async with gateway_with(sources=limited) as first, gateway_with(sources=limited) as second:
        assert first.url != second.url
        assert (await first.post(event("evt-1", targets=["fleet-eu"])))[0] == 202
        assert (await second.post(event("evt-2", targets=["fleet-eu"])))[0] == 202
        assert (await first.post(event("evt-3", targets=["fleet-eu"])))[0] == 429
        assert (await second.post(event("evt-4", targets=["fleet-eu"])))[0] == 429


# --- configuration ----------------------------------------------------------------------------


def raw_settings(**overrides: Any) -> dict[str, Any]:
    return make_raw_settings("redis://127.0.0.1:1/0", "http://127.0.0.1:1", **overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"sources": [{"name": "hris", "token": HRIS_TOKEN, "token_sha256": "a" * 64}]},
            "give token or token_sha256, not both",
        ),
        ({"sources": [{"name": "hris"}]}, "one of token or token_sha256 is required"),
        ({"sources": [{"name": "hris", "hmac_secret": HRIS_SECRET}]}, "one of token or"),
        ({"sources": [{"name": "hris", "token_sha256": "g" * 64}]}, "sources[hris].token_sha256"),
        ({"sources": [{"name": "hris", "token_sha256": "a" * 63}]}, "sources[hris].token_sha256"),
        ({"sources": [{"name": "hris", "token": "short"}]}, "at least 16 characters"),
        (
            {"sources": [{"name": "hris", "token": HRIS_TOKEN, "hmac_secret": "short"}]},
            "sources[hris].hmac_secret",
        ),
        (
            {"gateway": {"admin_token": HRIS_TOKEN}},
            "gateway.admin_token: same token as source hris",
        ),
        (
            {"gateway": {"admin_token": None, "admin_token_sha256": sha256_hex(IDP_TOKEN)}},
            "gateway.admin_token: same token as source idp",
        ),
        (
            {"gateway": {"admin_token_sha256": sha256_hex(ADMIN_TOKEN)}},
            "give admin_token or admin_token_sha256, not both",
        ),
        ({"gateway": {"admin_token": "short"}}, "gateway.admin_token"),
        (
            {
                "sources": [
                    {"name": "hris", "token": HRIS_TOKEN},
                    {"name": "idp", "token": HRIS_TOKEN},
                ]
            },
            "sources[idp].token: same token as source hris",
        ),
        (
            {
                "sources": [
                    {"name": "hris", "token": HRIS_TOKEN},
                    {"name": "idp", "token_sha256": sha256_hex(HRIS_TOKEN)},
                ]
            },
            "sources[idp].token: same token as source hris",
        ),
        (
            {"sources": [{"name": "hris", "token": HRIS_TOKEN, "require_signature": True}]},
            "require_signature needs an hmac_secret",
        ),
        (
            {"sources": [*sources()[:1], {"name": "idp", "token": IDP_TOKEN}]}
            | {"gateway": {"require_signatures": True}},
            "gateway.require_signatures: sources ['idp'] have no hmac_secret",
        ),
        (
            {"sources": sources(rate_limit={"per_second": 0, "burst": 1})},
            "sources[hris].rate_limit.per_second",
        ),
        (
            {"sources": sources(rate_limit={"per_second": 1})},
            "sources[hris].rate_limit.burst",
        ),
        ({"gateway": {"signature_skew_s": 0}}, "gateway.signature_skew_s"),
    ],
)
def test_config_errors(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    """Each credential problem is refused at load, naming the key."""
    path = tmp_path / "usersync.yaml"
    path.write_text(yaml.safe_dump(raw_settings(**overrides)))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in str(caught.value), str(caught.value)


def test_config_accepts_hashed_tokens_and_rate_limits() -> None:
    """The credential keys that are valid load, and keep no token in their repr."""
    settings = Settings.model_validate(
        raw_settings(
            gateway={"admin_token": None, "admin_token_sha256": sha256_hex(ADMIN_TOKEN).upper()},
            sources=[
                {
                    "name": "hris",
                    "token_sha256": sha256_hex(HRIS_TOKEN),
                    "hmac_secret": HRIS_SECRET,
                },
                {"name": "idp", "token": IDP_TOKEN, "rate_limit": {"per_second": 1.5, "burst": 3}},
            ],
        )
    )
    assert settings.gateway.admin_digest == hashlib.sha256(ADMIN_TOKEN.encode()).digest()
    assert settings.sources[0].token_digest == hashlib.sha256(HRIS_TOKEN.encode()).digest()
    assert settings.sources[1].rate_limit is not None
    assert HRIS_SECRET not in repr(settings) and IDP_TOKEN not in repr(settings)


def test_admin_token_may_be_left_out_but_not_empty() -> None:
    """No admin token: valid (no admin API); an empty one is refused (too short)."""
    with pytest.raises(ValidationError):
        Settings.model_validate(raw_settings(gateway={"admin_token": ""}))
    settings = Settings.model_validate(raw_settings(gateway={"admin_token": None}))
    assert settings.gateway.admin_digest is None


def test_signature_matches_the_documented_formula() -> None:
    """`sha256=` + hex HMAC-SHA256(secret, timestamp + "." + body), as the README's openssl
    example computes it."""
    headers = signature_headers("hris", "k" * 16, b'{"a":1}', 1700000000.9)
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[SIGNATURE_HEADER] == "sha256=" + signature_hex(
        "k" * 16, "1700000000", b'{"a":1}'
    )
    assert (
        signature_hex("k" * 16, "1700000000", b'{"a":1}')
        == "7a52fb5d2d81ce8e61252d6ce065b363829842705645168286ce6ca58c7d4bbd"  # openssl's
    )


# --- the CLI ----------------------------------------------------------------------------------


async def usersync(config: Path, url: str, *args: str) -> tuple[int, Any, str]:
    """`run_cli` with its stdout parsed as JSON (None when empty)."""
    code, stdout, stderr = await run_cli(config, url, *args)
    return code, orjson.loads(stdout) if stdout.strip() else None, stderr


async def test_cli_signs_with_the_sources_hmac_secret(
    redis_server: EmbeddedRedis,
    sandbox: Sandbox,
    redis: Redis,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """`send`, `preview` and `status` sign on their own when the first source has an
    hmac_secret and no token in clear, and with --sign otherwise; the gateway requires
    signatures of that source, so a bearer token would have been refused."""
    event_file = tmp_path / "event.json"
    event_file.write_bytes(orjson.dumps(event(targets=["fleet-eu"])))
    preview_file = tmp_path / "preview.json"  # the same body signed twice in a second is a replay
    preview_file.write_bytes(orjson.dumps(event("evt-p", targets=["fleet-eu"])))
    hashed = sources(token=None, token_sha256=sha256_hex(HRIS_TOKEN), require_signature=True)
    config = tmp_path / "hashed.yaml"
    raw = make_raw_settings(
        redis_server.url, sandbox.url, sources=hashed, gateway={"admin_token": None}
    )
    config.write_text(yaml.safe_dump(raw))
    async with running_gateway(load_settings(config)) as url:
        code, answer, err = await usersync(config, url, "send", str(event_file))
        assert (code, answer["status"]) == (0, "accepted"), (answer, err)
        code, answer, err = await usersync(config, url, "preview", str(preview_file))
        assert (code, list(answer["targets"])) == (0, ["fleet-eu"]), (answer, err)
        code, answer, err = await usersync(config, url, "status", "evt-1")
        assert (code, list(answer["targets"])) == (0, ["fleet-eu"]), (answer, err)
        code, answer, _ = await usersync(
            config, url, "send", str(event_file), "--token", HRIS_TOKEN
        )
        assert (code, answer["error"]["code"]) == (1, "signature_required")

    clear = tmp_path / "clear.yaml"
    clear.write_text(
        yaml.safe_dump(
            make_raw_settings(
                redis_server.url, sandbox.url, sources=sources(require_signature=True)
            )
        )
    )
    async with running_gateway(load_settings(clear)) as url:
        code, answer, _ = await usersync(clear, url, "send", str(event_file))
        assert (code, answer["error"]["code"]) == (1, "signature_required")
        code, answer, err = await usersync(clear, url, "send", "--sign", str(event_file))
        assert (code, answer.get("duplicate")) == (0, True), (answer, err)
        code, answer, err = await usersync(clear, url, "status", "--sign", "evt-1")
        assert code == 0, (answer, err)

    unsigned = tmp_path / "unsigned.yaml"
    unsigned.write_text(yaml.safe_dump(make_raw_settings(redis_server.url, sandbox.url)))
    code, answer, err = await usersync(unsigned, "http://127.0.0.1:1", "send", "--sign", "x")
    assert code == 2 and "--sign needs an hmac_secret" in err
