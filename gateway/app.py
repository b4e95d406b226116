"""The aiohttp application of the gateway: its error middleware and its assembly.

The gateway never imports a vendor adapter: the preview endpoint calls a `Previewer`, and ingest
checks `vendor_fields` with a `VendorFieldsCheck`, both handed in by the entry point: the
workers' own translation code.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from time import perf_counter

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.exceptions import RedisError

from config.settings import Settings
from core.dead_letters import DeadLetters
from core.pairs import PairQueue
from core.ports import Previewer, VendorFieldsCheck
from core.redis_client import ReplicationTimeout
from core.secrets import secret_box
from core.source_rate import SourceRates
from core.store import Store
from core.telemetry import Telemetry
from core.vendor_guard import VendorGuard
from gateway import admin, batch, dead_letter_api, openapi, routes
from gateway.access import REQUEST_ID_HEADER, begin_request
from gateway.body import BODY_BUDGET, BodyBudget
from gateway.context import (
    DEAD_LETTERS,
    PREVIEWER,
    SECRET_BOX,
    SETTINGS,
    SOURCE_RATES,
    STORE,
    VENDOR_FIELDS,
    VENDOR_GUARD,
    json_response,
)
from gateway.errors import ApiError, redis_unavailable, replication_timeout
from gateway.instruments import GATEWAY_METRICS, GatewayMetrics, instrument
from gateway.lifecycle import LIFECYCLE, Lifecycle
from gateway.routing import Route, register
from gateway.scim import api as scim_api
from gateway.scim.errors import is_scim_path, scim_answer
from gateway.scim.store import RESOURCES, ResourceStore
from gateway.storage import add_storage_gauge, is_out_of_memory, storage_full

log = structlog.get_logger("usersync.gateway")

ROUTES: tuple[Route, ...] = (
    *routes.ROUTES,
    *batch.ROUTES,
    *dead_letter_api.ROUTES,
    *admin.ROUTES,
    *openapi.ROUTES,
    *scim_api.ROUTES,
)
"""Every route the gateway serves, one `ROUTES` list per module: registered with aiohttp and
described by `/openapi.json` from these same declarations (`gateway.routing`)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def gateway_middleware(metrics: GatewayMetrics) -> Middleware:
    """The gateway's one middleware, around every request: its id and log context
    (`gateway.access`: every answer carries the id, bound to its log lines), every failure
    rendered as docs/contract.md §2's JSON error (the one place a 500 can come from), or as a
    SCIM error under /scim/v2 (`gateway.scim.errors`), and the answer counted and timed
    (`gateway.instruments`, by the status rendered). One middleware rather than one per
    concern: each is a coroutine frame every request enters and every await of it resumes
    through."""

    @web.middleware
    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = perf_counter()
        rid, route = begin_request(request, started)
        method = request.method
        try:
            response = await _answer(request, handler, is_scim_path(request.path))
        except web.HTTPException as exc:  # a redirect: the only answer raised through
            metrics.observe(route, method, exc.status, perf_counter() - started)
            raise
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        metrics.observe(route, method, response.status, perf_counter() - started)
        return response

    return serve


async def _answer(request: web.Request, handler: Handler, scim: bool) -> web.StreamResponse:
    try:
        if scim:
            return await scim_answer(request, handler)
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body(), exc.status, exc.headers)
    except RedisError as exc:
        if is_out_of_memory(exc):  # Redis past maxmemory: what the storage gauge would say
            log.warning("storage_full_refused", path=request.path)
            error = storage_full()
        elif isinstance(exc, ReplicationTimeout):
            log.warning(
                "replication_timeout", path=request.path, acked=exc.acked, wanted=exc.wanted
            )
            error = replication_timeout()
        else:
            log.warning("redis_unavailable", path=request.path, error=type(exc).__name__)
            error = redis_unavailable()
        return json_response(error.body(), error.status, error.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return json_response(
            {"error": {"code": code, "message": exc.reason, "details": None}},
            exc.status,
            {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None,
        )
    except ConnectionResetError as exc:
        if not _client_gone(request):
            log.exception("unhandled_error", path=request.path, method=request.method)
            return _internal_error()
        # The client hung up mid-request (its body cut off): its fault, not the server's; the
        # answer (a 4xx, for whatever counts statuses) reaches no one.
        log.info("client_disconnected", path=request.path, method=request.method, error=str(exc))
        return json_response(
            {"error": {"code": "client_disconnected", "message": str(exc), "details": None}}, 400
        )
    except Exception:  # the top-level supervisor: log the traceback, answer 500
        log.exception("unhandled_error", path=request.path, method=request.method)
        return _internal_error()


def _client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed (a ConnectionResetError is the client's)."""
    return request.transport is None or request.transport.is_closing()


def _internal_error() -> web.Response:
    return json_response(
        {"error": {"code": "internal_error", "message": "internal error", "details": None}}, 500
    )


def create_gateway_app(
    settings: Settings,
    store: Store,
    previewer: Previewer,
    vendor_fields: VendorFieldsCheck,
    telemetry: Telemetry | None = None,
) -> web.Application:
    """The gateway; `previewer` and `vendor_fields` are the workers' code, handed in by the
    entry point (`usersync.runtime`): the preview, and the check of `vendor_fields` against
    each vendor's schema at ingest. `telemetry`: the process's metrics registry (one of the
    app's own without it)."""
    app = web.Application(client_max_size=settings.gateway.max_body_bytes)
    app[SETTINGS] = settings
    app[STORE] = store
    app[PREVIEWER] = previewer
    app[VENDOR_FIELDS] = vendor_fields
    pairs = PairQueue(store.redis, settings.retention.events_s, store.queue_name)
    app[DEAD_LETTERS] = DeadLetters(store.redis, pairs)
    app[VENDOR_GUARD] = VendorGuard(store.redis)
    app[SOURCE_RATES] = SourceRates(store.redis)
    app[SECRET_BOX] = secret_box(settings.secrets)
    app[RESOURCES] = ResourceStore(store.redis, store)
    add_storage_gauge(app, store.redis, settings.redis.max_memory_fraction)
    app[BODY_BUDGET] = BodyBudget(settings.gateway.max_inflight_body_bytes)
    app[LIFECYCLE] = Lifecycle()
    instrument(app, telemetry, settings, store, app[VENDOR_GUARD], app[DEAD_LETTERS])
    app.middlewares.append(gateway_middleware(app[GATEWAY_METRICS]))
    register(app, ROUTES)
    openapi.publish(app, ROUTES)
    return app


def apply_settings(
    app: web.Application,
    settings: Settings,
    previewer: Previewer,
    vendor_fields: VendorFieldsCheck,
) -> None:
    """Serve with new settings (SIGHUP; `usersync.reload` decides what may change): the
    settings and what is built from them are replaced where the app holds them. A handler
    reads `request.app[SETTINGS]` as it starts, so a request in flight finishes with the
    settings it began with and the next one gets the new ones.

    aiohttp deprecates changing a running app's state (a warning, not an error, through
    aiohttp 3.x); swapping whole values by reference is what this is, so the warning is
    silenced here and only here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app[SETTINGS] = settings
        app[PREVIEWER] = previewer
        app[VENDOR_FIELDS] = vendor_fields
        app[SECRET_BOX] = secret_box(settings.secrets)
        openapi.publish(app, ROUTES)
