"""Partoo: canonical changes -> `POST /user/{user_id}` (x-APIKey), and its answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.interface import ChangeSet, Omission
from workers.vendors.partoo import PartooAdapter

from .conftest import TOKENS, MakeChange, MakeSettings

PARTOO_ID = "5309c3a237bbc544d8e26737"
URL = f"https://partoo.example/v2/user/{PARTOO_ID}"
HEADERS = {
    "x-APIKey": TOKENS["partoo"],
    "Content-Type": "application/json",
    "Accept": "application/json",
}
VALUES: list[tuple[str, Any, str, Any]] = [
    ("email", "ada@example.com", "email", "ada@example.com"),
    ("given_name", "Ada", "first_name", "Ada"),
    ("family_name", "Lovelace", "last_name", "Lovelace"),
    ("role", "admin", "role", "ORG_ADMIN"),
    ("role", "employee", "role", "BUSINESS_MANAGER"),
    ("active", False, "disabled", True),
    ("active", True, "disabled", False),
    ("password", "Secret-Passw0rd!", "password", "Secret-Passw0rd!"),
    ("language", "fr", "lang", "fr"),
]
WEAK_PASSWORDS = [
    ("Sh0rt!", "at least 8 characters"),
    ("lowercase-only-1", "an upper-case letter"),
    ("UPPERCASE-ONLY-1", "a lower-case letter"),
    ("NoSpecial123", "a special (non-alphanumeric) character"),
]


@pytest.fixture
def adapter(vendor_settings: MakeSettings) -> PartooAdapter:
    return PartooAdapter("partoo", vendor_settings("partoo"))


@pytest.fixture
def change(change_set: MakeChange) -> MakeChange:
    def make(changes: dict[str, Any], **kwargs: Any) -> ChangeSet:
        kwargs.setdefault("vendor_user_id", PARTOO_ID)
        return change_set(changes, **kwargs)

    return make


@pytest.mark.parametrize(("field", "value", "key", "sent"), VALUES)
def test_fields_with_a_value(
    adapter: PartooAdapter, change: MakeChange, field: str, value: Any, key: str, sent: Any
) -> None:
    """Each canonical field Partoo takes lands under its Partoo key; x-APIKey authenticates."""
    translation = adapter.translate(change({field: value}))
    assert translation.request is not None
    assert translation.request.method == "POST"
    assert translation.request.url == URL
    assert translation.request.headers == HEADERS
    assert translation.request.body == {key: sent}
    assert translation.omitted == ()


@pytest.mark.parametrize("field", ["email", "given_name", "family_name", "role", "language"])
def test_null_is_not_clearable(adapter: PartooAdapter, change: MakeChange, field: str) -> None:
    """Partoo clears nothing: a null is left out as not_clearable and nothing is sent."""
    translation = adapter.translate(change({field: None}))
    assert translation.request is None
    assert translation.omitted == (Omission(field, "not_clearable"),)


@pytest.mark.parametrize(
    ("language", "lang"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("pt-BR", "pt-br"),
        ("pt-PT", "pt"),
        ("en-GB", "en"),
        ("de-CH", "de"),
        ("ca-ES-valencia", "ca"),
    ],
)
def test_language_maps_to_partoo_lang(
    adapter: PartooAdapter, change: MakeChange, language: str, lang: str
) -> None:
    """A BCP 47 tag maps to Partoo's lang enum: the whole tag, else its primary subtag."""
    translation = adapter.translate(change({"language": language}))
    assert translation.request is not None
    assert translation.request.body == {"lang": lang}


@pytest.mark.parametrize("language", ["ja", "zh-Hans-CN", "br-FR"])
def test_unsupported_language_is_omitted(
    adapter: PartooAdapter, change: MakeChange, language: str
) -> None:
    """A language outside Partoo's enum is left out as unsupported_language; others still go."""
    translation = adapter.translate(change({"language": language, "given_name": "Ada"}))
    assert translation.request is not None
    assert translation.request.body == {"first_name": "Ada"}
    assert translation.omitted == (Omission("language", "unsupported_language"),)


@pytest.mark.parametrize(("password", "rule"), WEAK_PASSWORDS)
def test_weak_password_is_refused_without_echo(
    adapter: PartooAdapter, change: MakeChange, password: str, rule: str
) -> None:
    """A password under Partoo's policy is refused before sending; the refusal never echoes it."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"password": password, "email": "a@example.com"}))
    error = caught.value
    assert error.reason == "password_policy"
    assert error.vendor_message is not None
    assert rule in error.vendor_message
    for text in (error.describe(), str(error), repr(error), repr(error.args)):
        assert password not in text


def test_weak_password_in_vendor_fields_is_refused(
    adapter: PartooAdapter, change: MakeChange
) -> None:
    """The policy also holds for a password given as a vendor field, named by its path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"given_name": "Ada"}, vendor_fields={"password": "weakling"}))
    assert caught.value.reason == "password_policy"
    assert caught.value.vendor_message is not None
    assert caught.value.vendor_message.startswith("vendor_fields.partoo.password: ")
    assert "weakling" not in caught.value.describe()


