"""CloudEvents 1.0 on `POST /v1/events` (structured and binary) and `POST /v1/events:batch`
(batched), sent by the `cloudevents` SDK to a real gateway, worker and sandbox: delivered as a
v1 event would be, deduplicated by id, the source the credentials', described by
`/openapi.json`. Refusals: tests/test_cloudevents_refusals.py."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
from redis.asyncio import Redis

from config.settings import Settings
from core.signing import signature_headers
from gateway.cloudevents import BATCH, STRUCTURED
from tests.cloudevents_client import (
    BATCH_PATH,
    CRM_TOKEN,
    HRIS_SECRET,
    JSON_FORMAT,
    batch_message,
    cloud_event,
    cloudevents_settings,
    paths,
    send,
    user_data,
)
from tests.conftest import Gateway, Sandbox, event, stored_keys
from usersync.redis_server import EmbeddedRedis


@pytest.fixture
def settings(redis_server: EmbeddedRedis, sandbox: Sandbox) -> Settings:
    """hris may sign; crm's CloudEvent types start with com.example."""
    return cloudevents_settings(redis_server.url, sandbox.url)


async def assert_delivered(gateway: Gateway, sandbox: Sandbox, event_id: str, email: str) -> None:
    """The event reached Fleet: its status is delivered and the simulator got the change."""
    status = await gateway.wait_final(event_id)
    assert status["source"] == "hris"
    assert status["targets"]["fleet-eu"]["status"] == "delivered", status
    received = [request["body"] for request in await sandbox.requests("fleet")]
    assert {"email": email} in received, received


async def test_structured_event_is_delivered(
    gateway: Gateway, worker: None, sandbox: Sandbox
) -> None:
    """A structured CloudEvent (extension attributes and all) is accepted with the v1 answer
    and delivered; its id is the event id."""
    message = to_structured(
        cloud_event("ce-s1", user_data("s1@example.com"), traceparent="00-ab-cd-01"), JSON_FORMAT
    )
    status, answer = await send(gateway, message)
    assert status == 202, answer
    assert answer == {
        "event_id": "ce-s1",
        "status": "accepted",
        "targets": ["fleet-eu"],
        "status_url": "/v1/events/ce-s1",
    }
    await assert_delivered(gateway, sandbox, "ce-s1", "s1@example.com")


async def test_binary_event_is_delivered(gateway: Gateway, worker: None, sandbox: Sandbox) -> None:
    """A binary-mode CloudEvent (attributes in ce- headers, data the body) is delivered."""
    message = to_binary(cloud_event("ce-b1", user_data("b1@example.com")), JSON_FORMAT)
    assert "ce-specversion" in message.headers
    status, answer = await send(gateway, message)
    assert status == 202, answer
    await assert_delivered(gateway, sandbox, "ce-b1", "b1@example.com")


async def test_batch_is_delivered(gateway: Gateway, worker: None, sandbox: Sandbox) -> None:
    """A JSON batch of CloudEvents: each accepted (202) and delivered."""
    events = [cloud_event(f"ce-m{n}", user_data(f"m{n}@example.com", f"emp-{n}")) for n in range(3)]
    status, answer = await send(gateway, batch_message(events), path=BATCH_PATH)
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == [202, 202, 202], answer
    assert [r["event_id"] for r in answer["results"]] == ["ce-m0", "ce-m1", "ce-m2"]
    for n in range(3):
        await assert_delivered(gateway, sandbox, f"ce-m{n}", f"m{n}@example.com")


async def test_signed_binary_event(gateway: Gateway, worker: None, sandbox: Sandbox) -> None:
    """Binary mode signed with the source's HMAC over the exact body bytes is accepted and
    delivered; the same headers over other bytes are 401."""
    message = to_binary(cloud_event("ce-h1", user_data("h1@example.com")), JSON_FORMAT)
    signed = signature_headers("hris", HRIS_SECRET, message.body)
    status, answer = await send(gateway, message, token=None, headers=signed)
    assert status == 202, answer
    await assert_delivered(gateway, sandbox, "ce-h1", "h1@example.com")
    other = HTTPMessage(message.headers, message.body.replace(b"h1@", b"h2@"))
    status, answer = await send(gateway, other, token=None, headers=signed)
    assert (status, answer["error"]["code"]) == (401, "bad_signature"), answer


async def test_same_id_twice_is_a_duplicate(gateway: Gateway) -> None:
    """An id already accepted from the source answers 200 duplicate with the original
    acceptance, whichever mode (or a v1 body) repeats it."""
    first = await send(gateway, to_structured(cloud_event("ce-d1"), JSON_FORMAT))
    assert first[0] == 202, first
    for again in (
        await send(gateway, to_structured(cloud_event("ce-d1"), JSON_FORMAT)),
        await send(gateway, to_binary(cloud_event("ce-d1"), JSON_FORMAT)),
        await gateway.post(event("ce-d1", targets=["partoo"])),
    ):
        assert again == (200, {**first[1], "duplicate": True}), again


