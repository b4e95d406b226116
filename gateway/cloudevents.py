"""CloudEvents 1.0 on `POST /v1/events` (and its preview) and `POST /v1/events:batch`.

A CloudEvent is turned into the dict of a v1 event, which then goes through exactly what a
v1 body goes through (`gateway.ingest.validated_event`, the store, the answers): same
statuses, same codes, same duplicates. Only the paths of a 4xx speak CloudEvents (`id`,
`time`, `type`, `data.user.id`; `attribute_path`).

Modes, from the HTTP protocol binding: *structured*, `Content-Type:
application/cloudevents+json`, the body is the whole event; *binary*, a `ce-specversion`
header (with `ce-id`, `ce-source`, `ce-type`, `ce-time`, ... percent-encoded), the body is
the event's `data` and its Content-Type the `datacontenttype` (JSON, else 415 as for any
body); *batched*, `application/cloudevents-batch+json` on the batch route, a JSON array of
structured events. A request is any of these only by its Content-Type or that one header,
so a plain v1 body pays one string compare and one header lookup (`event_mode`).

Mapping: `id` -> `event_id`, `time` -> `occurred_at` (required: a missing one is a 422 at
`time`), `type` less the source's `cloudevents_type_prefix` -> `type` (one of the three
v1 types), `data` -> everything else of the v1 event (`user`, `changes`, `vendor_fields`,
`targets`, and any field the v1 model accepts; nothing the attributes carry). `source` is
required and is not the event's source: the credentials are. It is stored nowhere; one
naming another configured source is refused (403 `source_mismatch`, as a v1 `source` would
be). `subject` and `dataschema` (non-empty strings if given) and extension attributes are
ignored: `data.user.id` names the user. docs/decisions.md (CloudEvents) has the reasons.

The `cloudevents` SDK is the tests' client, not the parser: its receive path fills a missing
`id` and `time` (a fresh uuid and now: a retry would be a new event, a missing time would
pass), parses with the unbounded `json` module (deep nesting is a RecursionError) and keeps
malformed binary data as a string. Here the body is parsed by orjson under the limits of
every body (`gateway.body`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, get_args
from urllib.parse import unquote

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDictProxy

from config.ingress import SourceSettings
from config.settings import Settings
from core.event import Event, EventType
from core.ports import VendorFieldsCheck
from gateway.body import MAX_ARRAY_ITEMS, not_an_object, parse_json_object, shape_problem
from gateway.errors import ApiError, schema_error
from gateway.ingest import validated_event

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPECVERSION = "1.0"
HEADER_PREFIX = "ce-"
SPECVERSION_HEADER = "ce-specversion"
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

Mode = Literal["structured", "binary"]

FROM_ATTRIBUTES = {"id": "event_id", "time": "occurred_at", "type": "type", "source": "source"}
"""CloudEvent attribute -> the v1 field it gives (`source` only to be refused if foreign)."""
ATTRIBUTE_OF = {field: attribute for attribute, field in FROM_ATTRIBUTES.items()}
ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
)
"""The context attributes CloudEvents 1.0 defines (any other is an extension: ignored)."""
_OWN_PATHS = ATTRIBUTES | {"data", "data_base64", "(body)"}
"""Where a CloudEvent's problems are: an attribute, `data...`, or the body as a whole."""
EXTENSION_NAME = "^[a-z0-9]{1,64}$"
"""An extension attribute's name (the spec: lower-case letters and digits; 20 or fewer
advised, 64 here)."""
INTEGER_RANGE = (-(2**31), 2**31 - 1)
"""The CloudEvents Integer type: what an extension attribute's number may be."""


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


JSON_MEDIA_TYPE = (
    f"^{_any_case('application')}/([A-Za-z0-9!#$&^_.+-]+\\+)?{_any_case('json')}"
    r"([ \t]*;.*)?$"
)
"""A `datacontenttype` that says JSON (any case, parameters allowed): one pattern for the
check and `/openapi.json`, written for both regex dialects."""


class CloudEventError(ApiError):
    """An error whose paths already name the CloudEvent's attributes: never renamed again (an
    extension attribute's name could otherwise be taken for a v1 field's)."""


def _refused(problems: list[dict[str, str]]) -> CloudEventError:
    error = schema_error(problems)
    return CloudEventError(error.status, error.code, error.message, error.details)


def _unsupported(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message)


def event_mode(request: web.Request) -> Mode | None:
    """How `POST /v1/events` carries this request's event: None for a plain v1 body (one
    compare and one header lookup); 415 for a batch's media type, before the body is read."""
    content_type = request.content_type
    if content_type == STRUCTURED:
        return "structured"
    if content_type == BATCH:
        raise _unsupported(f"a batch of CloudEvents ({BATCH}) is posted to /v1/events:batch")
    if SPECVERSION_HEADER in request.headers:
        return "binary"
    return None


