"""Operators' calls: the dead-letter queue, vendor state, ordering resets (admin token), and
`/metrics` (open).

Every input is checked before Redis is asked: an id that is not a dead-letter id is a 404, a
bad query parameter or body a 422 naming it, so nothing an operator types can become a 500.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from config.settings import NAME_PATTERN
from core import keys, metrics
from core.dead_letters import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Cursor,
    DeadLetterExpired,
    DeadLetterNotFound,
    DeadLetterUnreadable,
)
from core.event import EVENT_ID_PATTERN, USER_ID_PATTERN
from core.ordering import reset_ordering
from gateway.auth import require_admin
from gateway.body import read_json_object
from gateway.context import DEAD_LETTERS, SETTINGS, STORE, VENDOR_GUARD, json_response
from gateway.errors import ApiError

log = structlog.get_logger("usersync.gateway")


def _now_ms() -> int:
    return int(time.time() * 1000)


def invalid(problems: list[dict[str, str]], message: str) -> ApiError:
    return ApiError(422, "schema_violation", message, problems)


def _query(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The query parameters, each at most once and all known; else a 422 naming them."""
    problems = [
        {"path": name, "message": "unknown query parameter"}
        for name in sorted(set(request.query) - set(allowed))
    ]
    problems += [
        {"path": name, "message": "given more than once"}
        for name in sorted(set(request.query))
        if len(request.query.getall(name)) > 1
    ]
    if problems:
        raise invalid(problems, "invalid query parameters")
    return dict(request.query)


async def _vendor_problem(request: web.Request, vendor: Any, path: str) -> dict[str, str] | None:
    """A vendor named in a filter or a bulk call: configured, or one that still has dead
    letters (an instance removed from the config can still be inspected and cleaned up)."""
    if not isinstance(vendor, str) or not re.fullmatch(NAME_PATTERN, vendor):
        return {"path": path, "message": "expected a vendor instance name"}
    if vendor in request.app[SETTINGS].vendors:
        return None
    if await request.app[STORE].redis.exists(keys.dead_letters_of(vendor)):
        return None
    return {"path": path, "message": f"no vendor instance {vendor} is configured"}


def _parts(letter_id: str) -> tuple[str, str, str]:
    """(source, event_id, vendor) of a dead-letter id; a 404 for anything that cannot be one."""
    parts = keys.parse_dead_letter_id(letter_id)
    if parts is None or len(letter_id) > 400:
        raise ApiError(404, "not_found", "no such dead letter")
    source, event_id, target = parts
    if not (
        re.fullmatch(NAME_PATTERN, source)
        and re.fullmatch(EVENT_ID_PATTERN, event_id)
        and re.fullmatch(NAME_PATTERN, target)
    ):
        raise ApiError(404, "not_found", "no such dead letter")
    return parts


def _letter_id(request: web.Request) -> str:
    letter_id = request.match_info["id"]
    _parts(letter_id)
    return letter_id


def _not_found(letter_id: str) -> ApiError:
    return ApiError(404, "not_found", f"{letter_id} is not a dead letter")


def _expired(letter_id: str) -> ApiError:
    return ApiError(
        410, "expired", f"the event of {letter_id} is past its retention and no longer stored"
    )


