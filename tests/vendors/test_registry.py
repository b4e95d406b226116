"""The registry: the registered kinds, one adapter per configured vendor instance, config
errors by key path."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import workers.vendors
from config import ConfigError, Settings
from usersync.cli import main
from usersync.sandbox_wiring import load_simulator
from workers.vendors.fleet import FleetAdapter
from workers.vendors.kind import VendorKind
from workers.vendors.mileapp import MileAppAdapter
from workers.vendors.partoo import PartooAdapter
from workers.vendors.plaspy import PlaspyAdapter
from workers.vendors.registry import ADAPTER_KINDS, KINDS, build_adapters
from workers.vendors.testing import fixtures_of


def vendor(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "base_url": "https://vendor.example", "auth": {"token": "t"}, **extra}


def test_every_kind_is_registered_under_its_own_name() -> None:
    """ADAPTER_KINDS maps each registered kind to the adapter class whose `kind` it is, the
    shipped four among them."""
    assert set(ADAPTER_KINDS) == set(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert ADAPTER_KINDS[name] is kind.adapter
        assert getattr(kind.adapter, "kind", None) == name
    assert {
        "mileapp": MileAppAdapter,
        "fleet": FleetAdapter,
        "plaspy": PlaspyAdapter,
        "partoo": PartooAdapter,
    }.items() <= dict(ADAPTER_KINDS).items()


def test_every_kind_folder_is_registered() -> None:
    """Each folder of workers/vendors/ that defines a KIND is registered: a kind cannot be
    half added (a folder without its registry line)."""
    folders = {
        module.name
        for module in pkgutil.iter_modules(workers.vendors.__path__)
        if module.ispkg
        and isinstance(
            getattr(importlib.import_module(f"workers.vendors.{module.name}"), "KIND", None),
            VendorKind,
        )
    }
    assert folders == set(KINDS)


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kind_names_its_own_simulator(name: str) -> None:
    """A kind's simulator is a module of its own folder, simulating that kind and seeding the
    kind's demo user (what usersync.sandbox_wiring checks when a sandbox starts)."""
    kind = KINDS[name]
    assert kind.simulator.startswith(f"workers.vendors.{name}.")
    simulator = load_simulator(kind)
    assert simulator.kind == name
    assert simulator.vendor.model.demo_id == kind.demo_user_id


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kind_names_its_own_fixtures(name: str) -> None:
    """A kind's test fixtures are a module of its own folder, and their token is one its
    simulator can be configured with."""
    kind = KINDS[name]
    assert kind.fixtures.startswith(f"workers.vendors.{name}.")
    fixtures = fixtures_of(kind)
    load_simulator(kind).vendor.check_token(fixtures.token)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Fleet"}, "must match"),
        ({"name": "crm"}, "its adapter's kind is 'fleet'"),
        ({"demo_user_id": ""}, "demo_user_id is empty"),
    ],
)
def test_a_malformed_kind_is_refused(fields: dict[str, Any], message: str) -> None:
    """A VendorKind whose name is not a folder name, or is not its adapter's kind, or has no
    demo user, is refused when it is defined."""
    good: dict[str, Any] = {
        "name": "fleet",
        "summary": "Fleet",
        "adapter": FleetAdapter,
        "demo_user_id": "42",
        "simulator": "workers.vendors.fleet.simulator",
        "fixtures": "workers.vendors.fleet.testing",
    }
    with pytest.raises(ValueError, match=message):
        VendorKind(**{**good, **fields})


def test_kinds_command_lists_every_registered_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """`usersync kinds` prints one line per registered kind, in registry order, with its
    summary and sandbox demo user."""
    assert main(["kinds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(KINDS)
    for line, kind in zip(lines, KINDS.values(), strict=True):
        assert kind.summary in line
        assert kind.demo_user_id in line


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
        f"vendors.crm.kind: unknown kind 'salesforce' (known: {', '.join(sorted(KINDS))})"
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
