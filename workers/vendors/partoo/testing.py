"""Partoo's test data for the shared suites (see workers/vendors/testing.py)."""

from __future__ import annotations

from typing import Any, Final

from workers.vendors.partoo import KIND
from workers.vendors.testing import KindFixtures


def failure_message(body: Any) -> str:
    """Partoo's error body: `{"errors": {<kind>: message}}`, or `{"json": {"_schema": [...]}}`."""
    value = next(iter(body["errors"].values()))
    if isinstance(value, dict):
        return str(value["_schema"][0])
    return str(value)


FIXTURES: Final = KindFixtures(
    token="partoo-test-key",
    auth_header="x-APIKey",
    auth_prefix="",
    example_base_url="https://partoo.example/v2/",
    sandbox_path="/partoo/v2",
    settings={"roles": {"admin": "ORG_ADMIN", "employee": "BUSINESS_MANAGER"}},
    update_method="POST",
    update_path="user/{id}",
    standard_body={"email": "ada@example.com"},
    success_answer={"id": KIND.demo_user_id, "status": "success"},
    wrong_shape={"status": "failure"},
    no_home={
        "display_name": "Countess Ada",
        "phone": "+33123456789",
        "phone_country": "FR",
        "job_title": "Engineer",
        "start_date": "2024-01-15",
        "end_date": "2026-12-31",
        "birth_date": "1990-05-21",
        "birth_city": "Paris",
        "birth_country": "FR",
        "country": "FR",
        "timezone": "Europe/Paris",
        "tags": {"vip": "true"},
    },
    simulator_body={"first_name": "Augusta"},
    simulator_change=("first_name", "Perceval"),
    body_failure_status=400,
    failure_message=failure_message,
)
