"""MileApp: canonical changes -> `PATCH /user` (id in the body), and its answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.kinds import FIXTURES
from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.interface import Omission
from workers.vendors.mileapp import MileAppAdapter

from .conftest import TOKENS, MakeChange, MakeSettings

MILEAPP_ID = "65c1f4eeca7c4816d94587b7"
URL = "https://mileapp.example/api/v3/user"
HEADERS = {
    "Authorization": f"Bearer {TOKENS['mileapp']}",
    "Content-Type": "application/json",
    "Accept": "application/json",
}
NO_HOME = FIXTURES["mileapp"].no_home
"""Canonical fields Mileapp has no place for (the shared suite checks each alone)."""


@pytest.fixture
def adapter(vendor_settings: MakeSettings) -> MileAppAdapter:
    return MileAppAdapter("mileapp", vendor_settings("mileapp"))


@pytest.fixture
def change(change_set: MakeChange) -> MakeChange:
    def make(changes: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("vendor_user_id", MILEAPP_ID)
        return change_set(changes, **kwargs)

    return make


@pytest.mark.parametrize(
    ("changes", "profile", "expected"),
    [
        ({"email": "ada@example.com"}, {}, {"email": "ada@example.com"}),
        ({"phone": "+33 1 23 45 67 89"}, {}, {"phoneNumber": "+33123456789"}),
        ({"given_name": "Ada", "family_name": "Lovelace"}, {}, {"name": "Ada Lovelace"}),
        ({"display_name": "Countess Ada"}, {}, {"name": "Countess Ada"}),
        ({"given_name": "Ada"}, {"family_name": "Lovelace"}, {"name": "Ada Lovelace"}),
        ({"family_name": "Byron"}, {"display_name": "Countess Ada"}, {"name": "Countess Ada"}),
        ({"display_name": None}, {"given_name": "Ada"}, {"name": "Ada"}),
    ],
)
def test_fields_with_a_value(
    adapter: MileAppAdapter,
    change: MakeChange,
    changes: dict[str, Any],
    profile: dict[str, str],
    expected: dict[str, Any],
) -> None:
    """Name, email and phone (spaces removed) reach MileApp's body next to `_id`."""
    translation = adapter.translate(change(changes, profile=profile))
    assert translation.request is not None
    assert translation.request.method == "PATCH"
    assert translation.request.url == URL
    assert translation.request.headers == HEADERS
    assert translation.request.body == {"_id": MILEAPP_ID, **expected}
    assert translation.omitted == ()


@pytest.mark.parametrize(
    ("changes", "omitted"),
    [
        ({"email": None}, ["email"]),
        ({"phone": None}, ["phone"]),
        ({"display_name": None}, ["display_name"]),
        ({"given_name": None, "family_name": None}, ["family_name", "given_name"]),
    ],
)
def test_null_is_not_clearable(
    adapter: MileAppAdapter, change: MakeChange, changes: dict[str, Any], omitted: list[str]
) -> None:
    """MileApp clears nothing: a null is left out as not_clearable and nothing is sent."""
    translation = adapter.translate(change(changes))
    assert translation.request is None
    assert translation.omitted == tuple(Omission(field, "not_clearable") for field in omitted)


def test_mixed_changes_send_only_what_has_a_home(
    adapter: MileAppAdapter, change: MakeChange
) -> None:
    """With homed and homeless fields together, only the homed ones are sent."""
    translation = adapter.translate(change({"email": "a@example.com", "phone": None, **NO_HOME}))
    assert translation.request is not None
    assert translation.request.body == {"_id": MILEAPP_ID, "email": "a@example.com"}
    assert Omission("phone", "not_clearable") in translation.omitted
    assert {o.field for o in translation.omitted} == {"phone", *NO_HOME}


def test_id_field_is_configurable(vendor_settings: MakeSettings, change: MakeChange) -> None:
    """`id_field` names the body key that carries the MileApp user id."""
    adapter = MileAppAdapter("mileapp", vendor_settings("mileapp", id_field="userId"))
    translation = adapter.translate(change({"email": "a@example.com"}))
    assert translation.request is not None
    assert translation.request.body == {"userId": MILEAPP_ID, "email": "a@example.com"}


