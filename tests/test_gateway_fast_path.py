"""`POST /v1/events` validates a plain body straight from its bytes (`validated_json_event`):
for any body, the answer is the one parsing with orjson then validating the dict gives
(`validated_event(parse_json_object(raw))`): the same event, targets and stored JSON, or the
same refusal (status, code, message, details)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.settings import Settings
from core.secrets import secret_box
from gateway.body import parse_json_object
from gateway.errors import ApiError
from gateway.ingest import _from_json, sealed_event, validated_event, validated_json_event
from tests.conftest import event, make_raw_settings
from workers.vendors.registry import build_adapters, vendor_fields_check

SETTINGS = Settings.model_validate(make_raw_settings("redis://127.0.0.1:1", "http://127.0.0.1:2"))
CHECK = vendor_fields_check(build_adapters(SETTINGS))
BOX = secret_box(SETTINGS.secrets)
HRIS, IDP = SETTINGS.sources
BASE = (
    b'"event_id":"a","occurred_at":"2026-11-22T10:15:00Z","user":{"id":"u"},'
    b'"changes":{"given_name":"x"}'
)


def outcome(validate: Any, given: Any, source: Any = HRIS) -> Any:
    """What a validation answers: the event as stored (its JSON and which fields were set)
    with its targets, or the refusal."""
    try:
        valid, targets = validate(given, SETTINGS, source, CHECK)
    except ApiError as exc:
        return ("refused", exc.status, exc.code, exc.message, exc.details)
    try:
        sealed: Any = BOX.open(orjson.loads(sealed_event(valid, BOX)))
    except ApiError as exc:  # a secret that cannot be stored
        sealed = ("refused", exc.status, exc.code, exc.message, exc.details)
    else:
        assert sealed == valid.model_dump(mode="json", exclude_unset=True)
    return (
        "accepted",
        orjson.dumps(valid.model_dump(mode="json", exclude_unset=True)),
        sealed,
        valid.model_fields_set,
        valid.changes.model_fields_set,
        valid.user.model_fields_set,
        targets,
    )


def long_way(raw: bytes, *args: Any) -> Any:
    """What `POST /v1/events` did before: orjson, the shape's walk, the dict validated."""
    return validated_event(parse_json_object(raw), *args)


def assert_same(raw: bytes, source: Any = HRIS) -> None:
    assert outcome(validated_json_event, raw, source) == outcome(long_way, raw, source), raw


def body(**fields: Any) -> bytes:
    return orjson.dumps(event(**fields))


EDGES = [
    body(),
    body(targets=["fleet-eu", "fleet-eu"]),
    body(targets=["nope"]),
    body(source="idp"),
    body(type="user.deactivated", changes={}),
    body(type="user.activated", changes={"active": False}),
    orjson.dumps({k: v for k, v in event(type="user.deactivated").items() if k != "changes"}),
    orjson.dumps({k: v for k, v in event().items() if k != "changes"}),
    body(changes={"password": "s3cret-pass"}),
    body(changes={"password": "enc:v1:abc"}),
    body(occurred_at="2999-01-01T00:00:00Z"),
    body(occurred_at="2026-11-22T10:15:00"),
    body(priority="urgent"),
    body(user={"id": "u", "version": 5.0}),
    body(user={"id": "u", "version": 2**53}),
    body(user={"id": "u", "version": 2**53 + 1}),
    body(user={"id": "u", "external_ids": {"nope": "1"}}),
    body(vendor_fields={"fleet-eu": {"x": 1}}),
    body(vendor_fields={}),
    body(extra=1),
    b"{" + BASE + b',"vendor\\u005ffields":{"fleet-eu":{"deep":' + b"[" * 40 + b"]" * 40 + b"}}}",
    b"{" + BASE + b',"vendor\\u005ffields":{}}',
    b"{" + BASE + b',"event_id":"bad id!"}',
    b'{"event_id":"bad id!",' + BASE + b"}",
    b"{" + BASE.replace(b'"x"', b'"\\ud800"') + b"}",
    b"{" + BASE.replace(b'"x"', b'"\xed\xa0\x80"') + b"}",
    b"{" + BASE.replace(b'"x"', b'"\xff"') + b"}",
    b"{" + BASE.replace(b'"x"', b'"a\x01"') + b"}",
    b"{" + BASE.replace(b'"x"', b'"a\\u0000b"') + b"}",
    b"{" + BASE + b',"user":{"id":"u","version":NaN}}',
    b"{" + BASE + b',"user":{"id":"u","version":Infinity}}',
    b"{" + BASE + b',"user":{"id":"u","version":1e400}}',
    b"{" + BASE + b',"user":{"id":"u","version":99999999999999999999999}}',
    b"{" + BASE + b',"user":{"id":"u","version":01}}',
    b"{" + BASE + b',"user":{"id":"u","version":1e2}}',
    b"{" + BASE + b",}",
    b"\xef\xbb\xbf{" + BASE + b"}",
    b"\x0c{" + BASE + b"}",
    b"{" + BASE + b"}\x00",
    b"{" + BASE + b"} {}",
    b" \r\n\t{" + BASE + b"}\n",
    b"[]",
    b"null",
    b"",
]


