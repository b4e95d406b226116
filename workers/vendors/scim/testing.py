"""SCIM's test data for the shared suites (see workers/vendors/testing.py)."""

from __future__ import annotations

from typing import Any, Final

from workers.vendors.scim import KIND
from workers.vendors.scim.schema import ERROR_URN, MEDIA_TYPE, PATCH_OP_URN, USER_URN
from workers.vendors.testing import KindFixtures


def failure_message(body: Any) -> str:
    """A SCIM Error body (RFC 7644 §3.12): its schema, `status` as a string, `detail`."""
    assert body["schemas"] == [ERROR_URN]
    assert isinstance(body["status"], str)
    return str(body["detail"])


def stored_email(document: Any) -> Any:
    """A stored SCIM User's email: the value of its primary entry of `emails`."""
    return next(email["value"] for email in document["emails"] if email.get("primary"))


def patch_op(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp body holding `operations`."""
    return {"schemas": [PATCH_OP_URN], "Operations": list(operations)}


FIXTURES: Final = KindFixtures(
    token="scim-test-token",
    auth_header="Authorization",
    auth_prefix="Bearer ",
    example_base_url="https://scim.example/scim/v2",
    sandbox_path="/scim/v2",
    settings={"roles": {"admin": "Administrator", "employee": "Employee"}},
    update_method="PATCH",
    update_path="Users/{id}",
    standard_body=patch_op(
        {
            "op": "replace",
            "path": "emails",
            "value": [{"value": "ada@example.com", "type": "work", "primary": True}],
        }
    ),
    success_answer={
        "schemas": [USER_URN],
        "id": KIND.demo_user_id,
        "userName": "bjensen@example.com",
        "meta": {"resourceType": "User", "version": 'W/"2"'},
    },
    wrong_shape={"id": KIND.demo_user_id, "userName": "bjensen@example.com"},
    no_home={
        "phone_country": "FR",
        "country": "FR",
        "start_date": "2024-01-15",
        "end_date": "2026-12-31",
        "birth_date": "1990-05-21",
        "birth_city": "Paris",
        "birth_country": "FR",
        "tags": {"vip": "true"},
    },
    simulator_body=patch_op({"op": "replace", "path": "title", "value": "Astronaut"}),
    simulator_change=("title", "Tour Guide"),
    body_failure_status=400,
    failure_message=failure_message,
    media_type=MEDIA_TYPE,
    stored_email=stored_email,
)