def is_batch(request: web.Request) -> bool:
    """Whether `POST /v1/events:batch` carries CloudEvents; 415 for one CloudEvent (structured
    or binary), which goes to `POST /v1/events`, before the body is read."""
    content_type = request.content_type
    if content_type == BATCH:
        structlog.contextvars.bind_contextvars(cloudevent="batch")
        return True
    if content_type == STRUCTURED or SPECVERSION_HEADER in request.headers:
        raise _unsupported(
            f"one CloudEvent is posted to /v1/events; a batch of them here is sent as {BATCH}"
        )
    return False


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8 JSON", str(exc)) from exc


def _shape(value: Any, max_items: int, prefix: str) -> None:
    """422 for a value nested too deep or with too long an array (`gateway.body` limits)."""
    problem = shape_problem(value, max_items)
    if problem is not None:
        path = problem["path"]
        problem["path"] = prefix if path == "(body)" else f"{prefix}.{path}".strip(".")
        raise CloudEventError(422, "schema_violation", "the body's shape is refused", [problem])


def binary_event(headers: CIMultiDictProxy[str], raw: bytes) -> dict[str, Any]:
    """A binary-mode request as the structured event it stands for: each `ce-` header an
    attribute (percent-decoded), the body its `data` (none if empty)."""
    event: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(HEADER_PREFIX):
            continue
        attribute = lower[len(HEADER_PREFIX) :]
        problem = "given more than once" if attribute in event else None
        try:
            event[attribute] = unquote(value, errors="strict")
        except UnicodeDecodeError:
            problem = "not UTF-8 once percent-decoded"
        if problem is not None:
            raise _refused([{"path": attribute, "message": problem}])
    if raw.strip():
        data = _loads(raw)
        _shape(data, MAX_ARRAY_ITEMS, "data")
        event["data"] = data
    return event


def batch_events(raw: bytes, settings: Settings) -> list[Any]:
    """The items of an `application/cloudevents-batch+json` body: a JSON array of 1 to
    `batch_max_events` structured events; 400, or 422 for anything else."""
    most = settings.gateway.batch_max_events
    value = _loads(raw)
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise ApiError(
            422,
            "schema_violation",
            f"the body must be a JSON array of 1-{most} CloudEvents",
            [{"path": "(body)", "message": f"expected an array of 1-{most} CloudEvents"}],
        )
    _shape(value, max(MAX_ARRAY_ITEMS, most + 1), "")
    return value


def _type_problem(given: Any, prefix: str | None) -> str | None:
    """What is wrong with a CloudEvent's `type` for a source with `prefix`, or None."""
    if given is None:
        return "Field required"
    wanted = [f"{prefix or ''}{name}" for name in EVENT_TYPES]
    if isinstance(given, str) and given in wanted:
        return None
    return "must be one of " + ", ".join(wanted)


def _data_problems(data: Any) -> list[dict[str, str]]:
    if isinstance(data, dict):
        return [
            {
                "path": f"data.{key}",
                "message": f"given by the CloudEvent's {ATTRIBUTE_OF[key]} attribute, not data"
                if key in ATTRIBUTE_OF
                else "Extra inputs are not permitted",
            }
            for key in data
            if key in ATTRIBUTE_OF or key in _OWN_PATHS
        ]
    if data is None:
        return [{"path": "data", "message": "Field required: the event's user and changes"}]
    return [{"path": "data", "message": "expected an object"}]


def _attribute_problems(event: Mapping[str, Any], source: SourceSettings) -> list[dict[str, str]]:
    """What only a CloudEvent can get wrong; the rest is left to the v1 model."""
    problems: list[dict[str, str]] = []
    type_problem = _type_problem(event.get("type"), source.cloudevents_type_prefix)
    if type_problem is not None:
        problems.append({"path": "type", "message": type_problem})
    if not isinstance(event.get("source"), str) or not event["source"]:
        problems.append({"path": "source", "message": "required: a non-empty URI-reference"})
    content_type = event.get("datacontenttype")
    if "datacontenttype" in event and (
        not isinstance(content_type, str) or not re.fullmatch(JSON_MEDIA_TYPE, content_type)
    ):
        problems.append(
            {"path": "datacontenttype", "message": "must be application/json: data is JSON"}
        )
    if "data_base64" in event:
        problems.append({"path": "data_base64", "message": "data must be a JSON object"})
    problems += [
        {"path": name, "message": "if given, a non-empty string"}
        for name in ("subject", "dataschema")
        if name in event and (not isinstance(event[name], str) or not event[name])
    ]
    problems += _data_problems(event.get("data"))
    problems += [
        {"path": name, "message": problem}
        for name, value in event.items()
        if name not in _OWN_PATHS
        for problem in [_extension_problem(name, value)]
        if problem is not None
    ]
    return problems


def _extension_problem(name: str, value: Any) -> str | None:
    """An extension attribute is ignored, but must be one: a name of lower-case letters and
    digits, a value of the CloudEvents type system (text, boolean, 32-bit integer; null is
    absent)."""
    if not re.fullmatch(EXTENSION_NAME, name):
        return "not a CloudEvents attribute name (lower-case letters and digits)"
    if value is None or isinstance(value, str | bool):
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if whole and INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
        return None
    return "an extension attribute is text, a boolean or a 32-bit integer"


