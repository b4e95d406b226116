"""Operators' calls on the dead-letter queue (admin token): list, show, replay, purge.

Every input is checked before Redis is asked: an id that is not a dead-letter id is a 404, a
bad query parameter or body a 422 naming it, so nothing an operator types can become a 500.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from config.common import NAME_PATTERN
from config.settings import Settings
from core import keys
from core.dead_letters import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Cursor,
    DeadLetterExpired,
    DeadLetterNotFound,
    DeadLetterUnreadable,
)
from core.event import EVENT_ID_PATTERN
from gateway import answers
from gateway.admin import invalid, known_query
from gateway.auth import require_admin
from gateway.body import read_json_object
from gateway.context import DEAD_LETTERS, SETTINGS, STORE, json_response
from gateway.errors import ApiError
from gateway.routing import (
    JSON,
    Answer,
    Parameter,
    Ref,
    Route,
    Schema,
    Tag,
    configured_vendor,
    path_parameter,
    query_parameter,
)

log = structlog.get_logger("usersync.gateway")


def _now_ms() -> int:
    return int(time.time() * 1000)


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


LETTER_ID_PATTERN = (
    NAME_PATTERN.removesuffix("$") + ":" + EVENT_ID_PATTERN[1:-1] + ":" + NAME_PATTERN[1:]
)
"""A dead letter's id, `{source}:{event_id}:{vendor}` (`core.keys.dead_letter_id`)."""
CURSOR_PATTERN = "^[0-9]{1,15}:" + LETTER_ID_PATTERN[1:]
"""A page's `next_cursor`: `{score}:{letter id}` of the last letter shown, the next page
starting strictly after it: any position is a valid one, so any text of this shape is taken."""


def _cursor(text: str) -> Cursor | None:
    """The position a `cursor` names (None if it names none: a 422)."""
    if not re.fullmatch(CURSOR_PATTERN, text):
        return None
    score, _, member = text.partition(":")
    return Cursor(int(score), member)


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
    query = known_query(request, ("vendor", "source", "limit", "cursor"))
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
        cursor = _cursor(query["cursor"])
        if cursor is None:
            problems.append({"path": "cursor", "message": "not a next_cursor of this list"})
    if problems:
        raise invalid(problems, "invalid query parameters")
    page = await request.app[DEAD_LETTERS].page(
        vendor=vendor, source=source, limit=limit, cursor=cursor, now_ms=_now_ms()
    )
    after = None if page.next_cursor is None else Cursor.decode(page.next_cursor)
    return json_response(
        {
            "dead_letters": page.items,
            "total": page.total,
            "next_cursor": None if after is None else f"{after.score}:{after.member}",
        }
    )


