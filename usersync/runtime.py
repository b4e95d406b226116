"""The composition root: builds the parts from Settings and runs them until a signal.

The only module that knows both the gateway and the workers; it hands the workers' preview
to the gateway, so the gateway itself never imports an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import structlog
from aiohttp import web
from arq.worker import Worker

from config.settings import Settings
from core.redis_client import RedisTarget, ReplicaAck, connect
from core.store import Store
from core.telemetry import Telemetry
from gateway import openapi
from gateway.access import ACCESS_LOG_ARGS
from gateway.app import apply_settings as apply_gateway_settings
from gateway.app import create_gateway_app
from gateway.connections import ConnectionLimits, GuardedSite, ensure_descriptors
from gateway.lifecycle import LIFECYCLE
from usersync.heap import settle_heap
from usersync.lifecycle import ProcessControl
from usersync.redis_server import EmbeddedRedis, RedisServerError
from usersync.supervisor import PROCESS_HEADER, ChildOrders, gateway_processes
from workers.health import create_worker_http_app
from workers.instruments import DeliveryMetrics
from workers.preview import make_previewer
from workers.vendors.interface import VendorAdapter
from workers.vendors.registry import build_adapters, vendor_fields_check, vendor_fields_schemas
from workers.worker import (
    ENGINE_REDIS,
    build_worker,
    stop_taking_jobs,
    stop_worker,
    worker_running,
)
from workers.worker import apply_settings as apply_worker_settings

log = structlog.get_logger("usersync")

RESTART_DELAY_S = (0.5, 10.0)
"""A worker that died is restarted after the first delay, doubling up to the second."""
SANDBOX_MISSING = (
    "usersync: the vendor simulators are not installed here (the production image leaves them "
    "out): use the image's `sandbox` target or a source checkout, or set sandbox.enabled: false"
)
"""Why `usersync sandbox` (or `run` with sandbox.enabled) cannot start in a production image."""


def sandbox_tokens(settings: Settings) -> dict[str, set[str]]:
    """The credentials the sandbox accepts: those of every configured vendor instance, by kind."""
    tokens: dict[str, set[str]] = defaultdict(set)
    for vendor in settings.vendors.values():
        tokens[vendor.kind].add(vendor.auth.token.get_secret_value())
    return dict(tokens)


@contextlib.asynccontextmanager
async def serving(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits | None = None,
    *,
    access_log: bool = False,
    shutdown_timeout: float = 5,
    reuse_port: bool = False,
) -> AsyncIterator[str]:
    """Serve `app` for the block; yields the bound base URL (port 0 picks a free port).
    With `limits`, its connections get header, body and keep-alive timeouts and a cap
    (gateway.connections): every process that serves the gateway passes them, and
    `access_log` (one line per request, gateway.access). At the end, requests in flight get
    `shutdown_timeout` to finish. `reuse_port`: one of a `gateway.processes` group."""
    logging_args: dict[str, Any] = ACCESS_LOG_ARGS if access_log else {"access_log": None}
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=shutdown_timeout, **logging_args
    )
    await runner.setup()
    try:
        if limits is None:
            await web.TCPSite(runner, host, port).start()
        else:
            ensure_descriptors(limits.max_connections)
            await GuardedSite(runner, host, port, limits, reuse_port=reuse_port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def redis_url_for(settings: Settings, embedded_allowed: bool) -> Iterator[RedisTarget]:
    """The configured Redis (a URL or Sentinels), or an embedded Redis started for the
    block's duration."""
    if settings.redis.url is not None or settings.redis.sentinel is not None:
        yield RedisTarget.of(settings.redis)
        return
    if not embedded_allowed:
        raise SystemExit(
            "neither redis.url nor redis.sentinel is set: only `usersync run` starts an "
            "embedded Redis"
        )
    try:
        server = EmbeddedRedis(settings.redis.embedded_dir, settings.redis.embedded_port).start()
    except RedisServerError as exc:  # a start that did not happen is never claimed
        log.error("embedded_redis_failed", error=str(exc))  # noqa: TRY400 - no traceback: the message says it
        raise SystemExit(1) from None
    log.info("embedded_redis_started", url=server.url, data_dir=str(server.data_dir))
    try:
        yield RedisTarget.of(settings.redis, server.url)
    finally:
        server.stop()
        log.info("embedded_redis_stopped")