async def list_dead_letters(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    query = _query(request, ("vendor", "source", "limit", "cursor"))
    problems = []
    vendor, source, limit, cursor = query.get("vendor"), query.get("source"), DEFAULT_LIMIT, None
    if vendor is not None and (problem := await _vendor_problem(request, vendor, "vendor")):
        problems.append(problem)
    if source is not None and not re.fullmatch(NAME_PATTERN, source):
        problems.append({"path": "source", "message": "expected a source name"})
    if "limit" in query:
        text = query["limit"]
        if not (
            text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_LIMIT
        ):
            problems.append({"path": "limit", "message": f"expected an integer 1-{MAX_LIMIT}"})
        else:
            limit = int(text)
    if "cursor" in query:
        try:
            cursor = Cursor.decode(query["cursor"])
        except ValueError:
            problems.append({"path": "cursor", "message": "not a next_cursor of this list"})
    if problems:
        raise invalid(problems, "invalid query parameters")
    page = await request.app[DEAD_LETTERS].page(
        vendor=vendor, source=source, limit=limit, cursor=cursor, now_ms=_now_ms()
    )
    return json_response(
        {"dead_letters": page.items, "total": page.total, "next_cursor": page.next_cursor}
    )


async def get_dead_letter(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    letter_id = _letter_id(request)
    _query(request, ())
    try:
        return json_response(await request.app[DEAD_LETTERS].show(letter_id))
    except DeadLetterNotFound:
        raise _not_found(letter_id) from None
    except DeadLetterExpired:
        raise _expired(letter_id) from None


async def replay_dead_letter(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    letter_id = _letter_id(request)
    _query(request, ())
    try:
        await request.app[DEAD_LETTERS].replay(letter_id, _now_ms())
    except DeadLetterNotFound:
        raise _not_found(letter_id) from None
    except DeadLetterExpired:
        raise _expired(letter_id) from None
    except DeadLetterUnreadable:
        raise ApiError(
            409, "unreplayable", f"the stored event of {letter_id} no longer validates"
        ) from None
    source, event_id, _ = _parts(letter_id)
    log.info("dead_letter_replayed", id=letter_id, outcome="replayed")
    return json_response(
        {
            "id": letter_id,
            "status": "replayed",
            "status_url": f"/v1/events/{quote(event_id, safe=':')}?source={quote(source)}",
        },
        202,
    )


async def purge_dead_letter(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    letter_id = _letter_id(request)
    _query(request, ())
    if not await request.app[DEAD_LETTERS].purge(letter_id):
        raise _not_found(letter_id)
    log.info("dead_letter_purged", id=letter_id, outcome="purged")
    return json_response({"id": letter_id, "status": "purged"})


async def _bulk_scope(request: web.Request, choice: dict[str, Any], usage: str) -> str | None:
    """A bulk call's scope: `vendor` (that vendor's letters) or `all` true (None), exactly
    one; else a 422 that says what is expected (`usage`)."""
    if set(choice) == {"vendor"}:
        problem = await _vendor_problem(request, choice["vendor"], "vendor")
        if problem is not None:
            raise invalid([problem], "invalid vendor")
        return str(choice["vendor"])
    if set(choice) == {"all"} and choice["all"] is True:
        return None
    raise invalid([{"path": ", ".join(sorted(choice)) or "(empty)", "message": usage}], usage)


async def replay_dead_letters(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    require_admin(request, settings)
    _query(request, ())
    body = await read_json_object(request, settings.gateway.max_body_bytes)
    vendor = await _bulk_scope(request, body, 'expected {"vendor": "<name>"} or {"all": true}')
    report = await request.app[DEAD_LETTERS].replay_many(vendor, _now_ms())
    log.info(
        "dead_letters_replayed",
        vendor=vendor or "*",
        replayed=report.replayed,
        expired=report.expired,
        invalid=report.invalid,
        outcome="replayed",
    )
    return json_response(
        {"replayed": report.replayed, "expired": report.expired, "invalid": report.invalid}, 202
    )


async def purge_dead_letters(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    query = _query(request, ("vendor", "all"))
    choice: dict[str, Any] = dict(query)
    if "all" in choice:
        choice["all"] = choice["all"] == "true"
    vendor = await _bulk_scope(request, choice, "expected vendor=<name> or all=true")
    purged = await request.app[DEAD_LETTERS].purge_many(vendor)
    log.info("dead_letters_purged", vendor=vendor or "*", purged=purged, outcome="purged")
    return json_response({"purged": purged})


async def get_vendors(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    require_admin(request, settings)
    _query(request, ())
    states = await metrics.vendor_states(
        settings, request.app[VENDOR_GUARD], request.app[DEAD_LETTERS]
    )
    return json_response({"vendors": states})


async def reset_user_ordering(request: web.Request) -> web.Response:
    """Clear a user's ordering state (`core.ordering`) at one vendor instance
    (`?vendor=`), or at every configured one and in the name profile: the next change of
    each field is sent whatever its order key. 409 while a pair is in flight, nothing cleared."""
    settings = request.app[SETTINGS]
    require_admin(request, settings)
    user_id = request.match_info["user_id"]
    if not re.fullmatch(USER_ID_PATTERN, user_id):
        raise ApiError(404, "not_found", "no such user id")
    vendor = _query(request, ("vendor",)).get("vendor")
    if vendor is not None and vendor not in settings.vendors:
        message = f"no vendor instance {vendor} is configured"
        raise invalid([{"path": "vendor", "message": message}], "invalid query parameters")
    vendors = [vendor] if vendor is not None else list(settings.vendors)
    done = await reset_ordering(request.app[STORE].redis, user_id, vendors, profile=vendor is None)
    if done.in_flight:
        raise ApiError(
            409,
            "pair_in_flight",
            "a delivery to this user is in flight: nothing was reset; retry after Retry-After",
            {"vendors": done.in_flight},
            {"Retry-After": str(max(1, math.ceil(done.retry_after_ms / 1000)))},
        )
    log.warning("ordering_reset", user_id=user_id, vendors=vendors, by="admin")
    return json_response(
        {
            "user_id": user_id,
            "vendors": vendors,
            "applied_cleared": done.applied,
            "profile_cleared": done.profile,
        }
    )


async def get_metrics(request: web.Request) -> web.Response:
    store = request.app[STORE]
    values = await metrics.snapshot(
        store.redis,
        store.queue_name,
        request.app[SETTINGS],
        request.app[VENDOR_GUARD],
        request.app[DEAD_LETTERS],
    )
    return web.Response(body=metrics.render(values), headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters:replay", replay_dead_letters)
    app.router.add_delete("/v1/dead-letters", purge_dead_letters)
    app.router.add_get("/v1/dead-letters/{id}", get_dead_letter)
    app.router.add_delete("/v1/dead-letters/{id}", purge_dead_letter)
    app.router.add_post("/v1/dead-letters/{id}/replay", replay_dead_letter)
    app.router.add_get("/v1/vendors", get_vendors)
    app.router.add_delete("/v1/users/{user_id}/ordering", reset_user_ordering)
    app.router.add_get("/metrics", get_metrics)
