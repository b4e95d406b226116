"""Who is calling: a source (by its bearer token) or an operator (by the admin token).

Tokens are compared with `hmac.compare_digest` against every candidate, so neither the match
nor its position leaks through timing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from config.settings import Settings, SourceSettings
from gateway.errors import ApiError, unauthorized


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: `source` is None for the admin."""

    source: SourceSettings | None

    @property
    def is_admin(self) -> bool:
        return self.source is None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def authenticate(request: web.Request, settings: Settings, *, admin_allowed: bool) -> Caller:
    """The caller behind the request's bearer token, or a 401."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    found: SourceSettings | None = None
    for source in settings.sources:
        if _same(token, source.token.get_secret_value()):
            found = source
    admin = settings.gateway.admin_token
    is_admin = admin is not None and _same(token, admin.get_secret_value())
    if found is not None:
        return Caller(found)
    if is_admin and admin_allowed:
        return Caller(None)
    if is_admin:
        raise ApiError(403, "forbidden", "the admin token cannot post events; use a source token")
    raise unauthorized()


def require_admin(request: web.Request, settings: Settings) -> None:
    """Admin calls: 401 without a valid token, 403 for a source's token."""
    caller = authenticate(request, settings, admin_allowed=True)
    if not caller.is_admin:
        raise ApiError(403, "forbidden", "this call needs the admin token")
