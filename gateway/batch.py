"""`POST /v1/events:batch`: many events in one request, each accepted or refused on its own.

The request is authenticated once (as `POST /v1/events` is: bearer token or signature over the
whole body) and its envelope `{"events": [...]}` checked; then each event goes through what
`POST /v1/events` does to one (schema, source, targets, its own size limit) and gets the
status and body that call would have answered. The accepted ones are stored in one pipeline
(`Store.ingest_many`), in order, so a repeated event id is a duplicate of its first
occurrence. A Redis failure is a 503 for the whole batch: no result is reported for an event
whose storage is not known (a retry answers those already stored as duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from config.ingress import SourceSettings
from config.settings import Settings
from core.event import Event
from core.links import LinkConflict
from core.ports import VendorFieldsCheck
from core.secrets import SecretBox
from core.status import utc_now_iso
from core.store import IngestRecord
from gateway import answers, cloudevents
from gateway.auth import check_headers, enforce_source_rate, source_of, verify_body
from gateway.body import MAX_ARRAY_ITEMS, parse_json_object, read_json_body
from gateway.cloudevents_schema import BATCH_BODY
from gateway.context import (
    SECRET_BOX,
    SETTINGS,
    SOURCE_RATES,
    STORE,
    VENDOR_FIELDS,
    json_response,
)
from gateway.errors import ApiError
from gateway.ingest import build_record, link_conflict, log_link_changes, validated_event
from gateway.instruments import GATEWAY_METRICS
from gateway.routing import EVENTS_TAG, JSON, Answer, Ref, Route, Schema
from gateway.storage import STORAGE

log = structlog.get_logger("usersync.gateway")

PATH = "/v1/events:batch"
BODY_CAP = 16 * 1024 * 1024
"""The largest batch body, whatever `max_body_bytes * batch_max_events` comes to."""


def body_limit(settings: Settings) -> int:
    """A batch may be as large as its events could be one by one, up to `BODY_CAP`."""
    gateway = settings.gateway
    return min(gateway.max_body_bytes * gateway.batch_max_events, BODY_CAP)


def _events(body: dict[str, Any], settings: Settings) -> list[Any]:
    """The `events` array of a batch body, else a 422 naming what is wrong."""
    most = settings.gateway.batch_max_events
    problems = [
        {"path": name, "message": "unknown field"} for name in sorted(set(body) - {"events"})
    ]
    events = body.get("events")
    if "events" not in body:
        problems.append({"path": "events", "message": "field required"})
    elif not isinstance(events, list) or not 1 <= len(events) <= most:
        problems.append({"path": "events", "message": f"expected an array of 1-{most} events"})
    if problems or not isinstance(events, list):
        raise ApiError(
            422,
            "schema_violation",
            f'the body must be {{"events": [...]}} with 1-{most} events',
            problems,
        )
    return events


Validate = Callable[[Any, Settings, SourceSettings, VendorFieldsCheck], tuple[Event, list[str]]]


def checked_event(
    item: Any,
    settings: Settings,
    source: SourceSettings,
    box: SecretBox,
    check_fields: VendorFieldsCheck,
    validate: Validate = validated_event,
) -> IngestRecord:
    """One event of a batch checked as `POST /v1/events` checks its body once read: its size
    (413), an object (422), the schema (422), the source (403), the targets (422/403), its
    secrets (422); what the store writes for it. `validate` reads a v1 event or a CloudEvent."""
    limit = settings.gateway.max_body_bytes
    if len(orjson.dumps(item)) > limit:
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes", {"limit": limit})
    event, targets = validate(item, settings, source, check_fields)
    return build_record(event, targets, source, box)


def _given_id(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _as_is(exc: ApiError) -> ApiError:
    return exc


def _refused(
    source: SourceSettings, index: int, event_id: str | None, exc: ApiError
) -> dict[str, Any]:
    """The result of an event refused on its own (logged), as `POST /v1/events` answers it."""
    log.info(
        "event_refused",
        source=source.name,
        index=index,
        event_id=event_id,
        status=exc.status,
        code=exc.code,
        outcome="refused",
    )
    return {"index": index, "event_id": event_id, "status": exc.status, "body": exc.body()}


async def post_events_batch(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    # The same order of refusals as `POST /v1/events` (see `routes._validated_event`).
    claim = check_headers(request, settings, admin_allowed=False)  # before a byte of body
    of_cloudevents = cloudevents.is_batch(request)  # 415 for one CloudEvent, before the body
    raw = await read_json_body(request, body_limit(settings))
    source = source_of(await verify_body(claim, settings, raw, store.redis))
    request.app[STORAGE].check()  # 503 storage_full, as for one event
    if of_cloudevents:
        events = cloudevents.batch_events(raw, settings)
    else:
        envelope = parse_json_object(
            raw, max(MAX_ARRAY_ITEMS, settings.gateway.batch_max_events + 1)
        )
        events = _events(envelope, settings)
    await enforce_source_rate(request.app[SOURCE_RATES], source, cost=len(events))

    box = request.app[SECRET_BOX]
    check_fields = request.app[VENDOR_FIELDS]
    results: list[dict[str, Any]] = []
    records: list[IngestRecord] = []
    accepted_at: list[int] = []  # the index in `results` of each record
    validate = cloudevents.validated_cloudevent if of_cloudevents else validated_event
    given_id = cloudevents.given_id if of_cloudevents else _given_id
    speak = cloudevents.speak if of_cloudevents else _as_is  # the paths in its refusals
    for index, item in enumerate(events):
        try:
            record = checked_event(item, settings, source, box, check_fields, validate)
        except ApiError as exc:
            results.append(_refused(source, index, given_id(item), speak(exc)))
            continue
        accepted_at.append(index)
        records.append(record)
        results.append({"index": index, "event_id": record.event_id})

    stored = await store.ingest_many(records, utc_now_iso())
    counts = {"accepted": 0, "duplicates": 0, "refused": len(events) - len(records)}
    for index, record, ingested in zip(accepted_at, records, stored, strict=True):
        if isinstance(ingested, LinkConflict):  # refused by the script: nothing stored
            counts["refused"] += 1
            refusal = speak(link_conflict(ingested))
            results[index] = _refused(source, index, record.event_id, refusal)
            continue
        log_link_changes(record, ingested)
        created, answer = ingested
        body = orjson.loads(answer)
        if created:
            counts["accepted"] += 1
            results[index].update(status=202, body=body)
            log.info(
                "event_accepted",
                source=source.name,
                index=index,
                event_id=record.event_id,
                user_id=record.user_id,
                targets=list(record.targets),
                outcome="accepted",
            )
        else:
            counts["duplicates"] += 1
            results[index].update(status=200, body={**body, "duplicate": True})
            log.info(
                "event_duplicate",
                source=source.name,
                index=index,
                event_id=record.event_id,
                outcome="duplicate",
            )
    log.info("batch_ingested", source=source.name, events=len(events), **counts)
    request.app[GATEWAY_METRICS].ingested(
        source.name, counts["accepted"], counts["duplicates"], counts["refused"]
    )
    return json_response({"results": results, **counts})


def _batch_schema(ref: Ref, settings: Settings) -> dict[str, Any]:
    """The envelope `_events` checks, its events described as `POST /v1/events` takes one."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.gateway.batch_max_events,
                "items": ref(Event),
            }
        },
    }


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        PATH,
        post_events_batch,
        "postEventsBatch",
        "Accept many events, each accepted or refused on its own",
        EVENTS_TAG,
        "source",
        {
            200: Answer(
                "every event's result, in order: the status and body `POST /v1/events` "
                "would have answered for it (also when some or all are refused)",
                answers.BatchAnswer,
            )
        },
        (400, 401, 403, 408, 413, 415, 422, 429, 503),
        {JSON: Schema(_batch_schema, (Event,)), **BATCH_BODY},
        description="1 to `gateway.batch_max_events` events. The body may be "
        "`max_body_bytes * batch_max_events` (at most 16 MiB), each event `max_body_bytes` "
        "(else that event is a 413). The request is authenticated once; a 4xx here concerns "
        "the whole request. An event that does not match the `Event` schema is refused on "
        "its own (its result's status is 422), the others are still accepted. All accepted "
        "events are stored in one round trip, in order: a repeated `event_id` is a duplicate "
        "(200) of its first occurrence. A 503 means the outcome of the batch is unknown: "
        "send it again (events already stored answer 200, duplicate). Or a JSON array of "
        "structured CloudEvents 1.0 (`application/cloudevents-batch+json`), each read as "
        "`POST /v1/events` reads one; a result's `event_id` is then the CloudEvent's `id`.",
    ),
)
"""`POST /v1/events:batch` (`gateway.routing`)."""
