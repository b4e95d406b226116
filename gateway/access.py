"""The access log: one line per answered request, and the request id every answer carries.

aiohttp calls its access logger once per answer, from the connection handler
(`gateway.connections.GuardedRequestHandler.log_access`), in the request's own task, so the
line is written where the handler's log context still holds: `request_id` (bound at the start
of the request by `begin_request`), `source` once the caller is authenticated
(`gateway.auth`), `event_id` and `user_id` once the event is read. The line adds what only
the answer knows: `method`, `route` (the template, `/v1/events/{event_id}`, never the path
itself: a path carries ids), `status`, `duration_ms`, and for a refusal its error `code`.

`X-Request-Id` is taken from the request when it is a safe token (1-128 characters of
`[A-Za-z0-9._:-]`), else a new one is made (32 hex digits); the answer carries it either way,
so a caller can quote it and an operator find the request's lines.
"""

from __future__ import annotations

import logging
import random
import re
from time import perf_counter
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from core.log_context import new_context

log = structlog.get_logger("usersync.access")

REQUEST_ID_HEADER = "X-Request-Id"
UNMATCHED = "unmatched"
"""The `route` label of a request no route matched (404, 405) in metrics."""
MAX_REQUEST_ID = 128
_SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID}}}")
ROUTE: web.RequestKey[str | None] = web.RequestKey("usersync_route")
"""Request state key: the matched route's template (None when no route matched), set by
`begin_request`. A request without it never reached the app (the HTTP parser refused it;
`bad_http_request` says so) and gets no access line."""
STARTED = web.RequestKey("usersync_started", float)
"""Request state key: `perf_counter()` when the app took the request (aiohttp's own start
time comes from the event loop's clock, which uvloop keeps in whole milliseconds)."""


def request_id(given: str | None) -> str:
    """The caller's request id when it is safe to log and echo, else a new one."""
    if given is not None and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    # Unique, not secret (a caller may pick its own): the random module's generator, reseeded
    # in a forked child, costs half of os.urandom's system call.
    return f"{random.getrandbits(128):032x}"


def begin_request(request: web.Request, started: float) -> tuple[str, str]:
    """At the start of a request (`started`: its `perf_counter()`): a fresh log context
    holding its request id, and its route template noted for the access line. Returns the
    request id for the answer's header and the route's label for metrics (`UNMATCHED` when
    no route matched)."""
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    new_context(request_id=rid)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    request[ROUTE] = route
    request[STARTED] = started
    return rid, UNMATCHED if route is None else route


def error_code(response: web.StreamResponse) -> str | None:
    """The `error.code` of a JSON error answer (gateway.errors), read back from its body:
    every refusal is rendered in one shape, whoever raised it."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body.startswith(b'{"error"'):
        return None
    try:
        code = orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


class AccessLog(AbstractAccessLogger):
    """aiohttp's access-logger hook, writing the `http_request` line (see the module)."""

    __slots__ = ()

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = request.get(ROUTE, _NOT_ROUTED)
        if route is _NOT_ROUTED:
            return
        status = response.status
        duration_ms = round((perf_counter() - request[STARTED]) * 1000, 2)
        if status < 400:
            log.info(
                "http_request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=duration_ms,
            )
            return
        emit = log.warning if status >= 500 else log.info
        emit(
            "http_request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=duration_ms,
            code=error_code(response),
        )


_NOT_ROUTED = object()

ACCESS_LOG_ARGS: dict[str, Any] = {
    "access_log_class": AccessLog,
    "access_log": logging.getLogger("usersync.access"),
}
"""What `web.AppRunner` takes to write the access line (aiohttp wants a logger object,
which this class does not use: it writes through structlog)."""
