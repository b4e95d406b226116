"""SCIM simulator: `PATCH /scim/v2/Users/{id}` as a strict RFC 7644 service provider."""

from __future__ import annotations

from typing import Any

import pytest

from config.vendors import VendorSettings
from core.event import Changes
from tests.kinds import FIXTURES, TOKENS
from workers.vendors.interface import ChangeSet
from workers.vendors.scim import KIND, ScimAdapter
from workers.vendors.scim.testing import patch_op

from .conftest import Sim

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
DEMO = KIND.demo_user_id
BAD_PATCHES: list[tuple[Any, str]] = [
    ({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}, "invalidSyntax"),
    ({"schemas": ["urn:x"], "Operations": [{"op": "replace", "path": "title"}]}, "invalidSyntax"),
    (
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp", "urn:x"],
            "Operations": [{"op": "replace", "path": "title", "value": "x"}],
        },
        "invalidSyntax",
    ),
    ([{"op": "replace", "path": "title", "value": "x"}], "invalidSyntax"),
    ({**patch_op({"op": "remove", "path": "title"}), "extra": 1}, "invalidSyntax"),
    (patch_op(), "invalidValue"),
    ({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}, "invalidValue"),
    (patch_op({"op": "move", "path": "title", "value": "x"}), "invalidValue"),
    (patch_op({"op": "replace", "path": "title", "value": "x", "from": "y"}), "invalidSyntax"),
    (patch_op({"op": "remove"}), "noTarget"),
    (patch_op({"op": "remove", "path": "title", "value": "x"}), "invalidValue"),
    (patch_op({"op": "replace", "path": "title"}), "invalidValue"),
    (patch_op({"op": "add", "path": "title", "value": None}), "invalidValue"),
    (
        patch_op({"op": "replace", "path": 'emails[type eq "work".value', "value": "a@b.co"}),
        "invalidPath",
    ),
    (patch_op({"op": "replace", "path": "nickname2", "value": "x"}), "invalidPath"),
    (patch_op({"op": "replace", "path": "id", "value": "x"}), "mutability"),
    (patch_op({"op": "replace", "path": "meta.version", "value": "x"}), "mutability"),
    (patch_op({"op": "remove", "path": "userName"}), "mutability"),
    (patch_op({"op": "replace", "path": "active", "value": "False"}), "invalidValue"),
    (patch_op({"op": "replace", "value": {"active": 0}}), "invalidValue"),
    (patch_op({"op": "replace", "path": "title", "value": 42}), "invalidValue"),
    (patch_op({"op": "replace", "path": "name", "value": "Ada"}), "invalidValue"),
    (
        patch_op({"op": "replace", "path": "emails", "value": [{"value": "not-an-email"}]}),
        "invalidValue",
    ),
    (
        patch_op({"op": "add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "1"}),
        "noTarget",
    ),
    (
        patch_op(
            {
                "op": "replace",
                "path": "roles",
                "value": [{"value": "a", "primary": True}, {"value": "b", "primary": True}],
            }
        ),
        "invalidValue",
    ),
]


def adapter() -> ScimAdapter:
    """The kind's adapter, configured as the shared tables configure it."""
    settings = {"kind": "scim", "base_url": "http://127.0.0.1/scim/v2", "auth": {"token": "t"}}
    return ScimAdapter(
        "scim", VendorSettings.model_validate({**settings, **FIXTURES["scim"].settings})
    )


def adapter_body(changes: dict[str, Any]) -> Any:
    """The PatchOp the adapter sends for `changes` to the demo user."""
    change = ChangeSet("emp-42", DEMO, Changes.model_validate(changes).present())
    translation = adapter().translate(change)
    assert translation.request is not None
    return translation.request.body


async def test_patch_is_applied_and_the_user_returned(sim: Sim) -> None:
    """A PatchOp is applied: 200 with the User (schemas, id, no password), its new ETag,
    as application/scim+json; the stored user changed."""
    body = patch_op(
        {"op": "replace", "path": "name.givenName", "value": "Barb"},
        {"op": "replace", "path": "password", "value": "Secret-Passw0rd!"},
        {"op": "remove", "path": "nickName"},
    )
    answer = await sim.vendor("scim", body)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("application/scim+json")
    assert {name.lower(): value for name, value in answer.headers.items()}["etag"] == 'W/"2"'
    assert answer.body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]
    assert answer.body["id"] == DEMO
    assert answer.body["name"]["givenName"] == "Barb"
    assert "password" not in answer.body
    assert "nickName" not in answer.body
    stored = await sim.user("scim")
    assert stored["name"]["givenName"] == "Barb"
    assert stored["password"].startswith("sha256:")
    assert "Secret-Passw0rd!" not in str(stored)
    assert stored["meta"]["version"] == 'W/"2"'


async def test_entra_style_operations_are_read(sim: Sim) -> None:
    """A capitalised op and a filtered path to an existing entry (as Entra ID sends them)
    change that entry only."""
    body = patch_op(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "barbara@example.com"}
    )
    answer = await sim.vendor("scim", body)
    assert answer.status == 200, answer.body
    emails = {email["type"]: email["value"] for email in (await sim.user("scim"))["emails"]}
    assert emails == {"work": "barbara@example.com", "home": "babs@jensen.org"}


