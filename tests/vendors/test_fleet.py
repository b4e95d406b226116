"""Fleet: canonical changes -> `PATCH /users/{user_id}` (null clears), and its answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.kinds import FIXTURES
from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.fleet import FleetAdapter
from workers.vendors.interface import Omission

from .conftest import TOKENS, MakeChange, MakeSettings

URL = "https://fleet.example/api/users/42"
HEADERS = {
    "Authorization": f"Bearer {TOKENS['fleet']}",
    "Content-Type": "application/json",
    "Accept": "application/json",
}
NO_HOME = FIXTURES["fleet"].no_home
"""Canonical fields Fleet has no place for (the shared suite checks each alone)."""
VALUES: list[tuple[str, Any, str, Any]] = [
    ("email", "ada@example.com", "email", "ada@example.com"),
    ("given_name", "Ada", "first_name", "Ada"),
    ("family_name", "Lovelace", "last_name", "Lovelace"),
    ("phone", "+33 1 23 45 67 89", "phone", "+33123456789"),
    ("phone_country", "FR", "phone_country", "FR"),
    ("language", "fr", "language", "fr"),
    ("job_title", "Engineer", "position", "Engineer"),
    ("start_date", "2024-01-15", "arrival_date", "2024-01-15"),
    ("end_date", "2026-12-31", "departure_date", "2026-12-31"),
    ("birth_date", "1990-05-21", "date_of_birth", "1990-05-21"),
    ("birth_city", "Paris", "city_of_birth", "Paris"),
    ("birth_country", "FR", "country_of_birth", "FR"),
    ("role", "admin", "role", "ADMIN"),
    ("role", "employee", "role", "EMPLOYEE"),
    ("password", "hunter2", "password", "hunter2"),
]
CLEARABLE = [
    ("given_name", "first_name"),
    ("family_name", "last_name"),
    ("phone", "phone"),
    ("phone_country", "phone_country"),
    ("language", "language"),
    ("job_title", "position"),
    ("start_date", "arrival_date"),
    ("end_date", "departure_date"),
    ("birth_date", "date_of_birth"),
    ("birth_city", "city_of_birth"),
    ("birth_country", "country_of_birth"),
]


@pytest.fixture
def adapter(vendor_settings: MakeSettings) -> FleetAdapter:
    return FleetAdapter("fleet-eu", vendor_settings("fleet"))


@pytest.mark.parametrize(("field", "value", "key", "sent"), VALUES)
def test_fields_with_a_value(
    adapter: FleetAdapter, change_set: MakeChange, field: str, value: Any, key: str, sent: Any
) -> None:
    """Each canonical field Fleet takes lands under its Fleet key, dates as YYYY-MM-DD."""
    translation = adapter.translate(change_set({field: value}))
    assert translation.request is not None
    assert translation.request.method == "PATCH"
    assert translation.request.url == URL
    assert translation.request.headers == HEADERS
    assert translation.request.body == {key: sent}
    assert translation.omitted == ()


@pytest.mark.parametrize(("field", "key"), CLEARABLE)
def test_null_clears(adapter: FleetAdapter, change_set: MakeChange, field: str, key: str) -> None:
    """A null on a nullable Fleet field is sent as null, which clears it."""
    translation = adapter.translate(change_set({field: None}))
    assert translation.request is not None
    assert translation.request.body == {key: None}


@pytest.mark.parametrize("field", ["email", "role"])
def test_null_on_non_nullable_is_omitted(
    adapter: FleetAdapter, change_set: MakeChange, field: str
) -> None:
    """email and role cannot be cleared at Fleet: left out as not_clearable, nothing sent."""
    translation = adapter.translate(change_set({field: None}))
    assert translation.request is None
    assert translation.omitted == (Omission(field, "not_clearable"),)


def test_several_fields_in_one_body(adapter: FleetAdapter, change_set: MakeChange) -> None:
    """All changed fields go in one partial body; homeless ones are listed, sorted."""
    translation = adapter.translate(
        change_set({"given_name": "Ada", "phone": None, "email": None, **NO_HOME})
    )
    assert translation.request is not None
    assert translation.request.body == {"first_name": "Ada", "phone": None}
    assert translation.omitted == (
        Omission("active", "no_home"),
        Omission("country", "no_home"),
        Omission("display_name", "no_home"),
        Omission("email", "not_clearable"),
        Omission("tags", "no_home"),
        Omission("timezone", "no_home"),
    )


@pytest.mark.parametrize("vendor_id", ["042", "0", "abc", "4 2", "-1", "42\n", "٤٢", "", "1.5"])
def test_invalid_fleet_id_is_refused(
    adapter: FleetAdapter, change_set: MakeChange, vendor_id: str
) -> None:
    """A Fleet id not matching ^[1-9]\\d*$ (ASCII digits) is refused and never sent."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change_set({"email": "a@example.com"}, vendor_user_id=vendor_id))
    assert caught.value.reason == "invalid_vendor_id"
    assert caught.value.vendor_message is not None
    assert "positive integers" in caught.value.vendor_message


