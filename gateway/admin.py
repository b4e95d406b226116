"""Operators' calls: vendor state and ordering resets (admin token), and `/metrics` (open);
the query-parameter check every admin call makes (the dead-letter queue's calls are in
`gateway.dead_letter_api`).

Every input is checked before Redis is asked: a bad query parameter is a 422 naming it, so
nothing an operator types can become a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection

import structlog
from aiohttp import web

from core import metrics
from core.event import USER_ID_PATTERN
from core.ordering import reset_ordering
from gateway import answers
from gateway.auth import require_admin
from gateway.context import DEAD_LETTERS, SETTINGS, STORE, VENDOR_GUARD, json_response
from gateway.errors import ApiError
from gateway.instruments import get_metrics as serve_metrics
from gateway.routing import (
    OPERATIONS_TAG,
    USER_ID,
    Answer,
    Route,
    Tag,
    configured_vendor,
    query_parameter,
)

log = structlog.get_logger("usersync.gateway")


def invalid(problems: list[dict[str, str]], message: str) -> ApiError:
    return ApiError(422, "schema_violation", message, problems)


def known_query(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
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


async def get_vendors(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    require_admin(request, settings)
    known_query(request, ())
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
    vendor = known_query(request, ("vendor",)).get("vendor")
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
    """This process's metrics (`gateway.instruments`), Redis read at scrape time."""
    return await serve_metrics(request)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/vendors",
        get_vendors,
        "getVendors",
        "Each vendor instance: circuit, rate, calls, vendor-reported usage, dead letters",
        Tag("vendors", "vendor instance state (admin token)"),
        "admin",
        {200: Answer("by instance name", answers.Vendors)},
        (401, 403, 422, 503),
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}/ordering",
        reset_user_ordering,
        "resetOrdering",
        "Clear a user's ordering state, so the next change of each field is sent",
        Tag("ordering", "users' ordering state (admin token)"),
        "admin",
        {200: Answer("cleared (also when there was nothing to clear)", answers.OrderingReset)},
        (401, 403, 404, 409, 422, 503),
        parameters=(
            USER_ID,
            query_parameter(
                "vendor",
                configured_vendor,
                "only this vendor instance's pair (default: every configured one, and the "
                "user's name profile)",
            ),
        ),
        description="The repair for an event whose order key (`user.version`, or "
        "`occurred_at`) was so far ahead that every later change of its fields is skipped as "
        "`stale`: clears the field orders each vendor instance acknowledged for the user, and "
        "without `vendor` the name profile's part orders. While a delivery to the user is in "
        "flight nothing is cleared: 409 `pair_in_flight`, retry after `Retry-After`. Logged "
        "as `ordering_reset`.",
    ),
    Route(
        "GET",
        "/metrics",
        get_metrics,
        "metrics",
        "Prometheus metrics of this process, and the deployment's read from Redis",
        OPERATIONS_TAG,
        "none",
        {
            200: Answer(
                "Prometheus text format 0.0.4; also while Redis is down (usersync_redis_up 0, "
                "the values read from Redis left out)",
                media_types=("text/plain",),
                schema={"type": "string"},
            )
        },
    ),
)
"""Vendor state, ordering resets and metrics (`gateway.routing`)."""