def test_unmapped_role_is_refused(adapter: PartooAdapter, change: MakeChange) -> None:
    """A role with no entry in the instance's role map is refused, naming the map."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"role": "astronaut"}))
    assert caught.value.reason == "unmapped_role"
    assert caught.value.vendor_message is not None
    assert "vendors.partoo.roles" in caught.value.vendor_message


def test_role_map_values_must_be_partoo_roles(vendor_settings: MakeSettings) -> None:
    """Every role map value outside Partoo's enum is a config error naming its key path."""
    settings = vendor_settings("partoo", roles={"admin": "ADMIN", "boss": "PROVIDER"})
    with pytest.raises(ValueError) as caught:
        PartooAdapter("partoo-fr", settings)
    enum = "ORG_ADMIN, ORG_MANAGER, GROUP_MANAGER, BUSINESS_MANAGER, PUBLISHER"
    assert str(caught.value) == (
        f"vendors.partoo-fr.roles.admin: 'ADMIN' is not one of {enum}; "
        f"vendors.partoo-fr.roles.boss: 'PROVIDER' is not one of {enum}"
    )


def test_documented_vendor_fields_are_merged_and_win(
    adapter: PartooAdapter, change: MakeChange
) -> None:
    """Every documented body field is accepted as a vendor field; it wins over a mapped one."""
    vendor_fields = {
        "org_id": 42,
        "accesses": [[1, 2], [1, 3]],
        "business_ids": ["b1"],
        "custom_role": "my_custom_role",
        "sidebar_pages": ["posts", "review_management"],
        "status": "invited",
        "sso_only": True,
        "receive_reviews_email_notifications": False,
        "lang": "es",
        "role": "PUBLISHER",
    }
    translation = adapter.translate(
        change(
            {"role": "admin", "language": "fr", "email": "a@example.com"},
            vendor_fields=vendor_fields,
        )
    )
    assert translation.request is not None
    assert translation.request.body == {"email": "a@example.com", **vendor_fields}
    assert translation.omitted == (
        Omission("language", "vendor_fields_override"),
        Omission("role", "vendor_fields_override"),
    )


@pytest.mark.parametrize(
    ("vendor_fields", "path"),
    [
        ({"nickname": "ada"}, "vendor_fields.partoo.nickname"),
        ({"org_id": "42"}, "vendor_fields.partoo.org_id"),
        ({"accesses": [["1"]]}, "vendor_fields.partoo.accesses.0.0"),
        ({"business_ids": "b1"}, "vendor_fields.partoo.business_ids"),
        ({"sidebar_pages": ["nope"]}, "vendor_fields.partoo.sidebar_pages.0"),
        ({"status": "gone"}, "vendor_fields.partoo.status"),
        ({"lang": "ja"}, "vendor_fields.partoo.lang"),
        ({"role": "PROVIDER"}, "vendor_fields.partoo.role"),
        ({"sso_only": "true"}, "vendor_fields.partoo.sso_only"),
        ({"email": "not-an-email"}, "vendor_fields.partoo.email"),
        ({"first_name": None}, "vendor_fields.partoo.first_name"),
    ],
)
def test_vendor_fields_outside_the_schema_are_refused(
    adapter: PartooAdapter, change: MakeChange, vendor_fields: dict[str, Any], path: str
) -> None:
    """vendor_fields that Partoo's body schema refuses are a permanent failure naming the path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"given_name": "Ada"}, vendor_fields=vendor_fields))
    assert caught.value.reason == "invalid_vendor_fields"
    assert caught.value.vendor_message is not None
    assert caught.value.vendor_message.startswith(f"{path}: ")


def test_masked_hides_api_key_and_password(adapter: PartooAdapter, change: MakeChange) -> None:
    """The request shown to people hides the x-APIKey header and the password."""
    translation = adapter.translate(change({"password": "Secret-Passw0rd!"}))
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"]["x-APIKey"] == "***"
    assert "Authorization" not in masked["headers"]
    assert masked["body"] == {"password": "***"}
    text = orjson.dumps(masked).decode()
    assert TOKENS["partoo"] not in text
    assert "Secret-Passw0rd!" not in text


def test_success(adapter: PartooAdapter) -> None:
    """The documented 200 answer `{id, status: success}` is success."""
    body = orjson.dumps({"id": PARTOO_ID, "status": "success"})
    assert adapter.read_response(200, {}, body).message is None


@pytest.mark.parametrize(
    ("status", "payload", "message"),
    [
        (400, {"errors": {"json": {"password": ["too short"]}}}, "password: too short"),
        (
            400,
            {"errors": {"json": {"email": ["invalid", "taken"], "accesses": {"0": ["bad"]}}}},
            "email: invalid, taken; accesses.0: bad",
        ),
        (
            401,
            {"errors": {"authentication": "User not authenticated"}},
            "authentication: User not authenticated",
        ),
        (
            403,
            {"errors": {"authorization": "Operation not allowed"}},
            "authorization: Operation not allowed",
        ),
        (404, {"errors": {"json": "Resource not found"}}, "Resource not found"),
        (400, {"message": "Bad request"}, "Bad request"),
        (400, {}, None),
    ],
)
def test_4xx_carries_flattened_errors(
    adapter: PartooAdapter, status: int, payload: dict[str, Any], message: str | None
) -> None:
    """A 4xx is a permanent refusal carrying Partoo's `errors`, flattened into one line."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, orjson.dumps(payload))
    assert caught.value.reason == f"http_{status}"
    assert caught.value.vendor_message == message
