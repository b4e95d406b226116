"""`GET /openapi.json` against the code: the document lists exactly the routes the router serves,
is valid OpenAPI 3.1, and every answer of a scripted walk is the one it describes (the random
half, schemathesis, is tests/test_openapi_schemathesis.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from redis.asyncio import Redis

from config.settings import Settings
from core.store import Store
from gateway.app import ROUTES, create_gateway_app
from gateway.openapi import build_document
from gateway.scim import api as scim_api
from tests.conftest import (
    ADMIN_TOKEN,
    HRIS_TOKEN,
    INSTANCE_KINDS,
    Gateway,
    event,
    running_gateway,
    running_worker,
)
from tests.test_dead_letters import no_link
from workers.vendors.registry import vendor_fields_schemas

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def served_routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path template) of every route the gateway's router serves, HEAD left out:
    aiohttp adds it to every GET (the document says so once, in its description)."""
    store = Store(Redis.from_url("redis://127.0.0.1:1/0"), settings.retention.events_s)

    async def nothing(*_: Any) -> dict[str, Any]:
        return {}

    def no_problems(*_: Any) -> list[dict[str, str]]:
        return []

    app = create_gateway_app(settings, store, nothing, no_problems)
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()}
    assert all(route.resource is not None for route in app.router.routes())
    assert {method for method, _ in routes} <= HTTP_METHODS | {"HEAD"}
    return {(method, path) for method, path in routes if method != "HEAD"}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in HTTP_METHODS
    }


def test_document_lists_exactly_the_served_routes(settings: Settings) -> None:
    """Every route the router serves is in the document and every documented one is served;
    each operation declares exactly the parameters its path template has."""
    document = build_document(settings, ROUTES)
    assert documented(document) == served_routes(settings)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert operation["responses"], (method, path)
    assert len({route.operation_id for route in ROUTES}) == len(ROUTES)


def test_document_is_valid_openapi_3_1(settings: Settings) -> None:
    """The document validates against the OpenAPI 3.1 meta-schema (schemathesis's copy), and
    every `$ref` points at a schema it holds."""
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    document = build_document(settings, ROUTES)
    definitions.OPENAPI_31_VALIDATOR.validate(document)
    text = json.dumps(document)
    schemas = document["components"]["schemas"]
    for pointer in re.findall(r'"#/components/schemas/([^"]+)"', text):
        node = schemas  # a schema, or (CloudEvents' `data`) a property of one
        for part in pointer.split("/"):
            assert part in node, pointer
            node = node[part]
    batch = document["paths"]["/v1/events:batch"]["post"]["requestBody"]
    events = batch["content"]["application/json"]["schema"]["properties"]["events"]
    assert events["maxItems"] == settings.gateway.batch_max_events


def test_event_schema_is_the_validating_model(settings: Settings) -> None:
    """The event schema is pydantic's own (validation side), with the rules pydantic checks
    but does not describe written in: non-clearable changes are not nullable, and dicts keyed
    by vendor instance or tag name refuse other keys."""
    schemas = build_document(settings, ROUTES)["components"]["schemas"]
    assert schemas["Event"]["required"] == ["event_id", "occurred_at", "user"]
    assert schemas["Event"]["additionalProperties"] is False
    changes = schemas["Changes"]["properties"]
    assert changes["active"] == {"title": "Active", "type": "boolean"}
    assert "null" not in json.dumps(changes["password"])
    assert changes["tags"]["additionalProperties"] is False
    assert {"type": "null"} in changes["email"]["anyOf"]
    assert schemas["UserRef"]["properties"]["external_ids"]["additionalProperties"] is False


