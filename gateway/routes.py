"""Handlers of the v1 API (docs/contract.md §2). Each is: authenticate, read, validate, one store call."""

from __future__ import annotations

import re

import orjson
import structlog
from aiohttp import web

from config.ingress import ADMIN_SETTER
from core.event import EVENT_ID_PATTERN, USER_ID_PATTERN, VENDOR_ID_PATTERN, Event
from core.links import LinkConflict, LinkDetail
from core.source_rate import RateLimited
from core.status import utc_now_iso
from gateway import answers, cloudevents
from gateway.auth import (
    Caller,
    authenticate_caller,
    check_headers,
    enforce_source_rate,
    rate_limited,
    require_admin,
    source_of,
    verify_body,
)
from gateway.body import read_json_body, read_json_object
from gateway.cloudevents_schema import BINARY_MODE, STRUCTURED_BODY
from gateway.context import (
    PREVIEWER,
    SECRET_BOX,
    SETTINGS,
    SOURCE_RATES,
    STORE,
    VENDOR_FIELDS,
    json_response,
)
from gateway.errors import ApiError, schema_error
from gateway.ingest import (
    build_record,
    check_link_conflicts,
    check_secrets,
    link_conflict,
    log_link_changes,
    validated_json_event,
)
from gateway.instruments import GATEWAY_METRICS
from gateway.lifecycle import check_ready
from gateway.routing import (
    EVENTS_TAG,
    JSON,
    OPERATIONS_TAG,
    USER_ID,
    Answer,
    Parameter,
    Route,
    Tag,
    configured_vendor,
    path_parameter,
    query_parameter,
)
from gateway.storage import STORAGE

log = structlog.get_logger("usersync.gateway")


async def _validated_event(
    request: web.Request, *, take_rate: bool = True
) -> tuple[Caller, Event, list[str]]:
    """Order of refusals: what the headers show of the credentials (401/403: a bearer token,
    a signature's headers, source and timestamp), before a byte of the body is read; 415;
    413 (declared, or while streaming); 503 `overloaded`; 408; the signature over the exact
    bytes read (401); Redis nearly full (503 `storage_full`); the source's rate (429); then
    400 and 422 from parsing; 403 for the source or a target. Without `take_rate` the caller
    takes the rate itself: a post, in its ingest script, so its 429 comes after the 4xx of
    its body (which then take nothing) and before a 409 `link_conflict`."""
    settings = request.app[SETTINGS]
    redis = request.app[STORE].redis
    claim = check_headers(request, settings, admin_allowed=False)
    mode = cloudevents.event_mode(request)  # None: a plain v1 body
    raw = await read_json_body(request, settings.gateway.max_body_bytes)
    source = source_of(await verify_body(claim, settings, raw, redis))
    request.app[STORAGE].check()  # 503 storage_full, before the rate: it takes nothing
    if take_rate:
        await enforce_source_rate(request.app[SOURCE_RATES], source)
    check_fields = request.app[VENDOR_FIELDS]
    if mode is None:
        event, targets = validated_json_event(raw, settings, source, check_fields)
    else:
        event, targets = cloudevents.validated(mode, request, raw, settings, source, check_fields)
    structlog.contextvars.bind_contextvars(event_id=event.event_id, user_id=event.user.id)
    return Caller(source), event, targets


@cloudevents.speaks_cloudevents
async def post_event(request: web.Request) -> web.Response:
    caller, event, targets = await _validated_event(request, take_rate=False)
    assert caller.source is not None
    record = build_record(event, targets, caller.source, request.app[SECRET_BOX])
    try:  # the source's rate is taken by the same script: one round trip a post
        ingested = await request.app[STORE].ingest(record, utc_now_iso(), caller.source.rate_limit)
    except RateLimited as refused:
        raise rate_limited(caller.source, refused.wait_ms) from None
    except LinkConflict as conflict:
        raise link_conflict(conflict) from None
    log_link_changes(record, ingested)
    created, answer = ingested
    request.app[GATEWAY_METRICS].ingested(caller.source.name, created, not created)
    if created:
        log.info("event_accepted", source=caller.source.name, targets=targets, outcome="accepted")
        return web.Response(body=answer, status=202, content_type="application/json")
    log.info("event_duplicate", source=caller.source.name, outcome="duplicate")
    original = orjson.loads(answer)
    original["duplicate"] = True
    return json_response(original, 200)