def v1_body(
    event: Mapping[str, Any], source: SourceSettings, settings: Settings
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The v1 event dict a CloudEvent stands for, and its CloudEvent-only problems. A
    specversion other than 1.0 is refused alone: the rest may mean something else there."""
    specversion = event.get("specversion")
    if specversion != SPECVERSION:
        message = "Field required" if specversion is None else "must be 1.0 (CloudEvents 1.0)"
        raise _refused([{"path": "specversion", "message": message}])
    problems = _attribute_problems(event, source)
    data = event.get("data")
    body = {
        key: value
        for key, value in (data.items() if isinstance(data, dict) else ())
        if key not in ATTRIBUTE_OF and key not in _OWN_PATHS
    }
    for attribute in ("id", "time"):
        if attribute in event:
            body[FROM_ATTRIBUTES[attribute]] = event[attribute]
    prefix = source.cloudevents_type_prefix or ""
    if not any(problem["path"] == "type" for problem in problems):
        body["type"] = event["type"][len(prefix) :]
    # The credentials name the source. A CloudEvent source that is a configured source's name
    # goes to the v1 check (403 source_mismatch for another one); any other is the producer's
    # URI, stored nowhere.
    if settings.source(str(event.get("source"))) is not None:
        body["source"] = event["source"]
    return body, problems


def validated_cloudevent(
    event: Any, settings: Settings, source: SourceSettings, check_fields: VendorFieldsCheck
) -> tuple[Event, list[str]]:
    """`gateway.ingest.validated_event` for a structured CloudEvent: its own problems and
    those of the v1 event it gives in one 422 (schema problems before 403, as for v1)."""
    if not isinstance(event, dict):
        raise not_an_object()
    body, problems = v1_body(event, source, settings)
    try:
        validated = validated_event(body, settings, source, check_fields)
    except ApiError as exc:
        speak(exc)
        if not problems:
            raise
        if exc.code == "schema_violation" and isinstance(exc.details, list):
            # Without data as an object, the v1 model's word on data is noise ("user: Field
            # required"); what it says of the attributes (id, time) still holds.
            problems += [
                problem
                for problem in exc.details
                if isinstance(event.get("data"), dict)
                or str(problem.get("path")).partition(".")[0] in ("id", "time")
            ]
        raise _refused(problems) from exc
    if problems:
        raise _refused(problems)
    return validated


def validated(
    mode: Mode,
    request: web.Request,
    raw: bytes,
    settings: Settings,
    source: SourceSettings,
    check_fields: VendorFieldsCheck,
) -> tuple[Event, list[str]]:
    """The event of a CloudEvent request of `mode`, read from its headers and `raw` body."""
    structlog.contextvars.bind_contextvars(cloudevent=mode)
    if mode == "binary":
        event: Any = binary_event(request.headers, raw)
    else:
        try:
            event = parse_json_object(raw)
        except ApiError as exc:  # its paths are the CloudEvent's members already
            raise CloudEventError(exc.status, exc.code, exc.message, exc.details) from exc
    return validated_cloudevent(event, settings, source, check_fields)


def attribute_path(path: str) -> str:
    """A problem's path as the CloudEvent names it: `event_id` -> `id`, `occurred_at` ->
    `time`, any other v1 field -> `data.<field>`; a CloudEvent's own path stays (so this is
    idempotent)."""
    head, dot, rest = path.partition(".")
    if head in _OWN_PATHS:
        return path
    if head in ATTRIBUTE_OF:
        return ATTRIBUTE_OF[head] + dot + rest
    return f"data.{path}"


def _rename(details: Any) -> None:
    """The paths in an error's `details` (a list of problems, or `{"paths": [...]}`) as the
    CloudEvent names them, in place."""
    if isinstance(details, list):
        for problem in details:
            if isinstance(problem, dict) and isinstance(problem.get("path"), str):
                problem["path"] = attribute_path(problem["path"])
    elif isinstance(details, dict) and isinstance(details.get("paths"), list):
        details["paths"] = [attribute_path(str(path)) for path in details["paths"]]


def speak(exc: ApiError) -> ApiError:
    """`exc` with its paths as the CloudEvent names them (in place; one raised by this module
    already does)."""
    if not isinstance(exc, CloudEventError):
        _rename(exc.details)
    return exc


def is_cloudevent(request: web.Request) -> bool:
    return request.content_type == STRUCTURED or SPECVERSION_HEADER in request.headers


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def speaks_cloudevents(handler: Handler) -> Handler:
    """`handler`, its errors for a CloudEvent request naming the CloudEvent's paths (the
    schema's, the secrets', the link conflicts': all that follow the v1 validation)."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            if is_cloudevent(request):
                speak(exc)
            raise

    return handle


def given_id(item: Any) -> str | None:
    """A batch item's CloudEvent id, for its result (None if it has none)."""
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None
