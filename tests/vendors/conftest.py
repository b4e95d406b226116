"""Factories for the adapter unit tests: vendor settings and change sets, typed as the worker
passes them (changes parsed by `gateway.events.Changes`, so dates are dates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from config.settings import VendorSettings
from gateway.events import Changes
from workers.vendors.base import ChangeSet

TOKENS = {
    "mileapp": "mileapp-secret-token",
    "fleet": "flt_sk_secret_token",
    "plaspy": "plaspy-secret-token",
    "partoo": "partoo-secret-api-key",
}
BASE_URLS = {
    "mileapp": "https://mileapp.example/api/v3/",
    "fleet": "https://fleet.example/api",
    "plaspy": "https://plaspy.example",
    "partoo": "https://partoo.example/v2/",
}
ROLES = {
    "mileapp": {},
    "fleet": {"admin": "ADMIN", "employee": "EMPLOYEE"},
    "plaspy": {"admin": "administrators", "employee": "users"},
    "partoo": {"admin": "ORG_ADMIN", "employee": "BUSINESS_MANAGER"},
}

MakeSettings = Callable[..., VendorSettings]
MakeChange = Callable[..., ChangeSet]


@pytest.fixture
def vendor_settings() -> MakeSettings:
    """Settings of one vendor instance of `kind`; keyword arguments override the defaults."""

    def make(kind: str, **overrides: Any) -> VendorSettings:
        raw: dict[str, Any] = {
            "kind": kind,
            "base_url": BASE_URLS[kind],
            "auth": {"token": TOKENS[kind]},
            "roles": ROLES[kind],
        }
        raw.update(overrides)
        return VendorSettings.model_validate(raw)

    return make


@pytest.fixture
def change_set() -> MakeChange:
    """A ChangeSet whose changes come from a JSON-ish dict through the canonical model."""

    def make(
        changes: dict[str, Any],
        *,
        vendor_user_id: str = "42",
        vendor_fields: Any = None,
        profile: dict[str, str] | None = None,
    ) -> ChangeSet:
        return ChangeSet(
            user_id="emp-42",
            vendor_user_id=vendor_user_id,
            changes=Changes.model_validate(changes).present(),
            vendor_fields={} if vendor_fields is None else vendor_fields,
            profile=profile or {},
        )

    return make
