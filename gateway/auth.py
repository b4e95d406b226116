"""Who is calling: a source (bearer token or request signature) or an operator (admin token),
and whether a source is within its rate.

Bearer tokens are compared as SHA-256 digests (a token given in clear in the config is hashed,
one given as `token_sha256` is used as is) with `hmac.compare_digest` against every candidate,
so neither the match, its position nor a token's length leaks through timing.

A signed request carries `X-Usersync-Source`, `X-Usersync-Timestamp` (unix seconds) and
`X-Usersync-Signature: sha256=<hex HMAC-SHA256(hmac_secret, timestamp + "." + raw body)>`
(`core.signing`). What the headers alone can refuse is refused before a byte of the body
is read (`check_headers`): headers incomplete or malformed, a source unknown or without a
secret, a timestamp more than `gateway.signature_skew_s` from the gateway's clock, a bearer
token of another caller alongside. Then (`verify_body`) the HMAC is checked over the exact
bytes read, and the signature must not have been seen before: each accepted signature is
remembered in Redis (`SET NX`) for twice the skew, the longest a timestamp stays acceptable.
The client learns only `bad_signature`, `stale_signature` or `replayed_signature`; the log
says which part was wrong.

A source with an `hmac_secret` may use either its token or a signature, unless signatures are
required of it (`require_signature`, or `gateway.require_signatures` for every source): then
a request without one is refused (`signature_required`). A request carrying both must be
right on both, for the same source.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from dataclasses import dataclass

import structlog
from aiohttp import web
from redis.asyncio import Redis

from config.common import token_digest
from config.ingress import ADMIN_SETTER, SourceSettings
from config.settings import Settings
from core import keys
from core.signing import (
    HEADERS,
    SCHEME,
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    signature_hex,
)
from core.source_rate import SourceRates
from gateway.context import PerSettings
from gateway.errors import ApiError, unauthorized

log = structlog.get_logger("usersync.gateway")

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: `source` is None for the admin."""

    source: SourceSettings | None

    @property
    def is_admin(self) -> bool:
        return self.source is None


def authenticated(caller: Caller) -> Caller:
    """Note who the caller is in the request's log context (`source`: the source's name, or
    `admin`), so its lines and its access line say so."""
    name = caller.source.name if caller.source is not None else ADMIN_SETTER
    structlog.contextvars.bind_contextvars(source=name)
    return caller


def _token_digests(
    settings: Settings,
) -> tuple[tuple[tuple[bytes, SourceSettings], ...], bytes | None]:
    """Each source's token digest with the source, and the admin token's (a SHA-256 of each
    token given in clear): once per settings rather than per request."""
    digests = tuple((source.token_digest, source) for source in settings.sources)
    return digests, settings.gateway.admin_digest


_digests = PerSettings(_token_digests)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_signed(request: web.Request) -> bool:
    """Whether the request carries any of the signature headers (then it must be signed)."""
    return any(map(request.headers.__contains__, HEADERS))  # no generator: every post asks


def authenticate(request: web.Request, settings: Settings, *, admin_allowed: bool) -> Caller:
    """The caller behind the request's bearer token, or a 401 (a 403 for the admin token
    where only sources may call)."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    digest = token_digest(token)
    found: SourceSettings | None = None
    digests, admin = _digests(settings)
    for source_digest, source in digests:
        if hmac.compare_digest(digest, source_digest):
            found = source
    is_admin = admin is not None and hmac.compare_digest(digest, admin)
    if found is not None:
        return authenticated(Caller(found))
    if is_admin and admin_allowed:
        return authenticated(Caller(None))
    if is_admin:
        authenticated(Caller(None))  # known, just not allowed here: the access line says who
        raise ApiError(403, "forbidden", "the admin token cannot post events; use a source token")
    raise unauthorized()


def require_admin(request: web.Request, settings: Settings) -> None:
    """Admin calls: 401 without a valid token, 403 for a source's token."""
    caller = authenticate(request, settings, admin_allowed=True)
    if not caller.is_admin:
        raise ApiError(403, "forbidden", "this call needs the admin token")


def authenticate_unsigned(
    request: web.Request, settings: Settings, *, admin_allowed: bool
) -> Caller:
    """An unsigned request's caller, decided before its body is read: its bearer token's,
    unless that source must sign (401 `signature_required`)."""
    caller = authenticate(request, settings, admin_allowed=admin_allowed)
    if caller.source is not None and settings.signature_required(caller.source):
        log.info("auth_refused", source=caller.source.name, reason="unsigned")
        raise ApiError(
            401,
            "signature_required",
            f"source {caller.source.name} must sign its requests (X-Usersync-Signature)",
            headers={"WWW-Authenticate": "Usersync-Signature"},
        )
    return caller


def _signature_error(code: str, message: str, name: str | None, reason: str) -> ApiError:
    log.info("auth_refused", source=name, reason=reason)
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Usersync-Signature"})


