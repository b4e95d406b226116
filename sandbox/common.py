"""What every vendor simulator shares: journaling, fault injection, auth and JSON decoding.

A simulator module (`workers/vendors/<kind>/simulator.py`) supplies a `Simulator`: its
`Vendor` (failure shapes, how it reads credentials, its user model) and its routes, handlers
taking a `Call`; `vendor_route` wraps them so that every call is journaled and the steps
common to all vendors run in one order: fault, auth, Content-Type (`Vendor.media_types`),
JSON body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from sandbox.state import STATE_KEY, Fault, JournalEntry, SandboxState, UserModel

GARBAGE = "<html>oops</html>"
JSON_ONLY = frozenset({"application/json"})
"""The request media types a vendor reads unless its `Vendor` names others."""

Failure = Callable[[SandboxState, int, str], web.Response]
BodyFailure = Callable[[SandboxState, str], web.Response]
RawHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def any_token(token: str) -> None:
    """The default credential rule: any non-empty string may be configured."""


@dataclass(frozen=True)
class Vendor:
    """One simulated vendor: how it fails, how it authenticates, how it stores users.

    `failure(state, status, message)` is its error body at an HTTP status; `body_failure` its
    "HTTP 200 but failed" answer (or a 400 where the vendor has none); `credential` reads the
    credential from the request (refused with `auth_message`); `routes` matches the paths it
    serves (anything else under `prefix` is a 404, or a 405 for a known path with another
    method); `check_token` raises ValueError for a credential the vendor could never have
    issued, so that a sandbox configured with one fails at creation rather than with 401s;
    `media_types` are the request `Content-Type`s it reads (anything else is a 415).
    """

    kind: str
    prefix: str
    failure: Failure
    body_failure: BodyFailure
    credential: Callable[[web.Request], str | None]
    model: UserModel
    routes: re.Pattern[str]
    auth_message: str = "Unauthenticated."
    check_token: Callable[[str], None] = any_token
    media_types: frozenset[str] = JSON_ONLY


@dataclass(frozen=True)
class Call:
    """An authenticated call with a JSON body, as handed to a vendor handler."""

    request: web.Request
    state: SandboxState
    vendor: Vendor
    body: Any

    def fail(self, status: int, message: str) -> web.Response:
        """Answer in the vendor's failure shape."""
        return self.vendor.failure(self.state, status, message)


Handler = Callable[[Call], Awaitable[web.Response]]
Route = tuple[str, str, Handler]
"""(method, path, handler): one documented call of a vendor; the path starts with its prefix."""


@dataclass(frozen=True)
class Simulator:
    """One vendor's simulator as `create_sandbox_app` mounts it: the vendor and its routes.

    Each `workers/vendors/<kind>/simulator.py` defines one as `SIMULATOR`.
    """

    vendor: Vendor
    routes: tuple[Route, ...]

    @property
    def kind(self) -> str:
        return self.vendor.kind


def reason(status: int) -> str:
    """The standard phrase of a status, as the default message of an injected fault."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Injected fault"


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what was sent."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_email(value: str) -> bool:
    """An address email-validator accepts (syntax only: no DNS from a sandbox)."""
    try:
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return False
    return True


def secret_hash(value: str) -> str:
    """What is stored instead of a password: enough to see that it changed, never the value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def utc_now(*, zulu: bool = False) -> str:
    """The current time as the vendors print it (seconds, `+00:00` or `Z`)."""
    text = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zulu else text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity; raises ValueError otherwise."""
    return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)


def _journal_body(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


async def _journal(
    request: web.Request, vendor: Vendor
) -> tuple[SandboxState, bytes, JournalEntry]:
    """Read the call and journal it before anything can refuse it: tests see every call."""
    state = request.config_dict[STATE_KEY]
    raw = await request.read()
    entry = state.record(
        vendor.kind,
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers=request.headers,
        body=_journal_body(raw),
    )
    return state, raw, entry


async def _fault_answer(state: SandboxState, vendor: Vendor, fault: Fault) -> web.Response | None:
    """Apply a fault: wait, then answer in its place (None: go on and process the call)."""
    if fault.latency_ms > 0:
        await asyncio.sleep(fault.latency_ms / 1000)
    response: web.Response | None = None
    if fault.garbage:
        response = web.Response(status=fault.status or 200, text=GARBAGE, content_type="text/html")
    elif fault.status is not None:
        response = vendor.failure(state, fault.status, fault.body_failure or reason(fault.status))
    elif fault.body_failure is not None:
        response = vendor.body_failure(state, fault.body_failure)
    if response is not None and fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


async def _answer(
    request: web.Request, state: SandboxState, vendor: Vendor, handler: Handler, raw: bytes
) -> web.Response:
    fault = state.take_fault(vendor.kind)
    if fault is not None:
        faulted = await _fault_answer(state, vendor, fault)
        if faulted is not None:
            return faulted
    if not state.accepts(vendor.kind, vendor.credential(request)):
        return vendor.failure(state, 401, vendor.auth_message)
    if request.content_type not in vendor.media_types:
        accepted = " or ".join(sorted(vendor.media_types))
        return vendor.failure(state, 415, f"Content-Type must be {accepted}.")
    try:
        body = parse_json(raw)
    except ValueError:
        return vendor.failure(state, 400, "The request body is not valid JSON.")
    return await handler(Call(request=request, state=state, vendor=vendor, body=body))


def vendor_route(vendor: Vendor, handler: Handler) -> RawHandler:
    """Wrap a vendor handler: journal the call, then fault, auth and JSON checks, in order."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state, raw, entry = await _journal(request, vendor)
        try:
            response = await _answer(request, state, vendor, handler, raw)
        except Exception:
            entry.status = 500
            raise
        entry.status = response.status
        return response

    return handle


def fallback_route(vendor: Vendor) -> RawHandler:
    """Anything else under the vendor's prefix: journaled, and refused in the vendor's shape."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state, _, entry = await _journal(request, vendor)
        if vendor.routes.fullmatch(request.path):
            response = vendor.failure(state, 405, f"Method {request.method} is not allowed here.")
        else:
            response = vendor.failure(state, 404, f"No route {request.method} {request.path}.")
        entry.status = response.status
        return response

    return handle