@pytest.mark.parametrize(("body", "scim_type"), BAD_PATCHES)
async def test_bad_patches_are_scim_errors(sim: Sim, body: Any, scim_type: str) -> None:
    """A PatchOp RFC 7644 refuses is a 400 SCIM Error (status a string, its scimType) and
    changes nothing."""
    before = await sim.user("scim")
    answer = await sim.vendor("scim", body)
    assert answer.status == 400, answer.body
    assert answer.body["schemas"] == [ERROR]
    assert answer.body["status"] == "400"
    assert answer.body["scimType"] == scim_type, answer.body
    assert answer.body["detail"]
    assert await sim.user("scim") == before


async def test_unknown_user_is_404(sim: Sim) -> None:
    """An id the provider does not hold is a 404 SCIM Error."""
    answer = await sim.vendor("scim", user_id="no-such-id")
    assert answer.status == 404
    assert answer.body["status"] == "404"
    assert "no-such-id" in answer.body["detail"]


async def test_bad_bearer_token_is_401(sim: Sim) -> None:
    """A wrong or missing bearer token is a 401 SCIM Error; the user is unchanged."""
    for token in ("wrong", None):
        answer = await sim.vendor("scim", token=token)
        assert answer.status == 401
        assert answer.body["schemas"] == [ERROR]
        assert answer.body["status"] == "401"
    assert (await sim.user("scim"))["title"] == "Tour Guide"


async def test_user_name_is_unique(sim: Sim) -> None:
    """A userName another user has (in any case) is a 409 uniqueness error."""
    await sim.put_user("scim", "other", {"userName": "ada@example.com"})
    body = patch_op({"op": "replace", "path": "userName", "value": "ADA@example.com"})
    answer = await sim.vendor("scim", body)
    assert answer.status == 409
    assert answer.body["scimType"] == "uniqueness"
    assert (await sim.user("scim"))["userName"] == "bjensen@example.com"


async def test_plain_json_is_read_too(sim: Sim) -> None:
    """RFC 7644 §3.1: application/json is accepted as well as application/scim+json."""
    answer = await sim.vendor(
        "scim", FIXTURES["scim"].simulator_body, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 200


async def test_control_put_refuses_what_is_not_a_user(sim: Sim) -> None:
    """The control API stores only SCIM Users: another document is a 400."""
    answer = await sim.put_user("scim", "u1", {"emails": "ada@example.com"})
    assert answer.status == 400
    assert "not a scim user" in answer.body["error"]
    assert (await sim.request("GET", "/_sandbox/scim/users/u1")).status == 404


async def test_every_mapped_field_is_applied(sim: Sim) -> None:
    """The adapter's PatchOp for every mapped field is accepted by the strict simulator and
    the stored user holds each value (multi-valued ones replaced by one work entry)."""
    changes = {
        "email": "ada@example.com",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "display_name": "Countess Ada",
        "phone": "+33 1 23 45 67 89",
        "job_title": "Analyst",
        "language": "en-GB",
        "timezone": "Europe/London",
        "active": False,
        "role": "admin",
        "password": "Secret-Passw0rd!",
    }
    answer = await sim.vendor("scim", adapter_body(changes))
    assert answer.status == 200, answer.body
    user = await sim.user("scim")
    assert user["emails"] == [{"value": "ada@example.com", "type": "work", "primary": True}]
    assert user["name"]["givenName"] == "Ada"
    assert user["name"]["familyName"] == "Lovelace"
    assert user["displayName"] == "Countess Ada"
    assert user["phoneNumbers"] == [{"value": "+33123456789", "type": "work", "primary": True}]
    assert (user["title"], user["preferredLanguage"]) == ("Analyst", "en-GB")
    assert (user["timezone"], user["active"]) == ("Europe/London", False)
    assert user["roles"] == [{"value": "Administrator", "primary": True}]
    assert user["password"].startswith("sha256:")


async def test_every_clear_is_applied(sim: Sim) -> None:
    """The adapter's removes for every clearable field are accepted, on attributes present
    or not, and leave them unassigned."""
    cleared = ["email", "given_name", "family_name", "display_name", "phone", "job_title"]
    cleared += ["language", "timezone", "role"]
    answer = await sim.vendor("scim", adapter_body(dict.fromkeys(cleared)))
    assert answer.status == 200, answer.body
    user = await sim.user("scim")
    for attribute in ("emails", "displayName", "phoneNumbers", "title", "roles", "timezone"):
        assert attribute not in user
    assert "preferredLanguage" not in user
    assert {"givenName", "familyName"}.isdisjoint(user["name"])


async def test_the_fixture_token_is_the_one_accepted(sim: Sim) -> None:
    """The sandbox accepts the kind's fixture token as a bearer token."""
    assert TOKENS["scim"] == FIXTURES["scim"].token
    answer = await sim.vendor("scim")
    assert answer.status == 200