def _signature_headers(request: web.Request, settings: Settings) -> tuple[SourceSettings, str, str]:
    """The source a signed request claims, its timestamp and the signature's hex, once the
    headers are complete, well-formed, of a source with a secret and fresh; else a 401.
    Nothing here needs the body."""
    name = request.headers.get(SOURCE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")

    def bad(reason: str) -> ApiError:
        return _signature_error(
            "bad_signature", "missing or invalid request signature", name[:64] or None, reason
        )

    if not (name and timestamp and signature):
        raise bad("incomplete_headers")
    source = settings.source(name)
    if source is None or source.hmac_secret is None:
        raise bad("unknown_source")
    given = signature[len(SCHEME) :].strip().lower() if signature.startswith(SCHEME) else ""
    if not _TIMESTAMP.fullmatch(timestamp) or not _HEX_DIGEST.fullmatch(given):
        raise bad("malformed")
    skew = settings.gateway.signature_skew_s
    if abs(time.time() - int(timestamp)) > skew:
        raise _signature_error(
            "stale_signature",
            f"the signature's timestamp is more than {skew} s from the gateway's clock",
            name,
            "stale",
        )
    return source, timestamp, given


async def _spend_signature(
    redis: Redis, settings: Settings, source: SourceSettings, signature: str
) -> None:
    """Remember an accepted signature for twice the skew (the longest its timestamp stays
    acceptable); one already remembered is a replay (401)."""
    ttl_ms = 2 * settings.gateway.signature_skew_s * 1000
    if not await redis.set(keys.signature(source.name, signature), b"1", nx=True, px=ttl_ms):
        raise _signature_error(
            "replayed_signature",
            "this signature was already used; sign every request anew",
            source.name,
            "replayed",
        )


@dataclass(frozen=True)
class Claim:
    """What a request's headers establish before its body is read: the caller, and for a
    signed request the timestamp and signature (hex) still to check over the body."""

    caller: Caller
    timestamp: str = ""
    signature: str = ""


def check_headers(request: web.Request, settings: Settings, *, admin_allowed: bool) -> Claim:
    """Every refusal the headers allow, before a byte of the body is read (401, or 403 for
    the admin token where only sources may call): an unsigned request's bearer token, a
    signed one's headers, source and timestamp (`_signature_headers`)."""
    if not is_signed(request):
        return Claim(authenticate_unsigned(request, settings, admin_allowed=admin_allowed))
    bearer: Caller | None = None
    if bearer_token(request) is not None:
        bearer = authenticate(request, settings, admin_allowed=admin_allowed)
    source, timestamp, signature = _signature_headers(request, settings)
    if bearer is not None and (bearer.source is None or bearer.source.name != source.name):
        raise unauthorized("the bearer token and the signature belong to different callers")
    return Claim(Caller(source), timestamp, signature)


async def verify_body(claim: Claim, settings: Settings, raw_body: bytes, redis: Redis) -> Caller:
    """The claimed caller, once a signed request's HMAC holds over `raw_body` (the exact
    bytes read) and its signature is spent against replay; else a 401."""
    source = claim.caller.source
    if not claim.signature or source is None or source.hmac_secret is None:
        return claim.caller
    expected = signature_hex(source.hmac_secret.get_secret_value(), claim.timestamp, raw_body)
    if not hmac.compare_digest(claim.signature.encode(), expected.encode()):
        raise _signature_error(
            "bad_signature", "missing or invalid request signature", source.name, "mismatch"
        )
    await _spend_signature(redis, settings, source, expected)  # last: a refusal spends none
    return authenticated(claim.caller)


async def authenticate_caller(
    request: web.Request,
    settings: Settings,
    raw_body: bytes,
    redis: Redis,
    *,
    admin_allowed: bool,
) -> Caller:
    """The caller of a request without a body to wait for (`raw_body` b"" for a GET): by
    bearer token or signature, as the module docstring describes."""
    claim = check_headers(request, settings, admin_allowed=admin_allowed)
    return await verify_body(claim, settings, raw_body, redis)


def source_of(caller: Caller) -> SourceSettings:
    """The source behind a caller checked with admin_allowed=False (never the admin)."""
    assert caller.source is not None
    return caller.source


async def enforce_source_rate(rates: SourceRates, source: SourceSettings, cost: int = 1) -> None:
    """Take `cost` posts from the source's `rate_limit` (none configured: no limit); over it,
    a 429 `rate_limited` with `Retry-After` in whole seconds (at least 1). Call it only once
    the source is authenticated: refused credentials never count. (A single post takes its
    share in its ingest script instead: `core.store.Store.ingest` with the rate.)"""
    if source.rate_limit is None:
        return
    wait_ms = await rates.take(source.name, source.rate_limit, cost)
    if wait_ms <= 0:
        return
    raise rate_limited(source, wait_ms)


def rate_limited(source: SourceSettings, wait_ms: int) -> ApiError:
    """The 429 of a post over its source's rate, `wait_ms` before it would fit (logged)."""
    assert source.rate_limit is not None
    retry_after = max(1, math.ceil(wait_ms / 1000))
    log.info("rate_limited", source=source.name, retry_after_s=retry_after)
    return ApiError(
        429,
        "rate_limited",
        f"source {source.name} is over its rate limit of {source.rate_limit.per_second:g}/s "
        f"(burst {source.rate_limit.burst}); retry after {retry_after} s",
        {"retry_after_s": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