@cloudevents.speaks_cloudevents
async def preview_event(request: web.Request) -> web.Response:
    caller, event, targets = await _validated_event(request)
    assert caller.source is not None
    check_secrets(event, request.app[SECRET_BOX])  # refused as a post would be
    if caller.source.link_mode == "create" and event.user.external_ids:
        links = await request.app[STORE].get_links(event.user.id)
        stored = {vendor: link.id for vendor, link in links.items()}
        check_link_conflicts(event, caller.source, stored)
    previews = await request.app[PREVIEWER](event, targets)
    return json_response({"event_id": event.event_id, "targets": previews})


async def get_event(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    caller = await authenticate_caller(request, settings, b"", store.redis, admin_allowed=True)
    event_id = request.match_info["event_id"]
    if not re.fullmatch(EVENT_ID_PATTERN, event_id):
        raise ApiError(404, "not_found", "no such event")
    if caller.source is not None:
        candidates = [caller.source.name]
    elif "source" in request.query:
        candidates = [request.query["source"]]
    else:
        candidates = [source.name for source in settings.sources]
    for source in candidates:
        status = await store.event_status(source, event_id)
        if status is not None:
            return json_response(status)
    raise ApiError(404, "not_found", f"no event {event_id} is stored for this source")


def _admin(request: web.Request) -> None:
    require_admin(request, request.app[SETTINGS])


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not re.fullmatch(USER_ID_PATTERN, user_id):
        raise ApiError(404, "not_found", "no such user id")
    return user_id


def _link_answer(user_id: str, vendor: str, link: LinkDetail) -> dict[str, str | None]:
    return {
        "user_id": user_id,
        "vendor": vendor,
        "id": link.id,
        "set_by": link.set_by,
        "set_at": link.set_at,
    }


async def get_links(request: web.Request) -> web.Response:
    """`links` (vendor -> id) as before, and `details`: each link's id, who set it and when."""
    _admin(request)
    user_id = _user_id(request)
    links = await request.app[STORE].get_links(user_id)
    return json_response(
        {
            "user_id": user_id,
            "links": {vendor: link.id for vendor, link in links.items()},
            "details": {
                vendor: {"id": link.id, "set_by": link.set_by, "set_at": link.set_at}
                for vendor, link in links.items()
            },
        }
    )


async def get_link(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    user_id = _user_id(request)
    vendor = request.match_info["vendor"]
    link = (await request.app[STORE].get_links(user_id)).get(vendor)
    if link is None:
        raise ApiError(404, "not_found", f"no {vendor} id is linked to this user")
    return json_response(_link_answer(user_id, vendor, link))


async def put_link(request: web.Request) -> web.Response:
    _admin(request)
    settings = request.app[SETTINGS]
    user_id = _user_id(request)
    vendor = request.match_info["vendor"]
    if vendor not in settings.vendors:
        raise ApiError(404, "not_found", f"no vendor instance {vendor} is configured")
    body = await read_json_object(request, settings.gateway.max_body_bytes)
    vendor_id = body.get("id")
    if (
        set(body) != {"id"}
        or not isinstance(vendor_id, str)
        or not re.fullmatch(VENDOR_ID_PATTERN, vendor_id)
    ):
        message = 'expected {"id": "<1-200 characters, no control character>"} only'
        raise schema_error([{"path": "id", "message": message}])
    set_at = utc_now_iso()
    old_id = await request.app[STORE].set_link(user_id, vendor, vendor_id, ADMIN_SETTER, set_at)
    log.info("link_set", user_id=user_id, vendor=vendor, source=ADMIN_SETTER)
    if old_id is not None and old_id != vendor_id:
        log.info(
            "link_changed",
            user_id=user_id,
            vendor=vendor,
            old_id=old_id,
            new_id=vendor_id,
            source=ADMIN_SETTER,
        )
    return json_response(_link_answer(user_id, vendor, LinkDetail(vendor_id, ADMIN_SETTER, set_at)))


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    check_ready(request.app)  # 503 shutting_down from the start of a drain
    await request.app[STORE].redis.ping()  # a RedisError becomes a 503 in the middleware
    return json_response({"status": "ready", "redis": "ok", "config": "loaded"})


LINKS_TAG = Tag("links", "identity links (admin token)")
_VENDOR = Parameter("vendor", "path", configured_vendor, "a configured vendor instance")
_EVENT_ERRORS = (400, 401, 403, 408, 409, 413, 415, 422, 429, 503)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/events",
        post_event,
        "postEvent",
        "Accept one user-change event",
        EVENTS_TAG,
        "source",
        {
            202: Answer("stored in Redis and queued for every target", answers.Acceptance),
            200: Answer("this source already sent this event_id", answers.DuplicateAcceptance),
        },
        _EVENT_ERRORS,
        {JSON: Event, **STRUCTURED_BODY},
        description="Limit: `gateway.max_body_bytes`. A 202 is answered only once the event "
        "is durably in Redis." + BINARY_MODE,
    ),
    Route(
        "POST",
        "/v1/events:preview",
        preview_event,
        "previewEvent",
        "The exact request each target would receive",
        EVENTS_TAG,
        "source",
        {200: Answer("per target: send (masked request), skipped or refused", answers.Preview)},
        _EVENT_ERRORS,
        {JSON: Event, **STRUCTURED_BODY},
        description="Validated as `POST /v1/events`; nothing is stored or sent." + BINARY_MODE,
    ),
    Route(
        "GET",
        "/v1/events/{event_id}",
        get_event,
        "getEvent",
        "Delivery status of an event, per target",
        EVENTS_TAG,
        "source_or_admin",
        {200: Answer("the status of each target", answers.EventStatus)},
        (401, 404, 503),
        parameters=(
            path_parameter(
                "event_id", EVENT_ID_PATTERN, "the event's `event_id` (unique per source)"
            ),
            query_parameter(
                "source",
                {"type": "string"},
                "admin token only: the source whose event to read (else the first that has "
                "one); ignored for a source's own token",
            ),
        ),
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/links",
        get_links,
        "getLinks",
        "The user's ids at each vendor instance",
        LINKS_TAG,
        "admin",
        {200: Answer("the identity links", answers.Links)},
        (401, 403, 404, 503),
        parameters=(USER_ID,),
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/links/{vendor}",
        get_link,
        "getLink",
        "The user's id at one vendor instance",
        LINKS_TAG,
        "admin",
        {200: Answer("the link", answers.Link)},
        (401, 403, 404, 503),
        parameters=(USER_ID, _VENDOR),
    ),
    Route(
        "PUT",
        "/v1/users/{user_id}/links/{vendor}",
        put_link,
        "putLink",
        "Set the user's id at a vendor instance",
        LINKS_TAG,
        "admin",
        {200: Answer("the link as stored", answers.Link)},
        (400, 401, 403, 404, 408, 413, 415, 422, 503),
        {JSON: answers.LinkRequest},
        parameters=(USER_ID, _VENDOR),
    ),
    Route(
        "GET",
        "/healthz",
        healthz,
        "healthz",
        "Liveness",
        OPERATIONS_TAG,
        "none",
        {200: Answer("the process serves", answers.Health)},
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "readyz",
        "Readiness: Redis reachable, config loaded, not shutting down",
        OPERATIONS_TAG,
        "none",
        {200: Answer("ready", answers.Ready)},
        (503,),
    ),
)
"""The v1 API's event and link routes and the probes (`gateway.routing`)."""
