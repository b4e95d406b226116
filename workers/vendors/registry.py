"""The registered vendor kinds, and the adapters of every configured vendor instance.

Adding a vendor kind is its folder `workers/vendors/<kind>/` (defining `KIND`) plus one line
in `KINDS` below; everything else (the config's `kind`, the sandbox, the test tables) reads
this mapping. See docs/adding-a-vendor.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from config import ConfigError, Settings
from core.ports import VendorFieldsCheck
from workers.vendors.interface import VendorAdapter
from workers.vendors.kind import AdapterClass, VendorKind

__all__ = [
    "ADAPTER_KINDS",
    "KINDS",
    "REGISTERED",
    "AdapterClass",
    "VendorKind",
    "build_adapters",
    "vendor_fields_check",
    "vendor_fields_schemas",
]

REGISTERED: Final = (
    "mileapp",
    "fleet",
    "plaspy",
    "partoo",
    "scim",
)
"""The registered kinds, one line each: the folder `workers/vendors/<name>/` defines `KIND`."""


def _load(name: str) -> VendorKind:
    """The `KIND` of `workers.vendors.<name>`, checked: a mistake fails at import, by name."""
    kind = getattr(importlib.import_module(f"{__package__}.{name}"), "KIND", None)
    if not isinstance(kind, VendorKind) or kind.name != name:
        raise TypeError(f"workers.vendors.{name}.KIND must be a VendorKind named {name!r}")
    return kind


KINDS: Mapping[str, VendorKind] = MappingProxyType({name: _load(name) for name in REGISTERED})
"""Config `kind` -> the vendor kind, in the order registered."""

ADAPTER_KINDS: Mapping[str, AdapterClass] = MappingProxyType(
    {name: kind.adapter for name, kind in KINDS.items()}
)
"""Config `kind` -> adapter class."""


def build_adapters(settings: Settings) -> dict[str, VendorAdapter]:
    """One adapter per configured vendor instance, enabled or not; ConfigError lists every
    problem with its key path."""
    adapters: dict[str, VendorAdapter] = {}
    problems: list[str] = []
    for name, vendor in settings.vendors.items():
        adapter_class = ADAPTER_KINDS.get(vendor.kind)
        if adapter_class is None:
            known = ", ".join(sorted(ADAPTER_KINDS))
            problems.append(f"vendors.{name}.kind: unknown kind {vendor.kind!r} (known: {known})")
            continue
        try:
            adapters[name] = adapter_class(name, vendor)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return adapters


def vendor_fields_check(adapters: Mapping[str, VendorAdapter]) -> VendorFieldsCheck:
    """The gateway's check of an event's `vendor_fields`, made of the configured instances'
    adapters (`VendorAdapter.vendor_fields_problems`, the rule `translate` applies): the
    composition root (`usersync.runtime`) hands it to the gateway, which imports no vendor
    code. An instance that is not configured has no problems here: the gateway refuses it
    by name."""

    def check(instance: str, fields: Any) -> list[dict[str, str]]:
        adapter = adapters.get(instance)
        if adapter is None:
            return []
        return [
            {"path": path, "message": message}
            for path, message in adapter.vendor_fields_problems(fields)
        ]

    return check


def vendor_fields_schemas() -> dict[str, dict[str, Any]]:
    """Kind -> the JSON schema of what an instance of it takes in an event's `vendor_fields`
    (`vendor_fields_schema()`), for every kind that describes its rule: `/openapi.json` gives
    it per instance; the composition root (`usersync.runtime`) hands it to the gateway."""
    schemas = {}
    for name, kind in KINDS.items():
        describe = getattr(kind.adapter, "vendor_fields_schema", None)
        schema = describe() if describe is not None else None
        if schema is not None:
            schemas[name] = schema
    return schemas