@pytest.mark.parametrize("raw", EDGES)
def test_edge_bodies_answer_as_the_long_way(raw: bytes) -> None:
    """Parser edge cases (NaN, surrogates, BOM, duplicates, big numbers, escaped names) and
    the model's own rules answer the same from the bytes as through orjson and the dict."""
    assert_same(raw)
    assert_same(raw, IDP)


@pytest.mark.parametrize(
    "fields",
    [
        {"changes": {"password": "hunter2-hunter2"}},
        {"vendor_fields": {"fleet-eu": {"PassWord": "hunter2-hunter2"}}},
        {"vendor_fields": {"plaspy": [{"op": "add", "path": "/password", "value": "hunter2"}]}},
    ],
)
def test_stored_event_holds_no_secret_in_clear(fields: dict[str, Any]) -> None:
    """The stored text (written from the model's serializer) has every secret encrypted and
    opens to the event as validated."""
    valid, _ = validated_json_event(body(**fields), SETTINGS, HRIS, lambda *_: [])
    stored = sealed_event(valid, BOX)
    assert b"hunter2" not in stored
    assert BOX.open(orjson.loads(stored)) == valid.model_dump(mode="json", exclude_unset=True)


def test_common_bodies_take_the_short_way() -> None:
    """A plain valid event is validated from its bytes (else the change buys nothing)."""
    assert _from_json(body()) is not None
    assert _from_json(body(type="user.deactivated", changes={})) is not None
    assert _from_json(body(vendor_fields={"fleet-eu": {"x": 1}})) is None


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["event_id", "type", "occurred_at", "source", "user", "changes", "targets", "priority", "x"]
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(FIELDS, JSON_VALUES, st.sampled_from(["email", "given_name", "active", "tags", "y"]))
def test_any_field_value_answers_as_the_long_way(field: str, value: Any, change: str) -> None:
    """An event with any JSON value in one field, or in one change, answers alike."""
    assert_same(body(**{field: value}))
    assert_same(body(changes={change: value}))


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(BASE) + 1), st.binary(min_size=1, max_size=4))
def test_damaged_bytes_answer_as_the_long_way(at: int, junk: bytes) -> None:
    """A valid body with bytes spliced in anywhere answers alike (malformed JSON included)."""
    raw = b"{" + BASE + b"}"
    assert_same(raw[:at] + junk + raw[at:])
    assert_same(raw[:at] + junk + raw[at + len(junk) :])


def targets_settings() -> Settings:
    raw = make_raw_settings("redis://127.0.0.1:1", "http://127.0.0.1:2")
    raw["vendors"]["plaspy"]["enabled"] = False
    token = "t" * 32
    raw["sources"] = [
        {"name": "all", "token": token + "1"},
        {"name": "fleet", "token": token + "2", "allowed_targets": ["fleet-eu"]},
        {"name": "off", "token": token + "3", "allowed_targets": ["plaspy"]},
        {"name": "nolinks", "token": token + "4", "link_mode": "none"},
        {"name": "create", "token": token + "5", "link_mode": "create"},
    ]
    return Settings.model_validate(raw)


TARGETS_SETTINGS = targets_settings()


def expected_targets(source: Any, external_ids: dict[str, str]) -> Any:
    """The rules of `gateway.ingest` for an event naming no targets, written out."""
    vendors = TARGETS_SETTINGS.vendors
    allowed = source.allowed_targets
    unknown = [name for name in external_ids if name not in vendors]
    if unknown:
        return ("refused", 422, "schema_violation")
    if external_ids and source.link_mode == "none":
        return ("refused", 422, "links_not_allowed")
    if allowed is not None and any(name not in allowed for name in external_ids):
        return ("refused", 403, "target_not_allowed")
    targets = [
        name
        for name, vendor in vendors.items()
        if vendor.enabled and (allowed is None or name in allowed)
    ]
    return targets or ("refused", 422, "no_targets")


@pytest.mark.parametrize("source", TARGETS_SETTINGS.sources, ids=lambda source: source.name)
@pytest.mark.parametrize(
    "external_ids",
    [{}, {"fleet-eu": "42"}, {"plaspy": "p"}, {"mileapp": "m", "fleet-eu": "42"}, {"nope": "x"}],
)
def test_targets_of_an_event_naming_none(source: Any, external_ids: dict[str, str]) -> None:
    """An event without targets goes to every enabled instance its source may use, and its
    external ids are held to the source's rights, whichever way the targets are worked out
    (the usual event's from a table made once per settings)."""
    raw = orjson.dumps(
        {**event(), "source": source.name, "user": {"id": "u", "external_ids": external_ids}}
    )
    try:
        _, targets = validated_json_event(raw, TARGETS_SETTINGS, source, CHECK)
    except ApiError as exc:
        assert (exc.status, exc.code) == expected_targets(source, external_ids)[1:]
        return
    assert targets == expected_targets(source, external_ids)
