"""Wiring: the vendor simulators it is given and the control API in one aiohttp application.

Each vendor lives under its own path prefix, so one sandbox port serves every vendor and a
usersync config points each vendor's `base_url` at `http://HOST:PORT/<prefix>/...`. The
sandbox knows no vendor itself: the caller (usersync's composition root, or a test) passes
the `Simulator`s, which live in the vendor folders (`workers/vendors/<kind>/simulator.py`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from aiohttp import web

from sandbox.common import Simulator, fallback_route, vendor_route
from sandbox.control import control_app
from sandbox.state import STATE_KEY, SandboxState


def _check_simulators(simulators: Sequence[Simulator]) -> None:
    """Kinds and prefixes must be distinct: a clash would route one vendor's calls to another."""
    if not simulators:
        raise ValueError("the sandbox needs at least one simulator")
    kinds = [simulator.kind for simulator in simulators]
    prefixes = [simulator.vendor.prefix for simulator in simulators]
    for what, values in (("kind", kinds), ("prefix", prefixes)):
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"simulators share a {what}: {', '.join(repeated)}")
    for simulator in simulators:
        prefix = simulator.vendor.prefix
        if not prefix.startswith("/") or prefix.endswith("/") or prefix == "/_sandbox":
            raise ValueError(f"{simulator.kind}: prefix {prefix!r} must be /<name>, not /_sandbox")
        for _, path, _ in simulator.routes:
            if not path.startswith(prefix + "/"):
                raise ValueError(f"{simulator.kind}: route {path!r} is outside {prefix!r}")


def normalise_tokens(
    simulators: Sequence[Simulator], tokens: Mapping[str, Collection[str]]
) -> dict[str, frozenset[str]]:
    """Check the accepted credentials per kind; a mistake here would only show as 401s later."""
    known = {simulator.kind: simulator.vendor for simulator in simulators}
    unknown = sorted(set(tokens) - set(known))
    if unknown:
        raise ValueError(f"unknown vendor kinds in tokens: {', '.join(unknown)}")
    result: dict[str, frozenset[str]] = {}
    for kind, vendor in known.items():
        accepted = tokens.get(kind, ())
        if isinstance(accepted, str):
            raise TypeError(f"tokens[{kind!r}] must be a collection of strings, not a string")
        values = frozenset(accepted)
        if any(not isinstance(token, str) for token in values):
            raise TypeError(f"tokens[{kind!r}] must hold strings")
        if any(not token for token in values):
            raise ValueError(f"tokens[{kind!r}] must not hold an empty string")
        for token in values:
            vendor.check_token(token)
        result[kind] = values
    return result


def create_sandbox_app(
    simulators: Sequence[Simulator],
    tokens: Mapping[str, Collection[str]],
    seed_demo_users: bool = True,
) -> web.Application:
    """A fresh sandbox serving `simulators`; `tokens` maps each kind to the credentials it
    accepts (a kind left out accepts none).

    Raises ValueError for an unknown kind in `tokens`, a credential the vendor could never
    have issued (its `check_token`, e.g. a Fleet key not starting with `flt_sk_`), or two
    simulators sharing a kind or a prefix: mistakes that would otherwise show up later as
    unexplained 401s or 404s.
    """
    _check_simulators(simulators)
    app = web.Application()
    app[STATE_KEY] = SandboxState(
        tokens=normalise_tokens(simulators, tokens),
        models={simulator.kind: simulator.vendor.model for simulator in simulators},
        seed_demo_users=seed_demo_users,
    )
    for simulator in simulators:
        vendor = simulator.vendor
        for method, path, handler in simulator.routes:
            app.router.add_route(method, path, vendor_route(vendor, handler))
        app.router.add_route("*", vendor.prefix + "/{tail:.*}", fallback_route(vendor))
    catalogue = {
        simulator.kind: {
            "prefix": simulator.vendor.prefix,
            "demo_user_id": simulator.vendor.model.demo_id,
        }
        for simulator in simulators
    }
    app.add_subapp("/_sandbox", control_app(catalogue))
    return app
