"""Fleet's test data for the shared suites (see workers/vendors/testing.py)."""

from __future__ import annotations

from typing import Any, Final

from workers.vendors.testing import KindFixtures


def failure_message(body: Any) -> str:
    """Fleet's error body: `{"error": {"code", "message"}}`."""
    return str(body["error"]["message"])


FIXTURES: Final = KindFixtures(
    token="flt_sk_test_token",
    auth_header="Authorization",
    auth_prefix="Bearer ",
    example_base_url="https://fleet.example/api",
    sandbox_path="/fleet/api",
    settings={"roles": {"admin": "ADMIN", "employee": "EMPLOYEE"}},
    update_method="PATCH",
    update_path="users/{id}",
    standard_body={"email": "ada@example.com"},
    success_answer={"data": {"id": 42, "company_id": 7, "email": "ada@example.com"}},
    wrong_shape={"id": 42},
    no_home={
        "display_name": "Countess Ada",
        "country": "FR",
        "timezone": "Europe/Paris",
        "active": False,
        "tags": {"vip": "true"},
    },
    simulator_body={"first_name": "Augusta"},
    simulator_change=("first_name", "Ada"),
    body_failure_status=400,
    failure_message=failure_message,
)
