"""SCIM: canonical changes -> `PATCH /Users/{id}` with a PatchOp (RFC 7644 §3.5.2), and the
service provider's answers (a User, 204, SCIM Error bodies)."""

from __future__ import annotations

import typing
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from workers.errors import RetryableDeliveryError, SchemaRefused, VendorRefused
from workers.vendors.interface import ChangeSet, Omission
from workers.vendors.scim import KIND, ScimAdapter
from workers.vendors.scim.schema import BOOLEANS, ERROR_URN, USER_URN, ScimUser
from workers.vendors.scim.testing import patch_op

from .conftest import TOKENS, MakeChange, MakeSettings

SCIM_ID = KIND.demo_user_id
URL = f"https://scim.example/scim/v2/Users/{SCIM_ID}"
HEADERS = {
    "Authorization": f"Bearer {TOKENS['scim']}",
    "Content-Type": "application/scim+json",
    "Accept": "application/scim+json",
}
WORK = {"type": "work", "primary": True}
VALUES: list[tuple[str, Any, str, Any]] = [
    ("email", "ada@example.com", "emails", [{"value": "ada@example.com", **WORK}]),
    ("given_name", "Ada", "name.givenName", "Ada"),
    ("family_name", "Lovelace", "name.familyName", "Lovelace"),
    ("display_name", "Countess Ada", "displayName", "Countess Ada"),
    ("phone", "+33 1 23 45 67 89", "phoneNumbers", [{"value": "+33123456789", **WORK}]),
    ("job_title", "Engineer", "title", "Engineer"),
    ("language", "pt-BR", "preferredLanguage", "pt-BR"),
    ("timezone", "Europe/Paris", "timezone", "Europe/Paris"),
    ("active", False, "active", False),
    ("active", True, "active", True),
    ("role", "admin", "roles", [{"value": "Administrator", "primary": True}]),
    ("password", "Secret-Passw0rd!", "password", "Secret-Passw0rd!"),
]
SEEN = "Val-7f3a"
"""A value that no refusal message may repeat (it could be a secret)."""
CLEARABLE = [
    ("email", "emails"),
    ("given_name", "name.givenName"),
    ("family_name", "name.familyName"),
    ("display_name", "displayName"),
    ("phone", "phoneNumbers"),
    ("job_title", "title"),
    ("language", "preferredLanguage"),
    ("timezone", "timezone"),
    ("role", "roles"),
]


def error(status: int, detail: str, scim_type: str | None = None) -> bytes:
    """A SCIM Error body as RFC 7644 §3.12 writes it (`status` a string)."""
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type is not None:
        body["scimType"] = scim_type
    return orjson.dumps(body)


@pytest.fixture
def adapter(vendor_settings: MakeSettings) -> ScimAdapter:
    return ScimAdapter("scim", vendor_settings("scim"))


@pytest.fixture
def change(change_set: MakeChange) -> MakeChange:
    def make(changes: dict[str, Any], **kwargs: Any) -> ChangeSet:
        kwargs.setdefault("vendor_user_id", SCIM_ID)
        return change_set(changes, **kwargs)

    return make


@pytest.mark.parametrize(("field", "value", "path", "sent"), VALUES)
def test_a_value_is_one_replace(
    adapter: ScimAdapter, change: MakeChange, field: str, value: Any, path: str, sent: Any
) -> None:
    """Setting a field is one `replace` on its User attribute, in a PatchOp sent as
    application/scim+json with the bearer token to /Users/{id}."""
    translation = adapter.translate(change({field: value}))
    assert translation.request is not None
    assert translation.request.method == "PATCH"
    assert translation.request.url == URL
    assert translation.request.headers == HEADERS
    assert translation.request.body == patch_op({"op": "replace", "path": path, "value": sent})
    assert translation.omitted == ()


@pytest.mark.parametrize(("field", "path"), CLEARABLE)
def test_null_is_a_remove(adapter: ScimAdapter, change: MakeChange, field: str, path: str) -> None:
    """Clearing a field is one `remove` of its attribute, without a value."""
    translation = adapter.translate(change({field: None}))
    assert translation.request is not None
    assert translation.request.body == patch_op({"op": "remove", "path": path})


def test_deactivation_is_active_false(adapter: ScimAdapter, change: MakeChange) -> None:
    """A deactivation (active: false) is exactly `replace active false`."""
    translation = adapter.translate(change({"active": False}))
    assert translation.request is not None
    assert translation.request.body["Operations"] == [
        {"op": "replace", "path": "active", "value": False}
    ]