async def test_document_is_served_without_a_token(gateway: Gateway, settings: Settings) -> None:
    """`GET /openapi.json` needs no credentials and is the document built from the settings
    and the vendor kinds' `vendor_fields` schemas."""
    async with gateway.http.get(gateway.url + "/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        served = await response.json()
    expected = build_document(settings, ROUTES, vendor_fields_schemas())
    assert served == json.loads(json.dumps(expected))


def response_schema(document: dict[str, Any], method: str, template: str, status: int) -> Any:
    """The JSON schema the document gives for that answer (failing if it documents none)."""
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered undocumented {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


class Walk:
    """Calls the live gateway and checks each answer against the document."""

    def __init__(self, gateway: Gateway, document: dict[str, Any]) -> None:
        self.gateway = gateway
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(
        self,
        method: str,
        template: str,
        status: int,
        *,
        path: str | None = None,
        token: str | None = HRIS_TOKEN,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = content_type
        url = self.gateway.url + (path or template)
        async with self.gateway.http.request(method, url, data=data, headers=headers) as response:
            answer = await response.read()
            assert response.status == status, (method, path or template, answer[:2000])
            assert response.content_type == "application/json"
        value = json.loads(answer)
        validator = jsonschema_rs.Draft202012Validator(
            response_schema(self.document, method, template, status)
        )
        validator.validate(value)
        self.seen.add((method, template, status))
        return value


async def test_answers_match_the_document(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """A scripted walk through every operation's success answers and the usual errors, each
    answer validated against the document's schema for its status (the deterministic half of
    what schemathesis checks at random)."""
    document = build_document(settings, ROUTES)
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        letters, _ = await seed(gateway, settings)
        walk = Walk(gateway, document)
        events = "/v1/events"
        await walk("POST", events, 202, body=event("w-1", targets=["fleet-eu"]))
        await walk("POST", events, 200, body=event("w-1"))
        await walk("POST", events, 422, body=event("w-2", targets=["nowhere"]))
        await walk("POST", events, 403, body=event("w-2", source="idp"))
        await walk("POST", events, 401, body=event("w-2"), token=None)
        await walk("POST", events, 400, raw=b"{")
        await walk("POST", events, 415, raw=b"{}", content_type="text/plain")
        await walk("POST", events, 413, raw=b" " * (settings.gateway.max_body_bytes + 1))
        batch = await walk(
            "POST",
            "/v1/events:batch",
            200,
            body={"events": [event("w-3"), event("w-1"), event("w-3"), {"event_id": 7}]},
        )
        assert [r["status"] for r in batch["results"]] == [202, 200, 200, 422]
        await walk("POST", "/v1/events:batch", 422, body={"events": []})
        await walk("POST", "/v1/events:preview", 200, body=event("w-4"))
        status = "/v1/events/{event_id}"
        await walk("GET", status, 200, path="/v1/events/w-1")
        await walk("GET", status, 200, path="/v1/events/w-1?source=hris", token=ADMIN_TOKEN)
        await walk("GET", status, 404, path="/v1/events/nothing-here")
        links = "/v1/users/{user_id}/links"
        await walk(
            "PUT",
            links + "/{vendor}",
            200,
            path="/v1/users/u-1/links/fleet-eu",
            body={"id": "7"},
            token=ADMIN_TOKEN,
        )
        await walk(
            "PUT",
            links + "/{vendor}",
            422,
            path="/v1/users/u-1/links/fleet-eu",
            body={"id": ""},
            token=ADMIN_TOKEN,
        )
        await walk("GET", links, 200, path="/v1/users/u-1/links", token=ADMIN_TOKEN)
        await walk("GET", links, 403, path="/v1/users/u-1/links")
        one = links + "/{vendor}"
        await walk("GET", one, 200, path="/v1/users/u-1/links/fleet-eu", token=ADMIN_TOKEN)
        await walk("GET", one, 404, path="/v1/users/u-1/links/partoo", token=ADMIN_TOKEN)
        dead = "/v1/dead-letters"
        page = await walk("GET", dead, 200, path=dead + "?limit=2", token=ADMIN_TOKEN)
        assert page["next_cursor"] and page["total"] == len(letters)
        await walk("GET", dead, 422, path=dead + "?limit=0", token=ADMIN_TOKEN)
        one = "/v1/dead-letters/{id}"
        shown = await walk("GET", one, 200, path=f"{dead}/{letters[0]}", token=ADMIN_TOKEN)
        assert shown["event"] is not None and shown["status"]["status"] == "dead"
        await walk(
            "POST", one + "/replay", 202, path=f"{dead}/{letters[0]}/replay", token=ADMIN_TOKEN
        )
        await walk(
            "POST", one + "/replay", 404, path=f"{dead}/{letters[0]}/replay", token=ADMIN_TOKEN
        )
        await walk("DELETE", one, 200, path=f"{dead}/{letters[1]}", token=ADMIN_TOKEN)
        await walk("DELETE", one, 404, path=f"{dead}/{letters[1]}", token=ADMIN_TOKEN)
        await walk("POST", dead + ":replay", 202, body={"vendor": "partoo"}, token=ADMIN_TOKEN)
        await walk("POST", dead + ":replay", 422, body={"everything": True}, token=ADMIN_TOKEN)
        await walk("DELETE", dead, 200, path=dead + "?all=true", token=ADMIN_TOKEN)
        await walk("GET", "/v1/vendors", 200, token=ADMIN_TOKEN)
        ordering = "/v1/users/{user_id}/ordering"
        await walk("DELETE", ordering, 200, path="/v1/users/u-1/ordering", token=ADMIN_TOKEN)
        await walk(
            "DELETE",
            ordering,
            200,
            path="/v1/users/u-1/ordering?vendor=fleet-eu",
            token=ADMIN_TOKEN,
        )
        await walk(
            "DELETE", ordering, 422, path="/v1/users/u-1/ordering?vendor=nowhere", token=ADMIN_TOKEN
        )
        await walk("DELETE", ordering, 403, path="/v1/users/u-1/ordering")
        await walk("GET", "/healthz", 200, token=None)
        await walk("GET", "/readyz", 200, token=None)
        async with http.get(url + "/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
    answered = {(method, template) for method, template, status in walk.seen if status < 300}
    # the SCIM operations need a SCIM source: walked in tests/scim/test_scim_openapi.py
    scim = {(route.method, route.path) for route in scim_api.ROUTES}
    assert answered == documented(document) - {("GET", "/metrics"), ("GET", "/openapi.json")} - scim


async def seed(gateway: Gateway, settings: Settings) -> tuple[list[str], list[str]]:
    """Dead letters (no_link, made by the real worker) and an accepted event, so lookups have
    something to find: (dead-letter ids, event ids)."""
    letters: list[str] = []
    async with running_worker(settings):
        for n in range(3):
            letters += await no_link(gateway, f"st-dead-{n}", "emp-dead", list(INSTANCE_KINDS))
    assert (await gateway.post(event("st-evt-1", targets=["fleet-eu"])))[0] == 202
    return letters, ["st-evt-1", "st-dead-0", "st-dead-1", "st-dead-2"]
