"""Plaspy: canonical changes -> `PATCH /api/users/{userId}` as RFC 6902, and its answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.interface import ChangeSet, Omission
from workers.vendors.plaspy import PlaspyAdapter

from .conftest import TOKENS, MakeChange, MakeSettings

PLASPY_ID = "usr-12345"
URL = f"https://plaspy.example/api/users/{PLASPY_ID}"
HEADERS = {
    "Authorization": f"Bearer {TOKENS['plaspy']}",
    "Content-Type": "application/json",
    "Accept": "application/json",
}
VALUES: list[tuple[str, Any, str, Any]] = [
    ("email", "ada@example.com", "/email", "ada@example.com"),
    ("given_name", "Ada", "/name", "Ada"),
    ("family_name", "Lovelace", "/name", "Lovelace"),
    ("display_name", "Countess Ada", "/name", "Countess Ada"),
    ("job_title", "Engineer", "/description", "Engineer"),
    ("start_date", "2024-01-15", "/from", "2024-01-15T00:00:00Z"),
    ("end_date", "2026-12-31", "/expires", "2026-12-31T00:00:00Z"),
    ("country", "Colombia", "/country", "Colombia"),
    ("timezone", "America/Bogota", "/timeZone", "America/Bogota"),
    ("role", "admin", "/group", "administrators"),
    ("active", False, "/disabled", True),
    ("active", True, "/disabled", False),
    ("password", "Secret-Passw0rd!", "/password", "Secret-Passw0rd!"),
]
CLEARABLE = [
    ("email", "/email"),
    ("display_name", "/name"),
    ("job_title", "/description"),
    ("start_date", "/from"),
    ("end_date", "/expires"),
    ("country", "/country"),
    ("timezone", "/timeZone"),
    ("role", "/group"),
]


@pytest.fixture
def adapter(vendor_settings: MakeSettings) -> PlaspyAdapter:
    return PlaspyAdapter("plaspy", vendor_settings("plaspy"))


@pytest.fixture
def change(change_set: MakeChange) -> MakeChange:
    def make(changes: dict[str, Any], **kwargs: Any) -> ChangeSet:
        kwargs.setdefault("vendor_user_id", PLASPY_ID)
        return change_set(changes, **kwargs)

    return make


@pytest.mark.parametrize(("field", "value", "path", "sent"), VALUES)
def test_fields_with_a_value_are_added(
    adapter: PlaspyAdapter, change: MakeChange, field: str, value: Any, path: str, sent: Any
) -> None:
    """Setting a field is one `add` on its documented path, dates as UTC midnights."""
    translation = adapter.translate(change({field: value}))
    assert translation.request is not None
    assert translation.request.method == "PATCH"
    assert translation.request.url == URL
    assert translation.request.headers == HEADERS
    assert translation.request.body == [{"op": "add", "path": path, "value": sent}]
    assert translation.omitted == ()


@pytest.mark.parametrize(("field", "path"), CLEARABLE)
def test_null_is_a_remove(
    adapter: PlaspyAdapter, change: MakeChange, field: str, path: str
) -> None:
    """Clearing a field is one `remove` of its path."""
    translation = adapter.translate(change({field: None}))
    assert translation.request is not None
    assert translation.request.body == [{"op": "remove", "path": path}]


def test_name_joins_parts_with_the_profile(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """/name is the display name, else given + family, filling gaps from the profile."""
    translation = adapter.translate(change({"given_name": "Ada"}, profile={"family_name": "L"}))
    assert translation.request is not None
    assert translation.request.body == [{"op": "add", "path": "/name", "value": "Ada L"}]


def test_tags_add_and_remove_each_key(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """Each tag key is its own op: add with its value, remove for null, sorted by path."""
    translation = adapter.translate(change({"tags": {"vip": "true", "old": None, "team": "b"}}))
    assert translation.request is not None
    assert translation.request.body == [
        {"op": "remove", "path": "/tags/old"},
        {"op": "add", "path": "/tags/team", "value": "b"},
        {"op": "add", "path": "/tags/vip", "value": "true"},
    ]


def test_tag_keys_are_escaped(adapter: PlaspyAdapter) -> None:
    """A tag key with `~` or `/` is escaped as RFC 6901 requires (~0, ~1)."""
    change = ChangeSet("emp-42", PLASPY_ID, {"tags": {"a/b~c": "x"}})
    translation = adapter.translate(change)
    assert translation.request is not None
    assert translation.request.body == [{"op": "add", "path": "/tags/a~1b~0c", "value": "x"}]


def test_ops_are_sorted_by_path(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """Several changes make one patch whose operations are sorted by path."""
    translation = adapter.translate(
        change({"timezone": "UTC", "email": "a@example.com", "active": True, "country": None})
    )
    assert translation.request is not None
    assert [op["path"] for op in translation.request.body] == [
        "/country",
        "/disabled",
        "/email",
        "/timeZone",
    ]


def test_empty_tags_send_nothing(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """An empty tags object gives Plaspy nothing to do: no request."""
    assert adapter.translate(change({"tags": {}})).request is None


def test_unmapped_role_is_refused(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """A role with no entry in the instance's role map is refused, naming the map."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"role": "astronaut"}))
    assert caught.value.reason == "unmapped_role"
    assert caught.value.vendor_message is not None
    assert "vendors.plaspy.roles" in caught.value.vendor_message