def test_unmapped_role_is_refused(adapter: FleetAdapter, change_set: MakeChange) -> None:
    """A role with no entry in the instance's role map is refused, naming the map."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change_set({"role": "astronaut"}))
    assert caught.value.reason == "unmapped_role"
    assert caught.value.vendor_message == (
        "role 'astronaut' has no mapping in vendors.fleet-eu.roles (mapped: admin, employee)"
    )


def test_role_map_values_must_be_fleet_roles(vendor_settings: MakeSettings) -> None:
    """A role map value outside EMPLOYEE/ADMIN is a config error naming its key path."""
    settings = vendor_settings("fleet", roles={"admin": "BOSS", "employee": "EMPLOYEE"})
    with pytest.raises(ValueError) as caught:
        FleetAdapter("fleet-eu", settings)
    assert str(caught.value) == "vendors.fleet-eu.roles.admin: 'BOSS' is not one of EMPLOYEE, ADMIN"


def test_vendor_fields_are_merged_and_win(adapter: FleetAdapter, change_set: MakeChange) -> None:
    """vendor_fields join the body; where they set a mapped field, their value wins."""
    translation = adapter.translate(
        change_set(
            {"given_name": "Ada", "job_title": "Engineer"},
            vendor_fields={"position": "Countess", "arrival_date": None, "role": "EMPLOYEE"},
        )
    )
    assert translation.request is not None
    assert translation.request.body == {
        "first_name": "Ada",
        "position": "Countess",
        "arrival_date": None,
        "role": "EMPLOYEE",
    }
    assert translation.omitted == (Omission("job_title", "vendor_fields_override"),)


@pytest.mark.parametrize(
    ("vendor_fields", "path"),
    [
        ({"nickname": "ada"}, "vendor_fields.fleet-eu.nickname"),
        ({"role": "BOSS"}, "vendor_fields.fleet-eu.role"),
        ({"role": None}, "vendor_fields.fleet-eu.role"),
        ({"email": None}, "vendor_fields.fleet-eu.email"),
        ({"email": "not-an-email"}, "vendor_fields.fleet-eu.email"),
        ({"arrival_date": 20240115}, "vendor_fields.fleet-eu.arrival_date"),
    ],
)
def test_vendor_fields_outside_the_schema_are_refused(
    adapter: FleetAdapter, change_set: MakeChange, vendor_fields: dict[str, Any], path: str
) -> None:
    """vendor_fields that PatchUserBody refuses are a permanent failure naming the path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change_set({"given_name": "Ada"}, vendor_fields=vendor_fields))
    assert caught.value.reason == "invalid_vendor_fields"
    assert caught.value.vendor_message is not None
    assert caught.value.vendor_message.startswith(f"{path}: ")


def test_masked_hides_token_and_password(adapter: FleetAdapter, change_set: MakeChange) -> None:
    """The request shown to people hides the bearer token and the password."""
    translation = adapter.translate(change_set({"password": "Secret-Passw0rd!"}))
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"]["Authorization"] == "***"
    assert masked["body"] == {"password": "***"}
    text = orjson.dumps(masked).decode()
    assert TOKENS["fleet"] not in text
    assert "Secret-Passw0rd!" not in text


def test_success_is_the_updated_user(adapter: FleetAdapter) -> None:
    """A 200 with the updated user under `data` is success."""
    body = orjson.dumps({"data": {"id": 42, "company_id": 7, "email": "a@example.com"}})
    result = adapter.read_response(200, {}, body)
    assert result.message is None
    assert result.usage == {}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"code": "conflict", "message": "email already used"}}, "email already used"),
        ({"error": "email already used"}, "email already used"),
        ({"message": "email already used"}, "email already used"),
        ({"detail": "email already used"}, "email already used"),
        ({"detail": [{"loc": ["email"], "msg": "bad"}]}, '[{"loc":["email"],"msg":"bad"}]'),
        ({"unexpected": True}, None),
    ],
)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_carries_fleet_message(
    adapter: FleetAdapter, status: int, payload: dict[str, Any], message: str | None
) -> None:
    """A 4xx is a permanent refusal carrying Fleet's own message when it gave one."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, orjson.dumps(payload))
    assert caught.value.reason == f"http_{status}"
    assert caught.value.vendor_message == message
