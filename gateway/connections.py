"""Connections the gateway holds: time limits per phase of a request, and a cap on how many.

aiohttp bounds only the idle time between requests (`keepalive_timeout`, also armed when a
connection opens); a client sending its headers or body a byte at a time, or thousands of
connections doing nothing, would otherwise hold descriptors and memory for as long as they
like. Each connection here runs one timer, set by the phase it is in:

- **head** (opened, or the first bytes of a next request): the headers must be complete
  within `header_timeout_s`, else the connection is closed;
- **body** (headers in, body streaming): the whole body must arrive within `body_timeout_s`
  of the headers, else the reader gets `BodyTimeout` (the handler answers 408) and the
  connection is closed after the answer;
- **busy** (the handler runs on a complete request): no timer; **idle** (between requests):
  aiohttp's own keep-alive timer (`keepalive_timeout_s`).

Past `max_connections`, a new connection closes the oldest one that owes nobody an answer
(waiting for headers, idle, or draining a body already answered); when every one is
handling a request, the new one gets a canned 503 `overloaded` and is closed. Either way
nothing queues: descriptors stay within the cap (plus the connections being accepted).

The subclass reads aiohttp's request counter and message queue (`_request_count`,
`_messages`) and hooks `log_access` (called once per answer); tests/security/
test_slow_clients.py fails if an aiohttp upgrade changes them.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from config.ingress import GatewaySettings

log = structlog.get_logger("usersync.gateway")

REPORT_EVERY_S = 10.0
"""Closed and refused connections are summed in one log line at most this often."""
DESCRIPTOR_HEADROOM = 512
"""Descriptors beyond the connection cap: Redis pools, the listening socket, logs, and the
connections accepted in one round before they are closed."""


class BodyTimeout(TimeoutError):
    """A request's body did not arrive within `body_timeout_s` of its headers. A TimeoutError,
    so aiohttp's lingering read after the answer stops on it rather than logging it."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, gateway: GatewaySettings) -> ConnectionLimits:
        return cls(
            gateway.header_timeout_s,
            gateway.body_timeout_s,
            gateway.keepalive_timeout_s,
            gateway.max_connections,
        )


_OVERLOADED_BODY = orjson.dumps(
    {
        "error": {
            "code": "overloaded",
            "message": "the gateway has too many open connections; retry later",
            "details": None,
        }
    }
)
OVERLOADED_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_OVERLOADED_BODY)).encode() + b"\r\n\r\n" + _OVERLOADED_BODY
)
"""What a connection past the cap gets when no other can be closed for it."""

# Phases of a connection (see the module docstring).
_HEAD, _BODY, _BUSY, _IDLE, _DRAIN, _REFUSED = range(6)