def test_any_group_name_is_a_valid_role_value(
    vendor_settings: MakeSettings, change: MakeChange
) -> None:
    """Plaspy groups are free-form: any string is accepted as a role map value."""
    settings = vendor_settings("plaspy", roles={"admin": "Grupo Administración / Norte"})
    translation = PlaspyAdapter("plaspy", settings).translate(change({"role": "admin"}))
    assert translation.request is not None
    assert translation.request.body[0]["value"] == "Grupo Administración / Norte"


def test_unsafe_ids_are_quoted_or_refused(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """The user id is one path segment: reserved characters are quoted, `..` is refused."""
    translation = adapter.translate(change({"email": "a@x.io"}, vendor_user_id="a b/c"))
    assert translation.request is not None
    assert translation.request.url == "https://plaspy.example/api/users/a%20b%2Fc"
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"email": "a@x.io"}, vendor_user_id=".."))
    assert caught.value.reason == "invalid_vendor_id"


def test_vendor_ops_are_appended(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """vendor_fields operations follow the mapped ones, in the order given."""
    ops = [
        {"op": "replace", "path": "/group", "value": "drivers"},
        {"op": "add", "path": "/tags/team", "value": "north"},
        {"op": "test", "path": "/disabled", "value": False},
        {"op": "copy", "from": "/name", "path": "/description"},
    ]
    translation = adapter.translate(change({"email": "a@example.com"}, vendor_fields=ops))
    assert translation.request is not None
    assert translation.request.body == [
        {"op": "add", "path": "/email", "value": "a@example.com"},
        *ops,
    ]


def test_vendor_ops_override_mapped_ops(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """A mapped op on a path (or beneath one) that vendor_fields also set is dropped."""
    ops = [
        {"op": "add", "path": "/tags", "value": {"vip": "false"}},
        {"op": "remove", "path": "/email"},
    ]
    translation = adapter.translate(
        change(
            {"email": "a@example.com", "tags": {"vip": "true"}, "country": "CO"},
            vendor_fields=ops,
        )
    )
    assert translation.request is not None
    assert translation.request.body == [
        {"op": "add", "path": "/country", "value": "CO"},
        *ops,
    ]
    assert translation.omitted == (
        Omission("email", "vendor_fields_override"),
        Omission("tags", "vendor_fields_override"),
    )


@pytest.mark.parametrize(
    ("ops", "where"),
    [
        ({"email": "a@example.com"}, "vendor_fields.plaspy: must be a list"),
        ([{"op": "add", "path": "/disabled", "value": "yes"}], "vendor_fields.plaspy[0]: "),
        ([{"op": "add", "path": "/email"}], "vendor_fields.plaspy[0].value: "),
        ([{"op": "frobnicate", "path": "/email"}], "vendor_fields.plaspy[0]: `op` must be"),
        ([{"path": "/email"}], "vendor_fields.plaspy[0]: the operation has no `op`"),
        ([{"op": "remove", "path": "/id"}], "vendor_fields.plaspy[0].path: "),
        ([{"op": "remove", "path": "email"}], "vendor_fields.plaspy[0].path: "),
        ([{"op": "remove", "path": "/tags/a/b"}], "vendor_fields.plaspy[0].path: "),
        ([{"op": "remove", "path": "/email", "x": 1}], "vendor_fields.plaspy[0].x: "),
        ([{"op": "move", "path": "/name"}], "vendor_fields.plaspy[0].from: "),
        (["add /email"], "vendor_fields.plaspy[0]: "),
    ],
)
def test_invalid_vendor_ops_are_refused(
    adapter: PlaspyAdapter, change: MakeChange, ops: Any, where: str
) -> None:
    """vendor_fields that are not RFC 6902 ops on documented fields are refused, with a path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"email": "a@example.com"}, vendor_fields=ops))
    assert caught.value.reason == "invalid_vendor_fields"
    assert caught.value.vendor_message is not None
    assert caught.value.vendor_message.startswith(where)


@pytest.mark.parametrize(
    "op",
    [
        {"op": "add", "path": "/message", "value": "hello"},
        {"op": "replace", "path": "/deviceId", "value": "dev-1"},
        {"op": "add", "path": "/adminDevices", "value": 5},
        {"op": "add", "path": "/privileges", "value": ["read"]},
        {"op": "add", "path": "/privileges/-", "value": "read"},
        {"op": "remove", "path": "/privileges/0"},
        {"op": "test", "path": "/adminDevices", "value": 5},
        {"op": "copy", "from": "/deviceId", "path": "/description"},
    ],
)
def test_read_only_fields_are_refused(
    adapter: PlaspyAdapter, change: MakeChange, op: dict[str, Any]
) -> None:
    """Plaspy keeps message, privileges, deviceId and adminDevices read-only: an op on one is
    refused before sending, naming the path."""
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"email": "a@example.com"}, vendor_fields=[op]))
    assert caught.value.reason == "invalid_vendor_fields"
    assert caught.value.vendor_message is not None
    member = "from" if "from" in op else "path"
    assert caught.value.vendor_message.startswith(f"vendor_fields.plaspy[0].{member}: ")
    assert f"{op[member]!r} is not a writable Plaspy user field" in caught.value.vendor_message


def test_masked_hides_token_and_password(adapter: PlaspyAdapter, change: MakeChange) -> None:
    """The request shown to people hides the bearer token and the /password value."""
    translation = adapter.translate(change({"password": "Secret-Passw0rd!"}))
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"]["Authorization"] == "***"
    assert masked["body"] == [{"op": "add", "path": "/password", "value": "***"}]
    text = orjson.dumps(masked).decode()
    assert TOKENS["plaspy"] not in text
    assert "Secret-Passw0rd!" not in text


def test_success_reports_usage(adapter: PlaspyAdapter) -> None:
    """A success answer's apiUsage and apiDailyUsage are reported as usage counters."""
    body = orjson.dumps({"success": True, "id": PLASPY_ID, "apiUsage": 25, "apiDailyUsage": 100})
    assert adapter.read_response(200, {}, body).usage == {"apiUsage": 25, "apiDailyUsage": 100}


def test_success_without_counters(adapter: PlaspyAdapter) -> None:
    """A success answer without counters (or with non-integers) reports no usage."""
    body = orjson.dumps({"id": PLASPY_ID, "apiUsage": "25", "apiDailyUsage": True})
    assert adapter.read_response(200, {}, body).usage == {}


def test_success_false_on_200_is_refused(adapter: PlaspyAdapter) -> None:
    """success:false is a permanent refusal even with HTTP 200, with Plaspy's error."""
    body = orjson.dumps(
        {"success": False, "error": "Invalid patch operation", "apiUsage": 25, "apiDailyUsage": 1}
    )
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(200, {}, body)
    assert caught.value.reason == "vendor_refused"
    assert caught.value.http_status == 200
    assert caught.value.vendor_message == "Invalid patch operation"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_carries_plaspy_error(adapter: PlaspyAdapter, status: int) -> None:
    """A 4xx is a permanent refusal carrying Plaspy's `error`."""
    body = orjson.dumps({"success": False, "error": "User not found", "apiUsage": 1})
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, body)
    assert caught.value.reason == f"http_{status}"
    assert caught.value.vendor_message == "User not found"


@pytest.mark.parametrize("op", ["move", "copy"])
def test_password_cannot_be_moved_or_copied(
    adapter: PlaspyAdapter, change: MakeChange, op: str
) -> None:
    """A vendor op reading /password is refused before sending: the password is write-only."""
    ops = [{"op": op, "from": "/password", "path": "/description"}]
    with pytest.raises(SchemaRefused) as caught:
        adapter.translate(change({"email": "a@example.com"}, vendor_fields=ops))
    assert caught.value.reason == "invalid_vendor_fields"
    assert "write-only" in (caught.value.vendor_message or "")
