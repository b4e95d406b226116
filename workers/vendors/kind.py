"""What a vendor kind is: everything usersync, its sandbox and its tests find in one folder.

Each `workers/vendors/<kind>/__init__.py` defines `KIND = VendorKind(...)` and
`workers/vendors/registry.py` lists it on one line. The simulator and the test fixtures are
named by dotted module path and imported only by who needs them (the sandbox wiring, the
tests), so production code never imports the sandbox toolkit or test data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from config.vendors import VendorSettings
from workers.vendors.interface import VendorAdapter

AdapterClass = Callable[[str, VendorSettings], VendorAdapter]
"""An adapter class: called with the instance name and its settings."""

KIND_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
"""A kind's name: its folder under workers/vendors/ and the config's `kind` value."""


@dataclass(frozen=True)
class VendorKind:
    """One vendor kind, as its folder supplies it.

    `adapter` turns canonical changes into the vendor's calls; `simulator` is the dotted path
    of the module whose `SIMULATOR` the sandbox serves; `fixtures` the dotted path of the
    module whose `FIXTURES` the shared test tables read; `demo_user_id` the vendor user the
    sandbox seeds (and the tests address); `summary` one line for `usersync kinds`.
    """

    name: str
    summary: str
    adapter: AdapterClass
    demo_user_id: str
    simulator: str
    fixtures: str

    def __post_init__(self) -> None:
        if not KIND_NAME.fullmatch(self.name):
            raise ValueError(f"vendor kind {self.name!r} must match {KIND_NAME.pattern}")
        adapter_kind = getattr(self.adapter, "kind", None)
        if adapter_kind != self.name:
            raise ValueError(f"vendor kind {self.name!r}: its adapter's kind is {adapter_kind!r}")
        if not self.demo_user_id:
            raise ValueError(f"vendor kind {self.name!r}: demo_user_id is empty")