async def supervise_worker(
    settings: Settings,
    redis_url: str | RedisTarget,
    adapters: Mapping[str, VendorAdapter],
    current: list[Worker],
    metrics: DeliveryMetrics | None = None,
    control: ProcessControl | None = None,
) -> None:
    """Run an arq worker, and a new one whenever it dies (arq exits when it loses Redis).

    `current` holds the worker now running, so the caller can stop it gracefully. Jobs the dead
    worker was running keep their place in Redis and run again (at-least-once). With
    `control`, a new worker gets the settings in force (a reload may have changed them), and
    none is started once the process drains."""
    delay = RESTART_DELAY_S[0]
    while control is None or not control.draining:
        if control is not None:
            settings, adapters = control.settings, control.adapters
        worker = build_worker(settings, redis_url, adapters, handle_signals=False, metrics=metrics)
        current[:] = [worker]
        started = time.monotonic()
        try:
            await worker.async_run()
        except Exception as exc:  # noqa: BLE001 - the supervisor: whatever killed it, restart
            log.warning("worker_lost", error=type(exc).__name__, restart_in_s=delay)
        else:
            return
        await abandon_worker(worker)
        if time.monotonic() - started > 60:
            delay = RESTART_DELAY_S[0]
        await asyncio.sleep(delay)
        delay = min(delay * 2, RESTART_DELAY_S[1])


async def abandon_worker(worker: Worker) -> None:
    """Clean up after a worker whose Redis is gone: arq's own close() would need Redis."""
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    session = worker.ctx.get("session")
    if session is not None:
        await session.close()
    redis = worker.ctx.get(ENGINE_REDIS)
    if redis is not None:
        await redis.aclose()
    if worker._pool is not None:  # arq has no public way to drop its pool
        with contextlib.suppress(Exception):
            await worker._pool.aclose()


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings,
    redis_url: str | RedisTarget,
    adapters: Mapping[str, VendorAdapter],
    telemetry: Telemetry | None = None,
    control: ProcessControl | None = None,
) -> AsyncIterator[Callable[[], bool]]:
    """The supervised arq worker; yields whether it is running now (for /readyz). Its
    instruments go to `telemetry`'s registry (a registry of their own without it). With
    `control`, a drain stops it taking jobs at once and a reload reaches its engine."""
    current: list[Worker] = []
    if control is not None:

        def drain() -> None:
            for worker in current:
                stop_taking_jobs(worker)

        def reload(new: Settings, new_adapters: Mapping[str, VendorAdapter]) -> None:
            for worker in current:
                apply_worker_settings(worker, new, new_adapters)

        control.on_drain.append(drain)
        control.on_reload.append(reload)
    metrics = DeliveryMetrics.of(settings, telemetry.registry if telemetry else None)

    def running() -> bool:
        return bool(current) and worker_running(current[0])

    metrics.worker_running.set_function(lambda: 1.0 if running() else 0.0)
    task = asyncio.create_task(
        supervise_worker(settings, redis_url, adapters, current, metrics, control)
    )
    try:
        yield running
    finally:
        # Also once the supervisor returned (a drain ends arq's loop when no job is left):
        # only `stop_worker` runs the worker's shutdown (heartbeat, HTTP session, engine
        # client). A worker lost with Redis was cleaned up by `abandon_worker`.
        lost = task.done() and (task.cancelled() or task.exception() is not None)
        if current and not lost:
            grace_s = control.remaining_s() if control else settings.shutdown_grace_s
            with contextlib.suppress(Exception):
                await stop_worker(current[0], grace_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_worker_http(
    settings: Settings,
    redis_url: str | RedisTarget,
    telemetry: Telemetry,
    running: Callable[[], bool],
) -> AsyncIterator[str | None]:
    """The worker's /metrics, /healthz and /readyz on `worker.metrics_port`; yields the URL,
    or None when the port cannot be bound (another worker on the host has it): logged as an
    error, and the worker delivers all the same (its metrics must not stop deliveries)."""
    redis = connect(redis_url, socket_timeout=2, socket_connect_timeout=1)
    app = create_worker_http_app(telemetry, redis, running)
    worker = settings.worker
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                url = await stack.enter_async_context(
                    serving(app, worker.metrics_host, worker.metrics_port)
                )
            except OSError as exc:
                log.error("worker_metrics_bind_failed", port=worker.metrics_port, error=str(exc))  # noqa: TRY400 - the message says it
                url = None
            else:
                log.info("worker_metrics_listening", url=url)
            yield url
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings,
    redis_url: str | RedisTarget,
    adapters: Mapping[str, VendorAdapter],
    telemetry: Telemetry | None = None,
    control: ProcessControl | None = None,
    child: ChildOrders | None = None,
) -> AsyncIterator[str]:
    """The gateway on its own Redis pool; yields its base URL. Its /metrics serves
    `telemetry` (a registry of its own without it). With `control`, a drain makes /readyz
    answer 503 at once and keeps serving `gateway.drain_delay_s` before the listener closes;
    a reload reaches the app's settings. `child`: this process is one of a
    `gateway.processes` group (`usersync.supervisor`): it shares the group's port, names
    itself in PROCESS_HEADER and tells the supervisor once it listens."""
    redis = connect(redis_url, socket_timeout=5, socket_connect_timeout=2)
    store = Store(redis, settings.retention.events_s, replica_ack=ReplicaAck.of(settings.redis))
    app = create_gateway_app(
        settings,
        store,
        make_previewer(store, adapters),
        vendor_fields_check(adapters),
        telemetry=telemetry,
    )
    openapi.describe_vendor_fields(app, vendor_fields_schemas())
    if child is not None:
        app.on_response_prepare.append(_process_header(child.index))
    if control is not None:
        control.on_drain.append(lambda: setattr(app[LIFECYCLE], "shutting_down", True))
        control.on_reload.append(
            lambda new, new_adapters: apply_gateway_settings(
                app, new, make_previewer(store, new_adapters), vendor_fields_check(new_adapters)
            )
        )
    grace_s = settings.shutdown_grace_s - settings.gateway.drain_delay_s
    try:
        limits = ConnectionLimits.of(settings.gateway)
        async with serving(
            app,
            settings.gateway.host,
            settings.gateway.port if child is None else child.port,
            limits,
            access_log=True,
            shutdown_timeout=max(0.0, grace_s),
            reuse_port=child is not None,
        ) as url:
            if child is None:
                log.info("gateway_listening", url=url)
            else:
                log.info("gateway_listening", url=url, process=child.index)
                child.listening()
            yield url
            if control is not None and control.gateway_delay_s() > 0:
                await asyncio.sleep(control.gateway_delay_s())
    finally:
        await redis.aclose()