def test_operations_follow_the_attribute_order(adapter: ScimAdapter, change: MakeChange) -> None:
    """Several changes make one PatchOp, one operation each, in the mapping's order; fields
    with no home are listed as omitted."""
    translation = adapter.translate(
        change({"timezone": "UTC", "active": True, "email": "a@example.com", "tags": {"a": "b"}})
    )
    assert translation.request is not None
    assert [op["path"] for op in translation.request.body["Operations"]] == [
        "emails",
        "timezone",
        "active",
    ]
    assert translation.omitted == (Omission("tags", "no_home"),)


def test_vendor_id_is_one_encoded_path_segment(adapter: ScimAdapter, change: MakeChange) -> None:
    """An opaque SCIM id is one percent-encoded segment; `..` is refused before sending."""
    translation = adapter.translate(change({"active": True}, vendor_user_id="a/b c"))
    assert translation.request is not None
    assert translation.request.url == "https://scim.example/scim/v2/Users/a%2Fb%20c"
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"active": True}, vendor_user_id=".."))
    assert caught.value.reason == "invalid_vendor_id"


def test_password_is_masked_in_the_shown_request(adapter: ScimAdapter, change: MakeChange) -> None:
    """The request shown to people masks the password operation's value and the token."""
    translation = adapter.translate(change({"password": "Secret-Passw0rd!", "active": True}))
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"]["Authorization"] == "***"
    assert {"op": "replace", "path": "password", "value": "***"} in masked["body"]["Operations"]
    assert "Secret-Passw0rd!" not in orjson.dumps(masked).decode()


def test_unmapped_role_is_refused(adapter: ScimAdapter, change: MakeChange) -> None:
    """A role with no entry in the instance's role map is refused, naming the map."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"role": "astronaut"}))
    assert caught.value.reason == "unmapped_role"
    assert "vendors.scim.roles" in str(caught.value.vendor_message)


def test_vendor_fields_follow_the_mapped_operations(
    adapter: ScimAdapter, change: MakeChange
) -> None:
    """`vendor_fields` are PatchOp operations sent after the mapped ones (userName is never
    sent otherwise); an operation on a filtered entry the provider may hold is accepted."""
    extra = [
        {"op": "replace", "path": "userName", "value": "ada"},
        {"op": "add", "path": 'emails[type eq "home"].value', "value": "ada@home.example"},
    ]
    translation = adapter.translate(change({"active": True}, vendor_fields=extra))
    assert translation.request is not None
    assert translation.request.body["Operations"] == [
        {"op": "replace", "path": "active", "value": True},
        *extra,
    ]
    assert adapter.vendor_fields_problems(extra) == []


@pytest.mark.parametrize(
    ("extra", "overridden"),
    [
        ([{"op": "replace", "path": "name", "value": {"givenName": "A"}}], {"given_name"}),
        ([{"op": "remove", "path": "name"}], {"given_name", "family_name"}),
        ([{"op": "replace", "value": {"name": {"familyName": "L"}}}], {"family_name"}),
        ([{"op": "replace", "path": 'emails[type eq "work"].display', "value": "A"}], {"email"}),
        (
            [
                {
                    "op": "replace",
                    "path": "urn:ietf:params:scim:schemas:core:2.0:User:title",
                    "value": "T",
                }
            ],
            {"job_title"},
        ),
    ],
)
def test_vendor_fields_override_what_they_write(
    adapter: ScimAdapter, change: MakeChange, extra: list[dict[str, Any]], overridden: set[str]
) -> None:
    """A mapped operation on an attribute (or sub-attribute) that a vendor_fields operation
    writes is left out and reported; the others are sent."""
    changes = {"given_name": "Ada", "family_name": "Lovelace", "email": "a@example.com"}
    changes["job_title"] = "Engineer"
    translation = adapter.translate(change(changes, vendor_fields=extra))
    assert translation.request is not None
    assert {o.field for o in translation.omitted} == overridden
    assert {o.reason for o in translation.omitted} == {"vendor_fields_override"}
    sent = translation.request.body["Operations"]
    assert len(sent) == len(changes) - len(overridden) + len(extra)
    assert sent[-len(extra) :] == extra


@pytest.mark.parametrize(
    ("fields", "where", "words"),
    [
        ({"op": "replace", "path": "title", "value": SEEN}, "vendor_fields.scim", "list of SCIM"),
        (["replace"], "vendor_fields.scim.0", "PatchOp operation"),
        ([{"op": "move", "path": "title", "value": SEEN}], "vendor_fields.scim.0", "invalidValue"),
        (
            [{"op": "replace", "path": "titel", "value": SEEN}],
            "vendor_fields.scim.0",
            "invalidPath",
        ),
        ([{"op": "replace", "path": "id", "value": SEEN}], "vendor_fields.scim.0", "mutability"),
        ([{"op": "remove"}], "vendor_fields.scim.0", "noTarget"),
        (
            [{"op": "replace", "path": "active", "value": "False"}],
            "vendor_fields.scim.0",
            "boolean",
        ),
        ([{"op": "replace", "path": "title", "value": 42}], "vendor_fields.scim.0", "string"),
        (
            [{"op": "add", "path": "emails", "value": [{"value": SEEN}]}],
            "vendor_fields.scim.0",
            "email",
        ),
        (
            [{"op": "replace", "path": "password", "value": SEEN}],
            "vendor_fields.scim.0",
            "changes.password",
        ),
        (
            [
                {
                    "op": "replace",
                    "path": "urn:ietf:params:scim:schemas:core:2.0:User:password",
                    "value": SEEN,
                }
            ],
            "vendor_fields.scim.0",
            "changes.password",
        ),
    ],
)
def test_vendor_fields_refusals(
    adapter: ScimAdapter, change: MakeChange, fields: Any, where: str, words: str
) -> None:
    """vendor_fields a strict provider would refuse (or a password, which only
    changes.password carries) are problems at their index, and translate refuses them; no
    message repeats a value."""
    problems = adapter.vendor_fields_problems(fields)
    assert [path for path, _ in problems] == [where]
    assert words in problems[0][1]
    assert SEEN not in str(problems)
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"active": True}, vendor_fields=fields))
    assert caught.value.reason == "invalid_vendor_fields"
    assert SEEN not in str(caught.value.vendor_message)


def test_204_and_the_user_are_success(adapter: ScimAdapter) -> None:
    """RFC 7644 §3.5.2: 204 without a body, or 200 with the User, is success."""
    adapter.read_response(204, {}, b"")
    user = {"schemas": [USER_URN], "id": SCIM_ID, "userName": "bjensen", "x-own": {"a": 1}}
    adapter.read_response(200, {}, orjson.dumps(user))


def test_a_2xx_error_body_is_an_invalid_answer(adapter: ScimAdapter) -> None:
    """A 200 whose body is a SCIM Error, not a User, is retried as an invalid answer."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(200, {}, error(400, "odd"))
    assert caught.value.reason == "invalid_response"


