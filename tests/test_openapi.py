"""`GET /openapi.json` against the code: the document lists exactly the routes the router serves,
is valid OpenAPI 3.1, and schemathesis, run against the live gateway with it, finds no 5xx and
no answer (status, content type, body, headers) the document does not describe."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
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

SCHEMATHESIS_EXAMPLES = 25
"""Test cases per operation and phase: bounded, so the whole file takes well under a minute."""

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
    """`GET /openapi.json` needs no credentials and is the document built from the settings."""
    async with gateway.http.get(gateway.url + "/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == json.loads(json.dumps(build_document(settings, ROUTES)))


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


# -- schemathesis against the live gateway ----------------------------------------------------


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def schemathesis_config(dead_letters: list[str], event_ids: list[str]) -> str:
    """The run's configuration: a token per security scheme (schemathesis picks the scheme
    each operation declares), and dictionaries of existing ids mixed into the generated
    values, so the 200 answers of lookups are exercised and checked too.

    `positive_data_acceptance` is off: the gateway refuses schema-valid input for rules a
    JSON schema cannot state (a vendor instance that is configured, an E.164 phone, an IANA
    zone, a dead letter that exists, the body limit), with a documented 4xx. The signature
    headers are not generated (a random signature is a 401, which would hide everything else;
    `tests/test_signing` covers signatures)."""
    vendors = list(INSTANCE_KINDS)
    return f"""
[generation]
max-examples = {SCHEMATHESIS_EXAMPLES}
with-security-parameters = false

[checks]
positive_data_acceptance.enabled = false
# 413: a body over the limit is refused before it is parsed, whatever it holds.
negative_data_rejection.expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

[auth.openapi.sourceToken]
bearer = "{HRIS_TOKEN}"

[auth.openapi.adminToken]
bearer = "{ADMIN_TOKEN}"

[dictionaries.dead_letters]
values = {_toml_list(dead_letters)}

[dictionaries.events]
values = {_toml_list(event_ids)}

[dictionaries.vendors]
values = {_toml_list(vendors)}

[dictionaries.users]
values = ["emp-42", "emp-dead"]

[dictionaries.sources]
values = ["hris"]

[parameters]
"path.id" = {{ dictionary = "dead_letters", probability = 0.5 }}
"path.event_id" = {{ dictionary = "events", probability = 0.5 }}
"path.user_id" = {{ dictionary = "users", probability = 0.5 }}
"path.vendor" = {{ dictionary = "vendors", probability = 0.7 }}
"query.vendor" = {{ dictionary = "vendors", probability = 0.5 }}
"body.vendor" = {{ dictionary = "vendors", probability = 0.5 }}
"body.source" = {{ dictionary = "sources", probability = 0.7 }}
"body.targets[*]" = {{ dictionary = "vendors", probability = 0.8 }}
"body.events[*].source" = {{ dictionary = "sources", probability = 0.7 }}
"body.events[*].targets[*]" = {{ dictionary = "vendors", probability = 0.8 }}

# A batch refuses a bad event on its own, in a 200 listing every result: by design a
# schema-violating event inside a valid envelope is not a 4xx of the whole request.
[[operations]]
include-name = "POST /v1/events:batch"
checks.negative_data_rejection.enabled = false
"""


BULK = ("DELETE /v1/dead-letters", "POST /v1/dead-letters:replay")
"""Run on their own, after the rest: they empty the queue the other calls look things up in."""


async def run_schemathesis(url: str, config: Path, report: Path, *filters: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        *filters,
        "--seed",
        "20261122",
        # One worker: on Python 3.11 hypothesis's lambda descriptions (ast.parse) race
        # across threads ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def seed(gateway: Gateway, settings: Settings) -> tuple[list[str], list[str]]:
    """Dead letters (no_link, made by the real worker) and an accepted event, so lookups have
    something to find: (dead-letter ids, event ids)."""
    letters: list[str] = []
    async with running_worker(settings):
        for n in range(3):
            letters += await no_link(gateway, f"st-dead-{n}", "emp-dead", list(INSTANCE_KINDS))
    assert (await gateway.post(event("st-evt-1", targets=["fleet-eu"])))[0] == 202
    return letters, ["st-evt-1", "st-dead-0", "st-dead-1", "st-dead-2"]


@pytest.mark.timeout(180)
async def test_schemathesis_finds_nothing(
    settings: Settings, redis: Redis, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every operation, all phases (examples, coverage, fuzzing, stateful), positive and
    negative data, every check but `positive_data_acceptance`: no failure, no error."""
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        letters, event_ids = await seed(gateway, settings)
        config = tmp_path / "schemathesis.toml"
        config.write_text(schemathesis_config(letters, event_ids))
        runs = []
        for name, filters in (
            ("main", [arg for label in BULK for arg in ("--exclude-name", label)]),
            ("bulk", [arg for label in BULK for arg in ("--include-name", label)]),
        ):
            started = time.monotonic()
            code, output = await run_schemathesis(url, config, tmp_path / f"{name}.xml", *filters)
            runs.append((name, code, output, time.monotonic() - started))
    for name, code, output, elapsed in runs:
        (tmp_path / f"schemathesis-{name}.txt").write_text(output)
        print(f"schemathesis {name} run: {elapsed:.1f}s, output in {tmp_path}")
        assert code == 0, output[-30000:]
        assert "Errors:" not in output and "Warnings:" not in output, output[-10000:]
    # The CLI tests every operation but the one serving the document it reads.
    main, bulk = runs[0][2], runs[1][2]
    assert f"Tested: {len(ROUTES) - 1 - len(BULK)}" in main, main[-3000:]
    assert f"Tested: {len(BULK)}" in bulk, bulk[-3000:]
