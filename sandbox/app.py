"""Wiring: the four vendor simulators and the control API in one aiohttp application.

Each vendor lives under its own path prefix, so one sandbox port serves every vendor and a
usersync config points each vendor's `base_url` at `http://HOST:PORT/<prefix>/...`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import ModuleType
from typing import Final

from aiohttp import web

from sandbox import fleet, mileapp, partoo, plaspy
from sandbox.common import Vendor, fallback_route, vendor_route
from sandbox.control import control_app
from sandbox.state import STATE_KEY, SandboxState, normalise_tokens

VENDOR_MODULES: Final[tuple[ModuleType, ...]] = (mileapp, fleet, plaspy, partoo)


def create_sandbox_app(
    tokens: Mapping[str, Collection[str]], seed_demo_users: bool = True
) -> web.Application:
    """A fresh sandbox: `tokens` maps each vendor kind to the credentials it accepts.

    Raises ValueError for an unknown kind or a Fleet key not starting with `flt_sk_`, which
    would otherwise only show up later as unexplained 401s.
    """
    app = web.Application()
    vendors: list[Vendor] = [module.VENDOR for module in VENDOR_MODULES]
    app[STATE_KEY] = SandboxState(
        tokens=normalise_tokens(tokens),
        models={vendor.kind: vendor.model for vendor in vendors},
        seed_demo_users=seed_demo_users,
    )
    for module in VENDOR_MODULES:
        vendor: Vendor = module.VENDOR
        for method, path, handler in module.ROUTES:
            app.router.add_route(method, path, vendor_route(vendor, handler))
        app.router.add_route("*", vendor.prefix + "/{tail:.*}", fallback_route(vendor))
    app.add_subapp("/_sandbox", control_app())
    return app