async def get_dead_letter(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    letter_id = _letter_id(request)
    known_query(request, ())
    try:
        return json_response(await request.app[DEAD_LETTERS].show(letter_id))
    except DeadLetterNotFound:
        raise _not_found(letter_id) from None
    except DeadLetterExpired:
        raise _expired(letter_id) from None


async def replay_dead_letter(request: web.Request) -> web.Response:
    require_admin(request, request.app[SETTINGS])
    letter_id = _letter_id(request)
    known_query(request, ())
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
    known_query(request, ())
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
    known_query(request, ())
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
    query = known_query(request, ("vendor", "all"))
    choice: dict[str, Any] = dict(query)
    if "all" in choice:
        choice["all"] = choice["all"] == "true"
    vendor = await _bulk_scope(request, choice, "expected vendor=<name> or all=true")
    purged = await request.app[DEAD_LETTERS].purge_many(vendor)
    log.info("dead_letters_purged", vendor=vendor or "*", purged=purged, outcome="purged")
    return json_response({"purged": purged})


_TAG = Tag("dead-letters", "the dead-letter queue (admin token)")
_ID = path_parameter("id", LETTER_ID_PATTERN, "a dead letter: `{source}:{event_id}:{vendor}`")
_REMOVED = (
    "; also an instance no longer configured while it still has dead letters (to inspect and "
    "clean them up), any other name is a 422"
)
_VENDOR_FILTER = query_parameter(
    "vendor", configured_vendor, "only this configured vendor instance's letters" + _REMOVED
)


def _scope(ref: Ref, settings: Settings) -> dict[str, Any]:
    """`_bulk_scope`'s body: `{"vendor": <instance>}` or `{"all": true}`."""
    vendor = {"type": "object", "additionalProperties": False, "required": ["vendor"]}
    vendor["properties"] = {"vendor": configured_vendor(settings)}
    return {"oneOf": [vendor, ref(answers.ReplayAll)], "description": "a vendor" + _REMOVED}


_PURGE_SCOPE = Parameter(
    "scope",
    "query",
    lambda settings: {
        "type": "object",
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["vendor"],
                "properties": {"vendor": configured_vendor(settings)},
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["all"],
                "properties": {"all": {"type": "string", "enum": ["true"]}},
            },
        ],
    },
    "exactly one of `vendor=<instance>` (that instance's letters" + _REMOVED + ") or "
    "`all=true` (every letter)",
    style=("form", True),
    required=True,
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/dead-letters",
        list_dead_letters,
        "listDeadLetters",
        "Dead letters, newest first",
        _TAG,
        "admin",
        {200: Answer("one page", answers.DeadLetterPage)},
        (401, 403, 422, 503),
        parameters=(
            _VENDOR_FILTER,
            query_parameter(
                "source", {"type": "string", "pattern": NAME_PATTERN}, "only this source's letters"
            ),
            query_parameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
                "letters per page",
            ),
            query_parameter(
                "cursor",
                {"type": "string", "pattern": CURSOR_PATTERN},
                "the `next_cursor` of the previous page (`{score}:{letter id}` of its last "
                "letter): the page starts strictly after it",
            ),
        ),
    ),
    Route(
        "POST",
        "/v1/dead-letters:replay",
        replay_dead_letters,
        "replayDeadLetters",
        "Replay a vendor's dead letters, or all",
        _TAG,
        "admin",
        {202: Answer("the letters dead when asked were replayed", answers.ReplayReport)},
        (400, 401, 403, 408, 413, 415, 422, 503),
        {JSON: Schema(_scope, (answers.ReplayAll,))},
    ),
    Route(
        "DELETE",
        "/v1/dead-letters",
        purge_dead_letters,
        "purgeDeadLetters",
        "Drop a vendor's dead letters, or all, from the queue",
        _TAG,
        "admin",
        {200: Answer("dropped from the queue (the events stay `dead`)", answers.PurgeReport)},
        (401, 403, 422, 503),
        parameters=(_PURGE_SCOPE,),
    ),
    Route(
        "GET",
        "/v1/dead-letters/{id}",
        get_dead_letter,
        "getDeadLetter",
        "One dead letter with its attempts and its event (secrets masked)",
        _TAG,
        "admin",
        {200: Answer("the letter", answers.DeadLetterDetail)},
        (401, 403, 404, 410, 422, 503),
        parameters=(_ID,),
    ),
    Route(
        "DELETE",
        "/v1/dead-letters/{id}",
        purge_dead_letter,
        "purgeDeadLetter",
        "Drop one dead letter from the queue (its event stays `dead`)",
        _TAG,
        "admin",
        {200: Answer("dropped", answers.Purged)},
        (401, 403, 404, 422, 503),
        parameters=(_ID,),
    ),
    Route(
        "POST",
        "/v1/dead-letters/{id}/replay",
        replay_dead_letter,
        "replayDeadLetter",
        "Send one dead letter again",
        _TAG,
        "admin",
        {202: Answer("back in its pair's queue, 0 attempts", answers.Replayed)},
        (401, 403, 404, 409, 410, 422, 503),
        parameters=(_ID,),
        description="No body is read.",
    ),
)
"""The dead-letter queue's calls (`gateway.routing`)."""