class ConnectionGuard:
    """The protocol factory of one listening socket: builds each connection's handler, holds
    the open ones and, oldest first, those that may be closed to make room."""

    def __init__(self, server: web.Server, limits: ConnectionLimits) -> None:
        self.server = server
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.open: set[GuardedRequestHandler] = set()
        self.idle: dict[GuardedRequestHandler, None] = {}
        """Connections that owe no answer, in the order they became so (a dict keeps it)."""
        self.counts: dict[str, int] = {}
        self._next_report = 0.0
        self._handler_args: dict[str, Any] = {
            **server._kwargs,  # what the app and runner configured (access log, debug)
            "keepalive_timeout": limits.keepalive_timeout_s,
        }

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self.server, guard=self, loop=self.loop, **self._handler_args)

    def admit(self, handler: GuardedRequestHandler) -> bool:
        """Room for a new connection: at the cap, the oldest idle one is closed; False when
        none is."""
        if len(self.open) >= self.limits.max_connections:
            if not self.idle:
                self.note("refused")
                return False
            victim = next(iter(self.idle))
            self.forget(victim)
            victim.force_close()
            self.note("evicted")
        self.open.add(handler)
        return True

    def forget(self, handler: GuardedRequestHandler) -> None:
        self.open.discard(handler)
        self.idle.pop(handler, None)

    def note(self, event: str) -> None:
        """Count a closed or refused connection; log the counts at most every REPORT_EVERY_S
        (an attack would otherwise write a line per connection)."""
        self.counts[event] = self.counts.get(event, 0) + 1
        now = self.loop.time()
        if now >= self._next_report:
            self._next_report = now + REPORT_EVERY_S
            log.warning("connections_closed", open=len(self.open), **self.counts)
            self.counts = {}


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with the phase timer and the cap of `ConnectionGuard`."""

    __slots__ = ("_body", "_guard", "_phase", "_timer")

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._phase = _HEAD
        self._timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None

    def _arm(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay_s, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._phase = _REFUSED
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(OVERLOADED_ANSWER)
            transport.close()
            return
        super().connection_made(transport)
        self._guard.idle[self] = None
        self._arm(self._guard.limits.header_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._phase == _REFUSED:
            return
        self._disarm()
        self._body = None
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._headers_in()
        elif self._phase == _IDLE and data:
            self._phase = _HEAD  # the first bytes of the next request
            self._arm(self._guard.limits.header_timeout_s)

    def _headers_in(self) -> None:
        """A request's headers are complete: its body has `body_timeout_s` to follow."""
        self._guard.idle.pop(self, None)
        payload = self._messages[-1][1] if self._messages else None
        if payload is None or payload.is_eof():
            self._phase = _BUSY
            self._disarm()
            return
        self._phase = _BODY
        self._body = payload
        self._arm(self._guard.limits.body_timeout_s)
        payload.on_eof(self._body_in)

    def _body_in(self) -> None:
        if self._phase == _BODY:
            self._phase = _BUSY
        elif self._phase == _DRAIN:
            self._phase = _IDLE
        else:
            return
        self._body = None
        self._disarm()

    def log_access(
        self, request: BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        """Called by aiohttp once an answer is written: the connection owes nothing more."""
        super().log_access(request, response, time)
        if self._messages or self._phase in (_HEAD, _IDLE, _REFUSED):
            return  # a pipelined request is queued, or the connection is already waiting
        self._phase = _DRAIN if self._phase in (_BODY, _DRAIN) else _IDLE
        if self._phase == _IDLE:
            self._disarm()
        if self.transport is not None:
            self._guard.idle[self] = None

    def _expire(self) -> None:
        self._timer = None
        phase = self._phase
        if phase == _BODY and self._body is not None:
            # The handler may be reading: let it answer 408, then close (see BodyTimeout).
            self._body.set_exception(BodyTimeout())
            self.close()
            self._phase = _DRAIN
            self._arm(self._guard.limits.header_timeout_s)  # a last bound on that answer
            self._guard.note("body_timeout")
        elif phase in (_HEAD, _DRAIN):
            self._guard.note("header_timeout" if phase == _HEAD else "body_timeout")
            self._guard.forget(self)
            self.force_close()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are `GuardedRequestHandler`s under one `ConnectionGuard`."""

    __slots__ = ("_limits", "guard")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ConnectionLimits,
        *,
        reuse_port: bool = False,
    ) -> None:
        """`reuse_port`: share the port with the other processes of a `gateway.processes`
        group (SO_REUSEPORT: the kernel spreads new connections over their listeners)."""
        super().__init__(runner, host, port, reuse_port=reuse_port)
        self._limits = limits
        self.guard: ConnectionGuard | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would serve plainly
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._limits)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard, self._host, self._port, backlog=self._backlog, reuse_port=self._reuse_port
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def ensure_descriptors(max_connections: int) -> None:
    """Raise the process's soft descriptor limit to hold the connection cap (up to the hard
    limit); warn when even that is short, since accept() failing stops every new client."""
    needed = max_connections + DESCRIPTOR_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("descriptor_limit_low", limit=soft, needed=needed)
