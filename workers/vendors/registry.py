"""Config `kind` -> adapter class, and the adapters of every configured vendor instance.

Adding a vendor kind is one line here plus its package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from config import ConfigError, Settings
from config.settings import VendorSettings
from workers.vendors.base import VendorAdapter
from workers.vendors.fleet import FleetAdapter
from workers.vendors.mileapp import MileAppAdapter
from workers.vendors.partoo import PartooAdapter
from workers.vendors.plaspy import PlaspyAdapter

AdapterClass = Callable[[str, VendorSettings], VendorAdapter]
"""An adapter class: called with the instance name and its settings."""

ADAPTER_KINDS: Mapping[str, AdapterClass] = {
    MileAppAdapter.kind: MileAppAdapter,
    FleetAdapter.kind: FleetAdapter,
    PlaspyAdapter.kind: PlaspyAdapter,
    PartooAdapter.kind: PartooAdapter,
}


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