@pytest.mark.parametrize(
    ("status", "scim_type", "detail"),
    [
        (400, "invalidValue", "Attribute 'title' must be a string"),
        (400, "noTarget", "no value of 'emails' matches the path filter"),
        (400, "mutability", "'id' is read-only"),
        (400, "invalidPath", "'titel' is not an attribute"),
        (409, "uniqueness", "userName is already taken"),
        (401, None, "Authorization failure"),
        (403, None, "Not allowed to modify this User"),
        (404, None, "Resource 2819c223 not found"),
        (412, None, "Failed to update: resource changed"),
    ],
)
def test_scim_errors_are_permanent_with_their_detail(
    adapter: ScimAdapter, status: int, scim_type: str | None, detail: str
) -> None:
    """400/401/403/404/409/412 SCIM Errors are permanent; the message is `scimType: detail`."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, error(status, detail, scim_type))
    assert caught.value.reason == f"http_{status}"
    assert caught.value.vendor_message == (f"{scim_type}: {detail}" if scim_type else detail)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_scim_errors_retryable_with_retry_after(adapter: ScimAdapter, status: int) -> None:
    """408/429/5xx SCIM Errors are retryable, with Retry-After and the SCIM detail."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(status, {"Retry-After": "30"}, error(status, "Too busy"))
    assert caught.value.retry_after_s == 30.0
    assert caught.value.vendor_message == "Too busy"


def test_501_is_permanent(adapter: ScimAdapter) -> None:
    """501: the provider does not implement PATCH (RFC 7644 §3.12); retrying cannot help."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(501, {}, error(501, "PATCH is not supported"))
    assert caught.value.reason == "http_501"


def test_a_stray_error_body_still_gives_its_words(adapter: ScimAdapter) -> None:
    """An error body off the SCIM schema (a numeric status, own members) still gives its
    detail, or its message."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(400, {}, orjson.dumps({"status": 400, "detail": "bad", "x": 1}))
    assert caught.value.vendor_message == "bad"
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(400, {}, orjson.dumps({"message": "no"}))
    assert caught.value.vendor_message == "no"


def _booleans(annotation: Any, name: str = "") -> set[str]:
    """The names of the boolean attributes under a type: a model's fields, sub-attributes
    included, through `X | None` and `list[X]`."""
    if annotation is bool:
        return {name}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields.items()
        return set().union(*(_booleans(field.annotation, key) for key, field in fields))
    return set().union(*(_booleans(arg, name) for arg in typing.get_args(annotation)))


def test_boolean_attributes_are_the_schemas() -> None:
    """BOOLEANS (checked strictly) are exactly the User schema's boolean attributes."""
    assert _booleans(ScimUser) == set(BOOLEANS)
