"""`/openapi.json` is exact for the configuration it is built for: on edge values of every rule
the validators apply, the document's event schema and the gateway's own checks give the same
verdict (schemathesis, tests/test_openapi_schemathesis.py, probes the same at random)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import orjson
import pytest

from config.settings import Settings
from core.secrets import secret_box
from gateway.app import ROUTES
from gateway.body import parse_json_object
from gateway.errors import ApiError
from gateway.ingest import check_secrets, validated_event
from gateway.openapi import build_document
from tests.conftest import ADMIN_TOKEN, Gateway, event, make_raw_settings
from workers.vendors.registry import build_adapters, vendor_fields_check, vendor_fields_schemas

SETTINGS = Settings.model_validate(make_raw_settings("redis://127.0.0.1:1", "http://127.0.0.1:2"))
BASE: dict[str, Any] = {
    "event_id": "e-1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "user": {"id": "u-1"},
    "changes": {"active": True},
}


def document(settings: Settings = SETTINGS) -> dict[str, Any]:
    return build_document(settings, ROUTES, vendor_fields_schemas())


def event_validator(doc: dict[str, Any]) -> jsonschema_rs.Validator:
    schema = {"$ref": "#/components/schemas/Event", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


VALIDATOR = event_validator(document())
CHECK = vendor_fields_check(build_adapters(SETTINGS))
BOX = secret_box(SETTINGS.secrets)


def gateway_takes(body: dict[str, Any]) -> bool:
    """The gateway's verdict on an event body, as `POST /v1/events` reaches it (parsing
    included; credentials, the clock and stored links left out)."""
    source = SETTINGS.sources[0]
    try:
        parsed = parse_json_object(orjson.dumps(body))
        valid, _ = validated_event(parsed, SETTINGS, source, CHECK)
        check_secrets(valid, BOX)
    except ApiError:
        return False
    return True


def changed(**changes: Any) -> dict[str, Any]:
    return {**BASE, "changes": changes}


def with_fields(instance: str, fields: Any) -> dict[str, Any]:
    return {**BASE, "vendor_fields": {instance: fields}}


CASES: list[tuple[str, dict[str, Any]]] = [
    *(
        (f"phone {value!r}", changed(phone=value))
        for value in ("+33123456789", "+33 1 23 45 67 89", " +1 2 ", "+0123", "33123", "+1")
    ),
    *(
        (f"language {value!r}", changed(language=value))
        for value in ("fr", "pt-BR", "f", "fr_FR", "fr-abcdefghi", "x" * 36)
    ),
    *(
        (f"date {value!r}", changed(start_date=value))
        for value in ("2026-02-28", "2024-02-29", "2026-02-30", "0000-01-01", "2026-13-01")
    ),
    *(
        (f"occurred_at {value!r}", {**BASE, "occurred_at": value})
        for value in (
            "2026-01-01t00:00:00.123+01:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "0001-01-01T00:00:00Z",
        )
    ),
    *(
        (f"name {value!r}", changed(given_name=value))
        for value in ("Ada", "  Ada\u3000", "   ", "\u3000\u2028", "\x1c", "a" * 200 + " \t")
    ),
    ("name of 201", changed(given_name="a" * 201)),
    *(
        (f"timezone {value!r}", changed(timezone=value))
        for value in ("Europe/Paris", "UTC", "Mars/Olympus", "europe/paris")
    ),
    *(
        (f"email {value!r}", changed(email=value))
        for value in ("ada@example.com", "a@b.test", "a@b.TEST", "a@" + "b" * 250 + ".com")
    ),
    *(
        (f"password {value!r}", changed(password=value))
        for value in ("s3cret", "enc:v1:abc", "")
    ),
    ("tag named PassWord, encrypted-looking", changed(tags={"PassWord": "enc:v1:x"})),
    ("tag named password", changed(tags={"password": "x", "team": None})),
    ("updated without changes", {**BASE, "changes": {}}),
    ("deactivated without changes", {**BASE, "type": "user.deactivated", "changes": {}}),
    ("deactivated, changes absent", {k: v for k, v in BASE.items() if k != "changes"}),
    ("activated but active false", {**BASE, "type": "user.activated", "changes": {"active": False}}),
    ("unknown target", {**BASE, "targets": ["nowhere"]}),
    ("known targets", {**BASE, "targets": ["partoo", "plaspy"]}),
    ("external id of an unknown instance", {**BASE, "user": {"id": "u", "external_ids": {"x": "1"}}}),
    ("version 2^53", {**BASE, "user": {"id": "u", "version": 2**53}}),
    ("version 2^53 + 1", {**BASE, "user": {"id": "u", "version": 2**53 + 1}}),
    ("version 5.0", {**BASE, "user": {"id": "u", "version": 5.0}}),
    ("partoo password by policy", with_fields("partoo", {"password": "Abcdef!1"})),
    ("partoo password, Unicode cases", with_fields("partoo", {"password": "Ébcdefg!"})),
    ("partoo password, only letters", with_fields("partoo", {"password": "Abcdefgh"})),
    ("partoo password, no upper case", with_fields("partoo", {"password": "abcdef!1"})),
    ("partoo password, encrypted-looking", with_fields("partoo", {"password": "enc:v1:Ab!cdefg"})),
    ("partoo org_id 5.0", with_fields("partoo", {"org_id": 5.0})),
    ("partoo org_id 2^60", with_fields("partoo", {"org_id": 2**60})),
    ("partoo lang", with_fields("partoo", {"lang": "pt-br"})),
    ("partoo lang unknown", with_fields("partoo", {"lang": "xx"})),
    ("partoo null", with_fields("partoo", {"lang": None})),
    ("partoo empty array", with_fields("partoo", [])),
    ("partoo array", with_fields("partoo", [{"lang": "fr"}])),
    ("fleet first_name null", with_fields("fleet-eu", {"first_name": None})),
    ("fleet email null", with_fields("fleet-eu", {"email": None})),
    ("fleet unknown field", with_fields("fleet-eu", {"nickname": "x"})),
    ("mileapp name null", with_fields("mileapp", {"name": None})),
    ("mileapp name", with_fields("mileapp", {"name": "Ada"})),
    ("plaspy add", with_fields("plaspy", [{"op": "add", "path": "/country", "value": "CO"}])),
    ("plaspy read-only", with_fields("plaspy", [{"op": "add", "path": "/id", "value": "1"}])),
    ("plaspy wrong type", with_fields("plaspy", [{"op": "add", "path": "/disabled", "value": 1}])),
    ("plaspy tag", with_fields("plaspy", [{"op": "replace", "path": "/tags/a~1b", "value": "x"}])),
    ("plaspy bad pointer", with_fields("plaspy", [{"op": "add", "path": "/tags/a~2", "value": ""}])),
    ("plaspy empty tag", with_fields("plaspy", [{"op": "add", "path": "/tags/", "value": "x"}])),
    ("plaspy copy password", with_fields("plaspy", [{"op": "copy", "from": "/password", "path": "/name"}])),
    ("plaspy move", with_fields("plaspy", [{"op": "move", "from": "/name", "path": "/group"}])),
    ("plaspy remove", with_fields("plaspy", [{"op": "remove", "path": "/expires"}])),
    ("plaspy remove with value", with_fields("plaspy", [{"op": "remove", "path": "/from", "value": 1}])),
    ("plaspy password", with_fields("plaspy", [{"op": "add", "path": "/password", "value": "p"}])),
    ("plaspy encrypted-looking", with_fields("plaspy", [{"op": "add", "path": "/password", "value": "enc:v1:p"}])),
    ("plaspy tags map", with_fields("plaspy", [{"op": "add", "path": "/tags", "value": {"Password": "enc:v1:"}}])),
    ("plaspy empty object", with_fields("plaspy", {})),
    ("plaspy object", with_fields("plaspy", {"country": "CO"})),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body"), CASES, ids=[case for case, _ in CASES])
def test_document_and_gateway_agree(case: str, body: dict[str, Any]) -> None:
    """The document allows an event exactly when the gateway takes it."""
    doc = VALIDATOR.is_valid(orjson.loads(orjson.dumps(body)))
    assert doc == gateway_takes(copy.deepcopy(body)), (case, "document allows" if doc else "")


def test_cases_cover_both_verdicts() -> None:
    """The table holds values on both sides of the rules (so agreement is not all-refuse)."""
    verdicts = [gateway_takes(copy.deepcopy(body)) for _, body in CASES]
    assert 20 < sum(verdicts) < len(verdicts) - 20


def test_names_are_the_configured_instances() -> None:
    """`targets` takes the enabled instances; `user.external_ids` and `vendor_fields` take
    every configured one, disabled or not; nothing else."""
    raw = make_raw_settings("redis://127.0.0.1:1", "http://127.0.0.1:2")
    raw["vendors"]["partoo"]["enabled"] = False
    settings = Settings.model_validate(raw)
    schemas = document(settings)["components"]["schemas"]
    event_fields = schemas["Event"]["properties"]
    assert event_fields["targets"]["anyOf"][0]["items"]["enum"] == ["mileapp", "fleet-eu", "plaspy"]
    configured = ["mileapp", "fleet-eu", "plaspy", "partoo"]
    assert list(event_fields["vendor_fields"]["properties"]) == configured
    assert event_fields["vendor_fields"]["additionalProperties"] is False
    external_ids = schemas["UserRef"]["properties"]["external_ids"]
    assert list(external_ids["properties"]) == configured
    assert external_ids["additionalProperties"] is False


def test_without_secret_keys_a_password_cannot_be_given() -> None:
    """With no `secrets.keys` the gateway refuses any secret: the document allows none."""
    raw = make_raw_settings("redis://127.0.0.1:1", "http://127.0.0.1:2")
    raw["secrets"] = {"keys": []}
    validator = event_validator(document(Settings.model_validate(raw)))
    assert VALIDATOR.is_valid(changed(password="p"))
    assert not validator.is_valid(changed(password="p"))
    assert not validator.is_valid(changed(tags={"PASSWORD": "p"}))
    assert validator.is_valid(changed(tags={"PASSWORD": None}))


def test_words_say_what_no_schema_can() -> None:
    """The skew of `occurred_at`, the body size and the source's own rules are described."""
    schemas = document()["components"]["schemas"]
    assert (
        "`gateway.max_future_skew_s` (300 s)"
        in (schemas["Event"]["properties"]["occurred_at"]["description"])
    )
    words = schemas["Event"]["description"]
    for rule in ("(4096 bytes)", "allowed_targets", "link_mode", "rate_limit", "2^53"):
        assert rule in words, rule


async def test_numbers_as_json_has_them(gateway: Gateway) -> None:
    """`5.0` is the integer 5 (accepted where an integer is wanted); a number beyond ±2^53
    is refused with a 422 naming it, anywhere in the body."""
    body = event("num-1", vendor_fields={"partoo": {"org_id": 5.0}}, targets=["partoo"])
    assert (await gateway.post(body))[0] == 202
    raw = orjson.dumps(event("num-2")).replace(b'"version":1', b'"version":9007199254740993')
    status, answer = await gateway.post(raw)
    assert status == 422
    assert answer["error"]["details"] == [
        {"path": "user.version", "message": "a number beyond ±2^53 (I-JSON)"}
    ]


async def test_a_cursor_is_a_position(gateway: Gateway) -> None:
    """Any `{score}:{letter id}` is a cursor (the page after that position); else a 422."""
    listed = "/v1/dead-letters?cursor="
    status, page = await gateway.get(listed + "0:hris:e-1:partoo", token=ADMIN_TOKEN)
    assert status == 200 and page == {"dead_letters": [], "total": 0, "next_cursor": None}
    status, _ = await gateway.get(listed + "aGVsbG8", token=ADMIN_TOKEN)
    assert status == 422
