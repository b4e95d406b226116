"""CloudEvents the gateway refuses, each with the 4xx the v1 body it stands for would get
(or its own, for what only a CloudEvent can get wrong), the paths named as the CloudEvent has
them, nothing stored; built from what the `cloudevents` SDK writes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
from cloudevents.core.v03.event import CloudEvent as CloudEvent03
from redis.asyncio import Redis

from config.settings import Settings
from gateway.cloudevents import BATCH, STRUCTURED
from tests.cloudevents_client import (
    BATCH_PATH,
    JSON_FORMAT,
    batch_message,
    binary,
    cloud_event,
    cloudevents_settings,
    paths,
    send,
    structured,
    user_data,
)
from tests.conftest import HRIS_TOKEN, IDP_TOKEN, Gateway, Sandbox, event, stored_keys
from usersync.redis_server import EmbeddedRedis


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    """hris may sign; crm's CloudEvent types start with com.example."""
    return cloudevents_settings(redis_server.url, sandbox.url)


async def test_prefixed_type_is_refused_without_a_prefix(gateway: Gateway) -> None:
    """A source without a prefix takes the bare types only."""
    message = to_structured(cloud_event(event_type="com.example.user.updated"), JSON_FORMAT)
    status, answer = await send(gateway, message)
    assert (status, paths(answer)) == (422, ["type"]), answer


BAD_STRUCTURED: list[tuple[str, HTTPMessage, int, str, list[str]]] = [
    (
        "specversion 0.3",
        to_structured(
            CloudEvent03({"id": "x", "source": "s", "type": "user.updated"}, {}), JSON_FORMAT
        ),
        422,
        "schema_violation",
        ["specversion"],
    ),
    ("no specversion", structured(specversion=None), 422, "schema_violation", ["specversion"]),
    ("no id", structured(id=None), 422, "schema_violation", ["id"]),
    ("no time", structured(time=None), 422, "schema_violation", ["time"]),
    ("no type", structured(type=None), 422, "schema_violation", ["type"]),
    ("unknown type", structured(type="user.renamed"), 422, "schema_violation", ["type"]),
    ("no source", structured(source=None), 422, "schema_violation", ["source"]),
    ("bad time", structured(time="22/11/2026"), 422, "schema_violation", ["time"]),
    ("bad id", structured(id="a b"), 422, "schema_violation", ["id"]),
    ("data not an object", structured(data=[1, 2]), 422, "schema_violation", ["data"]),
    ("no data", structured(data=None), 422, "schema_violation", ["data"]),
    (
        "datacontenttype not JSON",
        structured(datacontenttype="text/xml"),
        422,
        "schema_violation",
        ["datacontenttype"],
    ),
    (
        "data_base64",
        structured(data=None, data_base64="e30="),
        422,
        "schema_violation",
        ["data_base64", "data"],
    ),
    (
        "event_id in data",
        structured(data={**user_data(), "event_id": "x", "time": "y"}),
        422,
        "schema_violation",
        ["data.event_id", "data.time"],
    ),
    ("subject not text", structured(subject=7), 422, "schema_violation", ["subject"]),
    (
        "extension name not one",
        structured(**{"Trace-Parent": "00-ab"}),
        422,
        "schema_violation",
        ["Trace-Parent"],
    ),
    (
        "extension an object",
        structured(comexample={"a": 1}),
        422,
        "schema_violation",
        ["comexample"],
    ),
    ("extension named as a v1 field", structured(user=2**40), 422, "schema_violation", ["user"]),
    (
        "v1 problems in data",
        structured(data={**user_data("not-an-email"), "targets": ["nowhere"], "x": 1}),
        422,
        "schema_violation",
        ["data.changes.email", "data.x"],
    ),
    (
        "attribute and data problems together",
        structured(type="user.renamed", data={**user_data(), "user": {"id": "emp 1"}}),
        422,
        "schema_violation",
        ["type", "data.user.id"],
    ),
    (
        "malformed JSON",
        HTTPMessage({"Content-Type": STRUCTURED}, b'{"specversion": "1.0",'),
        400,
        "malformed_json",
        [],
    ),
    (
        "another source's name as source",
        structured(source="idp"),
        403,
        "source_mismatch",
        [],
    ),
]

