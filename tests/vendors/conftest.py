"""Factories for the adapter unit tests: vendor settings and change sets, typed as the worker
passes them (changes parsed by `core.event.Changes`, so dates are dates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from config.vendors import VendorSettings
from core.event import Changes
from tests.kinds import FIXTURES, TOKENS
from workers.vendors.interface import ChangeSet

# Per kind, from its testing module (workers/vendors/<kind>/testing.py), as TOKENS is.
BASE_URLS = {name: fixtures.example_base_url for name, fixtures in FIXTURES.items()}

__all__ = ["BASE_URLS", "TOKENS", "MakeChange", "MakeSettings"]

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
            **FIXTURES[kind].settings,
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
