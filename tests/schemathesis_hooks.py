"""Schemathesis hooks for tests/test_openapi_schemathesis.py (loaded by the CLI through
`SCHEMATHESIS_HOOKS`): the one rule of an event a JSON schema cannot state.

`occurred_at` may be at most `gateway.max_future_skew_s` ahead of the gateway's clock; the
document says so in words, so the generator, which reads only the schema, makes times up to
year 9999. A generated time in the future is moved to year 2000 (same month, day and time,
still valid: 2000 is a leap year), so a valid event stays valid and is accepted; anything
else, invalid values included, is sent as generated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis
from pydantic import AwareDatetime, TypeAdapter, ValidationError

_TIME: TypeAdapter[dt.datetime] = TypeAdapter(AwareDatetime)


def _in_the_past(event: Any, key: str = "occurred_at") -> None:
    if not isinstance(event, dict) or not isinstance(event.get(key), str):
        return
    value = event[key]
    try:
        when = _TIME.validate_python(value)
    except ValidationError:
        return
    if when > dt.datetime.now(dt.UTC) and value[:4].isdigit():
        event[key] = "2000" + value[4:]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Events of `POST /v1/events`, `:preview` and `:batch` (CloudEvents too) take place in
    the past."""
    body = case.body
    if not case.operation.path.startswith("/v1/events"):
        return
    if isinstance(body, list) or (isinstance(body, dict) and "specversion" in body):
        for cloudevent in body if isinstance(body, list) else [body]:  # its time: occurred_at
            _in_the_past(cloudevent, "time")
        return
    if not isinstance(body, dict):
        return
    events = body.get("events") if case.operation.path.endswith(":batch") else [body]
    for event in events if isinstance(events, list) else ():
        _in_the_past(event)


def _holds_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_null(item) for item in value.values())
    return value is None


@schemathesis.hook
def filter_query(context: Any, query: Any) -> bool:
    """A query parameter whose value is null is not sent at all (the HTTP client leaves it
    out), so such a case would not be the request it claims to be (a `scope` object of
    `DELETE /v1/dead-letters` with an extra member that is null is sent as a valid one)."""
    return not isinstance(query, dict) or not _holds_null(query)
