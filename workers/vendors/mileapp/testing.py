"""MileApp's test data for the shared suites (see workers/vendors/testing.py)."""

from __future__ import annotations

from typing import Any, Final

from workers.vendors.mileapp import KIND
from workers.vendors.testing import KindFixtures


def failure_message(body: Any) -> str:
    """MileApp's failure body: `status: false` and a `message`."""
    assert body["status"] is False
    return str(body["message"])


FIXTURES: Final = KindFixtures(
    token="mileapp-test-token",
    auth_header="Authorization",
    auth_prefix="Bearer ",
    example_base_url="https://mileapp.example/api/v3/",
    sandbox_path="/mileapp/api/v3",
    update_method="PATCH",
    update_path="user",
    standard_body={"_id": KIND.demo_user_id, "email": "ada@example.com"},
    success_answer={
        "status": True,
        "message": "Data has been updated successfully.",
        "property": {},
    },
    wrong_shape={"message": "no status here"},
    no_home={
        "phone_country": "FR",
        "language": "fr",
        "job_title": "Engineer",
        "start_date": "2024-01-15",
        "end_date": "2026-12-31",
        "birth_date": "1990-05-21",
        "birth_city": "Paris",
        "birth_country": "FR",
        "country": "FR",
        "timezone": "Europe/Paris",
        "role": "admin",
        "active": False,
        "password": "Secret-Passw0rd!",
        "tags": {"vip": "true"},
    },
    simulator_body={"_id": KIND.demo_user_id, "name": "Ada Lovelace"},
    simulator_change=("name", "Example"),
    body_failure_status=200,
    failure_message=failure_message,
)
