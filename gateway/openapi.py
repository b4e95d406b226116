"""`GET /openapi.json`: the OpenAPI 3.1 description of every route of the gateway.

Schemas come from the pydantic models that validate requests (`core.event.Event`) and
describe answers (`gateway.answers`), through one `models_json_schema` call whose `$defs` are
the document's `components.schemas`. The operations are listed in `OPERATIONS`, next to the
statuses each can answer; `tests/test_openapi.py` checks that they are exactly the routes the
aiohttp router serves, and runs schemathesis against the live gateway with this document.

The document is built once per application from its settings (the batch's `maxItems` is the
configured `gateway.batch_max_events`) and served without credentials: it holds no secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import core
from config.settings import NAME_PATTERN, Settings
from core.dead_letters import MAX_LIMIT
from core.event import EVENT_ID_PATTERN, USER_ID_PATTERN, Event
from core.signing import SCHEME, SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER
from gateway import answers, batch
from gateway.context import SETTINGS

PATH = "/openapi.json"
REF = "#/components/schemas/{model}"
DOCUMENT = web.AppKey("openapi_document", bytes)

Auth = Literal["source", "admin", "source_or_admin", "none"]

_SIGNATURE: dict[str, list[str]] = {
    "signatureSource": [],
    "signatureTimestamp": [],
    "signature": [],
}
SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "source": [{"sourceToken": []}, _SIGNATURE],
    "admin": [{"adminToken": []}],
    "source_or_admin": [{"sourceToken": []}, {"adminToken": []}, _SIGNATURE],
    "none": [],
}

ERRORS: dict[int, str] = {
    400: "the body is not valid UTF-8 JSON",
    401: "missing or bad credentials (bearer token or request signature)",
    403: "credentials not allowed here: the admin token where a source must call, a source's "
    "token on an admin call, an event naming another source, a target the source may not use "
    "or an external id for one",
    404: "no such resource (or a path parameter that cannot name one)",
    408: "the body did not arrive within `gateway.body_timeout_s` of the headers "
    "(`body_timeout`); the connection is closed",
    409: "a conflict with what is stored: an external id that would change an identity link "
    "its source may only create (`link_conflict`, `link_mode: create`; nothing stored), a "
    "dead letter whose stored event no longer validates (it cannot be replayed), or an "
    "ordering reset while a delivery to the user is in flight (`pair_in_flight`, nothing "
    "cleared: retry after `Retry-After`)",
    410: "the dead letter's event is past its retention and no longer stored",
    413: "the body is larger than the limit (cut off while streaming)",
    415: "the body is not declared as Content-Type: application/json",
    422: "schema violation: `details` lists the path and message of every problem (for a "
    "query parameter, its name; unknown fields and query parameters are refused)",
    429: "the source is over its rate limit: retry after `Retry-After` seconds",
    503: "Redis is unavailable (`redis_unavailable`), or too full for a new event "
    "(`storage_full`), or the gateway is reading too many request bodies at once "
    "(`overloaded`): nothing was accepted or changed; retry after `Retry-After`",
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "required": True,
            "description": "`Bearer`, or `Usersync-Signature` for a signature problem",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "required": True,
            "description": "seconds",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
    503: {
        "Retry-After": {
            "required": True,
            "description": "seconds",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}

# Errors every call taking a JSON body can answer, by who may call it.
_BODY_ERRORS = (400, 413, 415, 422, 503)


def _path_parameter(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def _query_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_EVENT_ID = _path_parameter(
    "event_id", EVENT_ID_PATTERN, "the event's `event_id` (unique per source)"
)
_USER_ID = _path_parameter("user_id", USER_ID_PATTERN, "the canonical user id")
_VENDOR = _path_parameter("vendor", NAME_PATTERN, "a configured vendor instance")
_DEAD_LETTER_ID = _path_parameter(
    "id",
    NAME_PATTERN.removesuffix("$") + ":" + EVENT_ID_PATTERN[1:-1] + ":" + NAME_PATTERN[1:],
    "a dead letter: `{source}:{event_id}:{vendor}`",
)
CONFIGURED_VENDOR: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
"""A parameter schema that `build_document` replaces by the enum of the configured vendor
instances (only those are taken)."""
_VENDOR_FILTER = _query_parameter(
    "vendor", {"type": "string", "pattern": NAME_PATTERN}, "only this vendor instance's letters"
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    answers: dict[int, tuple[type[BaseModel] | None, str]]
    """Success statuses: the answer's model (None: described in `_content`) and meaning."""
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | tuple[type[BaseModel], ...] | Literal["batch"] | None = None
    parameters: tuple[dict[str, Any], ...] = ()
    description: str = ""
    content: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Answers that are not JSON models (the metrics text, this document)."""


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/events",
        "postEvent",
        "Accept one user-change event",
        "events",
        "source",
        {
            202: (answers.Acceptance, "stored in Redis and queued for every target"),
            200: (answers.DuplicateAcceptance, "this source already sent this event_id"),
        },
        (400, 401, 403, 408, 409, 413, 415, 422, 429, 503),
        Event,
        description="Limit: `gateway.max_body_bytes`. A 202 is answered only once the event "
        "is durably in Redis.",
    ),
    Operation(
        "POST",
        batch.PATH,
        "postEventsBatch",
        "Accept many events, each accepted or refused on its own",
        "events",
        "source",
        {
            200: (
                answers.BatchAnswer,
                "every event's result, in order: the status and body `POST /v1/events` "
                "would have answered for it (also when some or all are refused)",
            )
        },
        (400, 401, 403, 408, 413, 415, 422, 429, 503),
        "batch",
        description="1 to `gateway.batch_max_events` events. The body may be "
        "`max_body_bytes * batch_max_events` (at most 16 MiB), each event `max_body_bytes` "
        "(else that event is a 413). The request is authenticated once; a 4xx here concerns "
        "the whole request. An event that does not match the `Event` schema is refused on "
        "its own (its result's status is 422), the others are still accepted. All accepted "
        "events are stored in one round trip, in order: a repeated `event_id` is a duplicate "
        "(200) of its first occurrence. A 503 means the outcome of the batch is unknown: "
        "send it again (events already stored answer 200, duplicate).",
    ),
    Operation(
        "POST",
        "/v1/events:preview",
        "previewEvent",
        "The exact request each target would receive",
        "events",
        "source",
        {200: (answers.Preview, "per target: send (masked request), skipped or refused")},
        (400, 401, 403, 408, 409, 413, 415, 422, 429, 503),
        Event,
        description="Validated as `POST /v1/events`; nothing is stored or sent.",
    ),
    Operation(
        "GET",
        "/v1/events/{event_id}",
        "getEvent",
        "Delivery status of an event, per target",
        "events",
        "source_or_admin",
        {200: (answers.EventStatus, "the status of each target")},
        (401, 404, 503),
        parameters=(
            _EVENT_ID,
            _query_parameter(
                "source",
                {"type": "string"},
                "admin token only: the source whose event to read (else the first that has "
                "one); ignored for a source's own token",
            ),
        ),
    ),
    Operation(
        "GET",
        "/v1/users/{user_id}/links",
        "getLinks",
        "The user's ids at each vendor instance",
        "links",
        "admin",
        {200: (answers.Links, "the identity links")},
        (401, 403, 404, 503),
        parameters=(_USER_ID,),
    ),
    Operation(
        "GET",
        "/v1/users/{user_id}/links/{vendor}",
        "getLink",
        "The user's id at one vendor instance",
        "links",
        "admin",
        {200: (answers.Link, "the link")},
        (401, 403, 404, 503),
        parameters=(_USER_ID, _VENDOR),
    ),
    Operation(
        "PUT",
        "/v1/users/{user_id}/links/{vendor}",
        "putLink",
        "Set the user's id at a vendor instance",
        "links",
        "admin",
        {200: (answers.Link, "the link as stored")},
        (400, 401, 403, 404, 408, 413, 415, 422, 503),
        answers.LinkRequest,
        parameters=(_USER_ID, _VENDOR),
    ),
    Operation(
        "GET",
        "/v1/dead-letters",
        "listDeadLetters",
        "Dead letters, newest first",
        "dead-letters",
        "admin",
        {200: (answers.DeadLetterPage, "one page")},
        (401, 403, 422, 503),
        parameters=(
            _VENDOR_FILTER,
            _query_parameter(
                "source",
                {"type": "string", "pattern": NAME_PATTERN},
                "only this source's letters",
            ),
            _query_parameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
                "letters per page",
            ),
            _query_parameter(
                "cursor", {"type": "string"}, "the `next_cursor` of the previous page"
            ),
        ),
    ),
    Operation(
        "POST",
        "/v1/dead-letters:replay",
        "replayDeadLetters",
        "Replay a vendor's dead letters, or all",
        "dead-letters",
        "admin",
        {202: (answers.ReplayReport, "the letters dead when asked were replayed")},
        (400, 401, 403, 408, 413, 415, 422, 503),
        (answers.ReplayVendor, answers.ReplayAll),
    ),
    Operation(
        "DELETE",
        "/v1/dead-letters",
        "purgeDeadLetters",
        "Drop a vendor's dead letters, or all, from the queue",
        "dead-letters",
        "admin",
        {200: (answers.PurgeReport, "dropped from the queue (the events stay `dead`)")},
        (401, 403, 422, 503),
        parameters=(
            _VENDOR_FILTER,
            _query_parameter(
                "all", {"type": "string", "enum": ["true"]}, "every letter (instead of vendor)"
            ),
        ),
        description="Exactly one of `vendor` or `all=true` (else 422).",
    ),
    Operation(
        "GET",
        "/v1/dead-letters/{id}",
        "getDeadLetter",
        "One dead letter with its attempts and its event (secrets masked)",
        "dead-letters",
        "admin",
        {200: (answers.DeadLetterDetail, "the letter")},
        (401, 403, 404, 410, 422, 503),
        parameters=(_DEAD_LETTER_ID,),
    ),
    Operation(
        "DELETE",
        "/v1/dead-letters/{id}",
        "purgeDeadLetter",
        "Drop one dead letter from the queue (its event stays `dead`)",
        "dead-letters",
        "admin",
        {200: (answers.Purged, "dropped")},
        (401, 403, 404, 422, 503),
        parameters=(_DEAD_LETTER_ID,),
    ),
    Operation(
        "POST",
        "/v1/dead-letters/{id}/replay",
        "replayDeadLetter",
        "Send one dead letter again",
        "dead-letters",
        "admin",
        {202: (answers.Replayed, "back in its pair's queue, 0 attempts")},
        (401, 403, 404, 409, 410, 422, 503),
        parameters=(_DEAD_LETTER_ID,),
        description="No body is read.",
    ),
    Operation(
        "GET",
        "/v1/vendors",
        "getVendors",
        "Each vendor instance: circuit, rate, calls, vendor-reported usage, dead letters",
        "vendors",
        "admin",
        {200: (answers.Vendors, "by instance name")},
        (401, 403, 422, 503),
    ),
    Operation(
        "DELETE",
        "/v1/users/{user_id}/ordering",
        "resetOrdering",
        "Clear a user's ordering state, so the next change of each field is sent",
        "ordering",
        "admin",
        {200: (answers.OrderingReset, "cleared (also when there was nothing to clear)")},
        (401, 403, 404, 409, 422, 503),
        parameters=(
            _USER_ID,
            _query_parameter(
                "vendor",
                CONFIGURED_VENDOR,
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
    Operation(
        "GET",
        "/healthz",
        "healthz",
        "Liveness",
        "operations",
        "none",
        {200: (answers.Health, "the process serves")},
    ),
    Operation(
        "GET",
        "/readyz",
        "readyz",
        "Readiness: Redis reachable, config loaded",
        "operations",
        "none",
        {200: (answers.Ready, "ready")},
        (503,),
    ),
    Operation(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics, computed from Redis at scrape time",
        "operations",
        "none",
        {200: (None, "Prometheus text format 0.0.4")},
        (503,),
        content={200: {"text/plain": {"schema": {"type": "string"}}}},
    ),
    Operation(
        "GET",
        PATH,
        "openapi",
        "This document",
        "operations",
        "none",
        {200: (None, "OpenAPI 3.1")},
        content={200: {"application/json": {"schema": {"type": "object"}}}},
    ),
)


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the document refers to, with the side it is on."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(answers.ErrorBody, "serialization")]
    for operation in OPERATIONS:
        for model, _ in operation.answers.values():
            if model is not None:
                wanted.append((model, "serialization"))
        if isinstance(operation.body, tuple):
            wanted += [(model, "validation") for model in operation.body]
        elif operation.body == "batch":
            wanted.append((Event, "validation"))
        elif operation.body is not None:
            wanted.append((operation.body, "validation"))
    return list(dict.fromkeys(wanted))


def _request_body(operation: Operation, refs: dict[Any, Any], settings: Settings) -> Any:
    body = operation.body
    if body is None:
        return None
    if body == "batch":
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.gateway.batch_max_events,
                    "items": refs[(Event, "validation")],
                }
            },
        }
    elif isinstance(body, tuple):
        schema = {"oneOf": [refs[(model, "validation")] for model in body]}
    else:
        schema = refs[(body, "validation")]
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(operation: Operation, refs: dict[Any, Any], settings: Settings) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (model, meaning) in sorted(operation.answers.items()):
        answer: dict[str, Any] = {"description": meaning}
        if model is not None:
            answer["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        else:
            answer["content"] = operation.content[status]
        responses[str(status)] = answer
    error_schema = refs[(answers.ErrorBody, "serialization")]
    for status in operation.errors:
        error: dict[str, Any] = {
            "description": ERRORS[status],
            "content": {"application/json": {"schema": error_schema}},
        }
        if status in _ERROR_HEADERS:
            error["headers"] = _ERROR_HEADERS[status]
        responses[str(status)] = error
    doc: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": SECURITY[operation.auth],
        "responses": responses,
    }
    if operation.description:
        doc["description"] = operation.description
    if operation.parameters:
        configured = {"type": "string", "enum": list(settings.vendors)}
        doc["parameters"] = [
            {**p, "schema": configured} if p["schema"] is CONFIGURED_VENDOR else p
            for p in operation.parameters
        ]
    request_body = _request_body(operation, refs, settings)
    if request_body is not None:
        doc["requestBody"] = request_body
    return doc


def _closed_keys(schema: Any) -> None:
    """pydantic describes a dict with constrained keys (`dict[VendorInstance, ...]`) by
    `patternProperties` alone, which lets any other key through; it validates the keys, so
    other keys are refused: say so (`additionalProperties: false`)."""
    if isinstance(schema, dict):
        if "patternProperties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _closed_keys(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed_keys(value)


def build_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a gateway running with `settings`."""
    refs, top = models_json_schema(_models(), ref_template=REF)
    _closed_keys(top)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, refs, settings
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "usersync gateway",
            "version": core.__version__,
            "description": "Canonical user-change events in; delivery to vendor APIs out. "
            "Every error is `ErrorBody`. Unknown fields are refused everywhere (and unknown "
            "query parameters by the dead-letter and vendor calls). aiohttp also answers "
            "HEAD for every GET, and 405 with `Allow` for a method a path does not have.",
        },
        "tags": [
            {"name": "events", "description": "sources post events and read their status"},
            {"name": "links", "description": "identity links (admin token)"},
            {"name": "dead-letters", "description": "the dead-letter queue (admin token)"},
            {"name": "vendors", "description": "vendor instance state (admin token)"},
            {"name": "ordering", "description": "users' ordering state (admin token)"},
            {"name": "operations", "description": "health, readiness, metrics (no token)"},
        ],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "sourceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a source's `token` (sources[].token in the config)",
                },
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`gateway.admin_token`",
                },
                "signatureSource": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SOURCE_HEADER,
                    "description": "request signature, part 1 of 3: the source's name. The "
                    "three headers go together, instead of (or with) the source's bearer "
                    "token; a source with `require_signature` must sign.",
                },
                "signatureTimestamp": {
                    "type": "apiKey",
                    "in": "header",
                    "name": TIMESTAMP_HEADER,
                    "description": "request signature, part 2 of 3: unix seconds, within "
                    "`gateway.signature_skew_s` of the gateway's clock",
                },
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": f"request signature, part 3 of 3: `{SCHEME}<hex "
                    'HMAC-SHA256(hmac_secret, timestamp + "." + exact body bytes)>`; each '
                    "signature is accepted once",
                },
            },
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


def add_routes(app: web.Application) -> None:
    """Serve the document, built now from the app's settings (so a model that cannot be
    described fails at start, not at the first request)."""
    app[DOCUMENT] = orjson.dumps(build_document(app[SETTINGS]))
    app.router.add_get(PATH, get_openapi)
