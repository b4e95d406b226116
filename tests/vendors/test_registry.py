"""The registry: one adapter per configured vendor instance, config errors by key path."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError, Settings
from workers.vendors.fleet import FleetAdapter
from workers.vendors.mileapp import MileAppAdapter
from workers.vendors.partoo import PartooAdapter
from workers.vendors.plaspy import PlaspyAdapter
from workers.vendors.registry import ADAPTER_KINDS, build_adapters


def vendor(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "base_url": "https://vendor.example", "auth": {"token": "t"}, **extra}


def test_every_kind_is_registered_under_its_own_name() -> None:
    """ADAPTER_KINDS maps each kind to the adapter class whose `kind` it is."""
    assert dict(ADAPTER_KINDS) == {
        "mileapp": MileAppAdapter,
        "fleet": FleetAdapter,
        "plaspy": PlaspyAdapter,
        "partoo": PartooAdapter,
    }


def test_one_adapter_per_instance_enabled_or_not() -> None:
    """Every configured instance gets its adapter, named after it, disabled ones included."""
    settings = Settings.model_validate(
        {
            "vendors": {
                "mileapp": vendor("mileapp"),
                "fleet-eu": vendor("fleet", roles={"admin": "ADMIN"}),
                "plaspy": vendor("plaspy"),
                "partoo-fr": vendor("partoo"),
                "partoo-es": vendor("partoo", enabled=False),
            }
        }
    )
    adapters = build_adapters(settings)
    assert {name: type(adapter) for name, adapter in adapters.items()} == {
        "mileapp": MileAppAdapter,
        "fleet-eu": FleetAdapter,
        "plaspy": PlaspyAdapter,
        "partoo-fr": PartooAdapter,
        "partoo-es": PartooAdapter,
    }
    assert adapters["partoo-es"].name == "partoo-es"
    assert adapters["partoo-es"].settings is settings.vendors["partoo-es"]


def test_no_vendors_no_adapters() -> None:
    """A config without vendors builds no adapters."""
    assert build_adapters(Settings()) == {}


def test_unknown_kind_names_the_key_and_the_known_kinds() -> None:
    """An unknown kind is a ConfigError naming vendors.<name>.kind and listing known kinds."""
    settings = Settings.model_validate({"vendors": {"crm": vendor("salesforce")}})
    with pytest.raises(ConfigError) as caught:
        build_adapters(settings)
    assert str(caught.value) == (
        "vendors.crm.kind: unknown kind 'salesforce' (known: fleet, mileapp, partoo, plaspy)"
    )


def test_every_problem_is_listed() -> None:
    """All problems of all instances are reported at once, each with its key path."""
    settings = Settings.model_validate(
        {
            "vendors": {
                "crm": vendor("salesforce"),
                "fleet-eu": vendor("fleet", roles={"admin": "BOSS"}),
                "partoo": vendor("partoo", roles={"admin": "ORG_ADMIN", "x": "ADMIN"}),
                "mileapp": vendor("mileapp", id_field="name"),
            }
        }
    )
    with pytest.raises(ConfigError) as caught:
        build_adapters(settings)
    message = str(caught.value)
    for path in (
        "vendors.crm.kind: unknown kind 'salesforce'",
        "vendors.fleet-eu.roles.admin: 'BOSS' is not one of EMPLOYEE, ADMIN",
        "vendors.partoo.roles.x: 'ADMIN' is not one of ORG_ADMIN,",
        "vendors.mileapp.id_field: 'name'",
    ):
        assert path in message
    assert "vendors.partoo.roles.admin" not in message