async def test_type_prefix_is_stripped(gateway: Gateway) -> None:
    """crm's types carry its prefix: com.example.user.deactivated is a deactivation (no
    changes needed); a bare or other-prefixed type is a 422 at `type`."""
    data = {"user": {"id": "emp-7"}, "targets": ["fleet-eu"]}
    deactivated = cloud_event("ce-p1", data, "com.example.user.deactivated")
    status, answer = await send(gateway, to_structured(deactivated, JSON_FORMAT), token=CRM_TOKEN)
    assert status == 202, answer
    status, stored = await gateway.get("/v1/events/ce-p1", CRM_TOKEN)
    assert (status, stored["source"], stored["user_id"]) == (200, "crm", "emp-7"), stored
    for wrong in ("user.updated", "org.other.user.updated", "com.example.user.renamed"):
        status, answer = await send(
            gateway, to_binary(cloud_event("ce-p2", event_type=wrong), JSON_FORMAT), CRM_TOKEN
        )
        assert (status, paths(answer)) == (422, ["type"]), (wrong, answer)
        assert "com.example.user.updated" in answer["error"]["details"][0]["message"]


async def test_source_is_the_credentials_and_data_names_the_user(gateway: Gateway) -> None:
    """A producer URI as source is accepted and the event is the caller's (the caller's own
    name is fine too); `subject` is the producer's and ignored: data.user.id is the user."""
    for n, source in enumerate(("https://hr.example.com/hris", "hris")):
        message = to_binary(cloud_event(f"ce-src{n}", source=source, subject="e/9"), JSON_FORMAT)
        status, answer = await send(gateway, message)
        assert status == 202, answer
        status, stored = await gateway.get(f"/v1/events/ce-src{n}")
        assert (stored["source"], stored["user_id"]) == ("hris", "emp-42"), stored


async def test_batch_with_one_bad_event(gateway: Gateway, worker: None, sandbox: Sandbox) -> None:
    """One refused event in a batch does not refuse the others; its result names its
    CloudEvent id and the CloudEvent paths of its problems."""
    good = [cloud_event(f"ce-g{n}", user_data(f"g{n}@example.com", f"emp-{n}")) for n in range(2)]
    bad = orjson.loads(JSON_FORMAT.write(cloud_event("ce-bad", user_data("not-an-email"))))
    bad.pop("time")
    status, answer = await send(gateway, batch_message(good, bad, "not an object"), path=BATCH_PATH)
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == [202, 202, 422, 422], answer
    refused = answer["results"][2]
    assert refused["event_id"] == "ce-bad"
    assert sorted(paths(refused["body"])) == ["data.changes.email", "time"]
    assert (answer["accepted"], answer["refused"]) == (2, 2)
    for n in range(2):
        await assert_delivered(gateway, sandbox, f"ce-g{n}", f"g{n}@example.com")


async def test_preview_takes_a_cloudevent(gateway: Gateway, redis: Redis) -> None:
    """`POST /v1/events:preview` reads a CloudEvent as the post does, and stores nothing."""
    message = to_binary(cloud_event("ce-v1"), JSON_FORMAT)
    status, answer = await send(gateway, message, path="/v1/events:preview")
    assert status == 200, answer
    assert answer["event_id"] == "ce-v1"
    assert answer["targets"]["fleet-eu"]["outcome"] == "send", answer
    assert await stored_keys(redis) == []


def _media_schema(document: dict[str, Any], path: str, media_type: str) -> Any:
    """A validator of a request body as the document describes it (its `$ref`s resolved in
    the document: `data` points into the Event schema's properties)."""
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("#", "paths", path, "post", "requestBody", "content", media_type, "schema")
    )
    return jsonschema_rs.Draft202012Validator({**document, "$ref": pointer})


async def test_document_describes_cloudevents(gateway: Gateway) -> None:
    """`/openapi.json` takes the SDK's structured event on /v1/events and its batch on
    :batch, and refuses what the gateway refuses for its shape (a type, a version, data)."""
    status, document = await gateway.get("/openapi.json", token=None)
    assert status == 200
    one = _media_schema(document, "/v1/events", STRUCTURED)
    many = _media_schema(document, BATCH_PATH, BATCH)
    sent = orjson.loads(to_structured(cloud_event(traceparent="00-ab"), JSON_FORMAT).body)
    assert one.is_valid(sent)
    assert many.is_valid([sent, sent])
    refused = [
        {**sent, "type": "user.renamed"},
        {**sent, "specversion": "0.3"},
        {**sent, "data": {**sent["data"], "event_id": "x"}},
        {**sent, "data": {"changes": {"email": "ada@example.com"}}},
        {key: value for key, value in sent.items() if key != "time"},
    ]
    for body in refused:
        assert not one.is_valid(body), body
        answer = await send(gateway, HTTPMessage({"Content-Type": STRUCTURED}, orjson.dumps(body)))
        assert answer[0] == 422, (body, answer)
    assert not many.is_valid([])
