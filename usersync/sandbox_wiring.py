"""Composition root of the sandbox: the registered kinds' simulators, for `create_sandbox_app`.

The sandbox package is a toolkit that lists no vendor, and production code never imports a
simulator: this module, used only when a sandbox is started (`usersync sandbox`, `usersync
run` with `sandbox.enabled`, the tests), imports each registered kind's simulator module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from sandbox import Simulator
from workers.vendors.registry import KINDS, VendorKind


def load_simulator(kind: VendorKind) -> Simulator:
    """The `SIMULATOR` of the kind's simulator module, checked to be this kind's, seeding the
    kind's demo user: a folder that disagrees with itself fails here, naming the module."""
    simulator = getattr(importlib.import_module(kind.simulator), "SIMULATOR", None)
    if not isinstance(simulator, Simulator):
        raise TypeError(f"{kind.simulator}.SIMULATOR must be a sandbox.Simulator")
    if simulator.kind != kind.name:
        raise ValueError(f"{kind.simulator}: simulates {simulator.kind!r}, not {kind.name!r}")
    if simulator.vendor.model.demo_id != kind.demo_user_id:
        raise ValueError(f"{kind.simulator}: its demo user is not {kind.demo_user_id!r}")
    return simulator


def simulators_from_registry(kinds: Mapping[str, VendorKind] = KINDS) -> tuple[Simulator, ...]:
    """One simulator per registered kind, in registry order."""
    return tuple(load_simulator(kind) for kind in kinds.values())