def _process_header(
    index: int,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """A child of a group names itself on every answer and on its access line (bound as
    the answer is prepared: the request's log context was cleared at its start)."""
    header = str(index)

    async def name_process(_: web.Request, response: web.StreamResponse) -> None:
        response.headers[PROCESS_HEADER] = header
        structlog.contextvars.bind_contextvars(process=index)

    return name_process


@contextlib.asynccontextmanager
async def running_sandbox(settings: Settings) -> AsyncIterator[str]:
    """The vendor simulators, accepting the configured vendors' credentials; yields the URL.
    Imported here, not at the top: the production image has no sandbox (deploy/Dockerfile)."""
    try:
        from sandbox import create_sandbox_app
        from usersync.sandbox_wiring import simulators_from_registry
    except ImportError as exc:
        raise SystemExit(SANDBOX_MISSING) from exc

    app = create_sandbox_app(simulators_from_registry(), sandbox_tokens(settings))
    async with serving(app, settings.sandbox.host, settings.sandbox.port) as url:
        log.info("sandbox_listening", url=url)
        yield url


async def run(
    settings: Settings,
    *,
    gateway: bool,
    worker: bool,
    sandbox: bool,
    embedded: bool,
    config_path: str | None = None,
    child: ChildOrders | None = None,
) -> None:
    """Run the chosen parts until SIGINT/SIGTERM, then stop them in reverse order. One
    registry of metrics for the process: `usersync run` serves it on the gateway's /metrics
    and on the worker's port alike. With `gateway.processes` > 1 the gateway is that many
    child processes (`usersync.supervisor`), started once Redis is up; `child`: this process
    is one of them."""
    adapters = build_adapters(settings)
    control = ProcessControl(settings, adapters, config_path)
    telemetry = Telemetry()
    supervise = gateway and child is None and settings.gateway.processes > 1
    if child is not None:  # every line of this process's own tasks says which child it is
        structlog.contextvars.bind_contextvars(process=child.index)
    control.reloads = worker or not supervise  # else the children reload themselves
    async with contextlib.AsyncExitStack() as stack:
        if sandbox:
            await stack.enter_async_context(running_sandbox(settings))
        if gateway or worker:
            if child is not None and child.redis_url is not None:  # the supervisor's embedded
                redis_url = RedisTarget.of(settings.redis, child.redis_url)
            else:
                redis_url = stack.enter_context(redis_url_for(settings, embedded_allowed=embedded))
            if worker:
                running = await stack.enter_async_context(
                    running_worker(settings, redis_url, adapters, telemetry, control)
                )
                if settings.worker.metrics_port:
                    await stack.enter_async_context(
                        running_worker_http(settings, redis_url, telemetry, running)
                    )
            if supervise:
                await stack.enter_async_context(gateway_processes(settings, redis_url, control))
            elif gateway:
                if child is not None:
                    share = asyncio.create_task(telemetry.share_process())
                    stack.callback(share.cancel)
                await stack.enter_async_context(
                    running_gateway(settings, redis_url, adapters, telemetry, control, child)
                )
        settle_heap()  # started: what is allocated from now on is what the collector walks
        log.info(
            "usersync_ready",
            gateway=gateway,
            worker=worker,
            sandbox=sandbox,
            **({"processes": settings.gateway.processes} if supervise else {}),
            **({"process": child.index} if child is not None else {}),
        )
        await control.wait_for_stop()  # reloads on SIGHUP meanwhile
    log.info("usersync_stopped", signal=control.signal)