def test_id_field_may_not_be_a_body_field(vendor_settings: MakeSettings) -> None:
    """An id_field that is one of MileApp's own fields is a config error naming the key."""
    with pytest.raises(ValueError, match=r"vendors\.mileapp\.id_field: 'email'"):
        MileAppAdapter("mileapp", vendor_settings("mileapp", id_field="email"))


def test_role_map_is_refused(vendor_settings: MakeSettings) -> None:
    """MileApp has no role field, so a roles map is a config error naming the key."""
    with pytest.raises(ValueError, match=r"vendors\.mileapp\.roles: MileApp has no role field"):
        MileAppAdapter("mileapp", vendor_settings("mileapp", roles={"admin": "Admin"}))


def test_vendor_fields_are_merged_and_win(adapter: MileAppAdapter, change: MakeChange) -> None:
    """vendor_fields join the body; where they set a mapped field, their value wins."""
    translation = adapter.translate(
        change(
            {"email": "a@example.com", "given_name": "Ada"},
            vendor_fields={"name": "Ada L.", "phoneNumber": "+628123456789"},
        )
    )
    assert translation.request is not None
    assert translation.request.body == {
        "_id": MILEAPP_ID,
        "email": "a@example.com",
        "name": "Ada L.",
        "phoneNumber": "+628123456789",
    }
    assert translation.omitted == (Omission("given_name", "vendor_fields_override"),)


def test_vendor_fields_alone_are_sent(adapter: MileAppAdapter, change: MakeChange) -> None:
    """vendor_fields give MileApp something to send even when no canonical field has a home."""
    translation = adapter.translate(change({"job_title": "x"}, vendor_fields={"name": "Ada"}))
    assert translation.request is not None
    assert translation.request.body == {"_id": MILEAPP_ID, "name": "Ada"}


@pytest.mark.parametrize(
    ("vendor_fields", "path"),
    [
        ({"nickname": "ada"}, "vendor_fields.mileapp.nickname"),
        ({"name": 5}, "vendor_fields.mileapp.name"),
        ({"email": None}, "vendor_fields.mileapp.email"),
        ({"_id": "other-user"}, "vendor_fields.mileapp._id"),
    ],
)
def test_vendor_fields_outside_the_schema_are_refused(
    adapter: MileAppAdapter, change: MakeChange, vendor_fields: dict[str, Any], path: str
) -> None:
    """vendor_fields that patchUserRequest refuses are a permanent failure naming the path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"email": "a@example.com"}, vendor_fields=vendor_fields))
    assert caught.value.reason == "invalid_vendor_fields"
    assert caught.value.vendor_message is not None
    assert caught.value.vendor_message.startswith(f"{path}: ")


def test_masked_hides_the_token(adapter: MileAppAdapter, change: MakeChange) -> None:
    """The request shown to people hides the bearer token."""
    translation = adapter.translate(change({"email": "a@example.com"}))
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"]["Authorization"] == "***"
    assert TOKENS["mileapp"] not in orjson.dumps(masked).decode()


def test_success_carries_mileapp_message(adapter: MileAppAdapter) -> None:
    """A 200 with status:true is success, with MileApp's message."""
    body = orjson.dumps({"status": True, "message": "Data has been updated successfully."})
    assert adapter.read_response(200, {}, body).message == "Data has been updated successfully."


def test_status_false_on_200_is_refused(adapter: MileAppAdapter) -> None:
    """status:false is a permanent refusal even with HTTP 200, with MileApp's message."""
    body = orjson.dumps({"status": False, "message": "Deleted data failed", "userId": 400})
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(200, {}, body)
    assert caught.value.reason == "vendor_refused"
    assert caught.value.http_status == 200
    assert caught.value.vendor_message == "Deleted data failed"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_carries_mileapp_message(adapter: MileAppAdapter, status: int) -> None:
    """A 4xx is a permanent refusal carrying MileApp's `message`."""
    body = orjson.dumps({"status": False, "message": "The email field is invalid.", "userId": 1})
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, body)
    assert caught.value.reason == f"http_{status}"
    assert caught.value.vendor_message == "The email field is invalid."