BAD_BINARY: list[tuple[str, HTTPMessage, int, str, list[str]]] = [
    (
        "specversion 0.3",
        binary({"ce-specversion": "0.3"}),
        422,
        "schema_violation",
        ["specversion"],
    ),
    ("no ce-id", binary({"ce-id": None}), 422, "schema_violation", ["id"]),
    ("extension not a name", binary({"ce-my-ext": "1"}), 422, "schema_violation", ["my-ext"]),
    ("no ce-time", binary({"ce-time": None}), 422, "schema_violation", ["time"]),
    ("no ce-type", binary({"ce-type": None}), 422, "schema_violation", ["type"]),
    ("unknown type", binary({"ce-type": "user.renamed"}), 422, "schema_violation", ["type"]),
    ("data not an object", binary({}, b'"text"'), 422, "schema_violation", ["data"]),
    ("empty body", binary({}, b""), 422, "schema_violation", ["data"]),
    ("malformed JSON", binary({}, b'{"user": '), 400, "malformed_json", []),
    (
        "Content-Type not JSON",
        binary({"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
        [],
    ),
    (
        "a v1 problem",
        binary({}, orjson.dumps(user_data("not-an-email"))),
        422,
        "schema_violation",
        ["data.changes.email"],
    ),
]


@pytest.mark.parametrize(
    ("message", "status", "code", "where"),
    [case[1:] for case in BAD_STRUCTURED + BAD_BINARY],
    ids=[f"structured: {case[0]}" for case in BAD_STRUCTURED]
    + [f"binary: {case[0]}" for case in BAD_BINARY],
)
async def test_bad_cloudevents_are_refused(
    gateway: Gateway, redis: Redis, message: HTTPMessage, status: int, code: str, where: list[str]
) -> None:
    """Every broken CloudEvent gets its 4xx and code, the 422s naming each problem where the
    CloudEvent has it; nothing is stored."""
    answer_status, answer = await send(gateway, message)
    assert (answer_status, answer["error"]["code"]) == (status, code), answer
    if where:
        assert sorted(paths(answer)) == sorted(where), answer
    assert await stored_keys(redis) == []


async def test_answers_match_the_v1_answers(gateway: Gateway) -> None:
    """A CloudEvent and the v1 event it stands for get the same status, code and message
    (`priority` included: taken exactly when the v1 model takes it)."""
    cases: list[tuple[str, dict[str, Any]]] = [
        (HRIS_TOKEN, {"changes": {"email": "not-an-email"}}),
        (HRIS_TOKEN, {"targets": ["nowhere"]}),
        (HRIS_TOKEN, {"priority": "urgent"}),
        (IDP_TOKEN, {"targets": ["partoo"]}),
        (HRIS_TOKEN, {"user": {"id": "emp-42", "external_ids": {"partoo": "p-1"}}}),
    ]
    for n, (token, change) in enumerate(cases):
        v1_body = {**event(f"v-{n}"), **user_data(), **change}
        del v1_body["source"]
        data = {
            key: value
            for key, value in v1_body.items()
            if key not in ("event_id", "type", "occurred_at")
        }
        v1 = await gateway.post(v1_body, token=token)
        message = to_structured(cloud_event(f"c-{n}", data), JSON_FORMAT)
        ce = await send(gateway, message, token=token)
        assert ce[0] == v1[0], (change, v1, ce)
        if v1[0] >= 400:
            assert ce[1]["error"]["code"] == v1[1]["error"]["code"], (change, v1, ce)
            assert ce[1]["error"]["message"] == v1[1]["error"]["message"], (change, v1, ce)


async def test_batch_envelope_errors(gateway: Gateway, redis: Redis) -> None:
    """A CloudEvents batch body that is not an array of 1 to batch_max_events is a 422 for
    the whole request; malformed JSON a 400."""
    for body, status in ((b"{}", 422), (b"[]", 422), (b"[{", 400)):
        answer = await send(gateway, HTTPMessage({"Content-Type": BATCH}, body), path=BATCH_PATH)
        assert answer[0] == status, answer
    assert await stored_keys(redis) == []


async def test_media_types_on_the_wrong_route_are_415(gateway: Gateway) -> None:
    """A batch posted to /v1/events, or one CloudEvent (either mode) to the batch route, is
    415 before its body is read."""
    wrong = [
        ("/v1/events", batch_message([cloud_event()])),
        (BATCH_PATH, to_structured(cloud_event(), JSON_FORMAT)),
        (BATCH_PATH, to_binary(cloud_event(), JSON_FORMAT)),
    ]
    for path, message in wrong:
        status, answer = await send(gateway, message, path=path)
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type"), path
