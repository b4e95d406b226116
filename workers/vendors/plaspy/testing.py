"""Plaspy's test data for the shared suites (see workers/vendors/testing.py)."""

from __future__ import annotations

from typing import Any, Final

from workers.vendors.plaspy import KIND
from workers.vendors.testing import KindFixtures


def failure_message(body: Any) -> str:
    """Plaspy's failure body: `success: false`, `error`, and the usage counters."""
    assert body["success"] is False
    assert {"apiUsage", "apiDailyUsage"} <= body.keys()
    return str(body["error"])


FIXTURES: Final = KindFixtures(
    token="plaspy-test-token",
    auth_header="Authorization",
    auth_prefix="Bearer ",
    example_base_url="https://plaspy.example",
    sandbox_path="/plaspy",
    settings={"roles": {"admin": "administrators", "employee": "users"}},
    update_method="PATCH",
    update_path="api/users/{id}",
    standard_body=[{"op": "add", "path": "/email", "value": "ada@example.com"}],
    success_answer={
        "success": True,
        "id": KIND.demo_user_id,
        "apiUsage": 25,
        "apiDailyUsage": 100,
    },
    wrong_shape={"success": "yes"},
    no_home={
        "phone": "+33123456789",
        "phone_country": "FR",
        "language": "fr",
        "birth_date": "1990-05-21",
        "birth_city": "Paris",
        "birth_country": "FR",
    },
    simulator_body=[{"op": "replace", "path": "/name", "value": "Ada Lovelace"}],
    simulator_change=("name", "Juan Perez"),
    body_failure_status=200,
    failure_message=failure_message,
)
