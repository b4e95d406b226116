"""What the process wiring (`usersync.runtime`) tells a running gateway: the drain began.

On SIGTERM the gateway keeps answering every call (requests in flight finish, new ones are
served while load balancers catch up), but `/readyz` answers 503 `shutting_down` from the
first moment, so whatever routes traffic by readiness takes this process out before its
listener closes.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import ApiError


class Lifecycle:
    """The gateway process's stage, changed by the wiring and read by `/readyz`."""

    __slots__ = ("shutting_down",)

    def __init__(self) -> None:
        self.shutting_down = False


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)


def check_ready(app: web.Application) -> None:
    """503 `shutting_down` once the drain has begun."""
    if app[LIFECYCLE].shutting_down:
        raise ApiError(
            503,
            "shutting_down",
            "this gateway process is stopping; send requests to another one",
            headers={"Retry-After": "1"},
        )
