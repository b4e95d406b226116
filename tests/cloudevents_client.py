"""A client of the gateway's CloudEvents ingress built with the `cloudevents` SDK (2.x core
API), for tests/test_cloudevents*.py: events as the SDK writes them, and broken ones made
from those."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from config.settings import Settings
from gateway.cloudevents import BATCH, STRUCTURED
from tests.conftest import HRIS_TOKEN, IDP_TOKEN, Gateway, make_settings

CRM_TOKEN = "test-crm-token-0123456789"
HRIS_SECRET = "test-hris-hmac-secret-0123"
TIME = dt.datetime(2026, 11, 22, 10, 15, tzinfo=dt.UTC)
JSON_FORMAT = JSONFormat()
BATCH_PATH = "/v1/events:batch"


def cloudevents_settings(redis_url: str, sandbox_url: str) -> Settings:
    """The test settings; hris may sign, and crm's CloudEvent types start with com.example."""
    return make_settings(
        redis_url,
        sandbox_url,
        sources=[
            {"name": "hris", "token": HRIS_TOKEN, "hmac_secret": HRIS_SECRET},
            {"name": "idp", "token": IDP_TOKEN, "allowed_targets": ["fleet-eu"]},
            {"name": "crm", "token": CRM_TOKEN, "cloudevents_type_prefix": "com.example."},
        ],
    )


def user_data(email: str = "ada@example.com", user_id: str = "emp-42") -> dict[str, Any]:
    """The `data` of a CloudEvent: the rest of a v1 event, for the Fleet demo user."""
    return {
        "user": {"id": user_id, "external_ids": {"fleet-eu": "42"}},
        "changes": {"email": email},
        "targets": ["fleet-eu"],
    }


def cloud_event(
    event_id: str = "ce-1",
    data: Any = None,
    event_type: str = "user.updated",
    **attributes: Any,
) -> CloudEvent:
    """A CloudEvent as the SDK builds it (JSON data, a fixed time in the past)."""
    return CloudEvent(
        {
            "id": event_id,
            "source": "https://hr.example.com/hris",
            "type": event_type,
            "time": TIME,
            "datacontenttype": "application/json",
            **attributes,
        },
        user_data() if data is None else data,
    )


def structured(**changes: Any) -> HTTPMessage:
    """A structured CloudEvent the SDK wrote, with top-level members replaced or (None)
    removed: how a broken one is made."""
    body = orjson.loads(to_structured(cloud_event(), JSON_FORMAT).body)
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return HTTPMessage({"Content-Type": STRUCTURED}, orjson.dumps(body))


def binary(headers: dict[str, str | None], body: bytes | None = None) -> HTTPMessage:
    """A binary-mode CloudEvent the SDK wrote, its headers replaced or (None) removed."""
    message = to_binary(cloud_event(), JSON_FORMAT)
    sent = {name: value for name, value in message.headers.items() if name not in headers}
    sent.update({name: value for name, value in headers.items() if value is not None})
    return HTTPMessage(sent, message.body if body is None else body)


async def send(
    gateway: Gateway,
    message: HTTPMessage,
    token: str | None = HRIS_TOKEN,
    path: str = "/v1/events",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST an HTTP message as the SDK made it (its exact headers and bytes)."""
    sent = {**message.headers, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with gateway.http.post(gateway.url + path, data=message.body, headers=sent) as answer:
        return answer.status, orjson.loads(await answer.read())


def batch_message(events: list[CloudEvent], *extra: Any) -> HTTPMessage:
    """A JSON batch: the SDK's structured form of each event, in one array (`extra` raw)."""
    items = [orjson.loads(JSON_FORMAT.write(item)) for item in events] + list(extra)
    return HTTPMessage({"Content-Type": BATCH}, orjson.dumps(items))


def paths(answer: Any) -> list[str]:
    return [problem["path"] for problem in answer["error"]["details"]]
