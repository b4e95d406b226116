"""The process's signals: SIGTERM and SIGINT drain it, SIGHUP reloads its config.

**Drain.** The first SIGTERM or SIGINT starts it; `shutdown_grace_s` later everything has
stopped. At once every part is told (`on_drain`): the gateway's `/readyz` answers 503
`shutting_down` and a worker takes no new job. Then the parts stop in reverse order of start,
each within what is left of the grace: the gateway keeps serving for `gateway.drain_delay_s`
(on SIGTERM only: a person pressing Ctrl-C has no load balancer to wait for), then stops
listening and lets the requests in flight finish; a worker lets its running deliveries
finish, then cuts off the rest, whose pairs go back to the queue (logged with their ids). A
second SIGTERM or SIGINT kills the process at once (the handlers are gone).

**Reload.** SIGHUP reads the same file again. A file with any problem is refused (logged
`config_reload_refused` with every problem) and the running config stays. Otherwise what a
running process can change is applied (`on_reload`): sources and their tokens, vendor
instances with their tokens and limits, rate limits, the admin token, the secret keys, the
log level; what was fixed at start (listening addresses, connection limits, Redis, worker
slots, retention, the log format, the grace itself) keeps its running value, and the log
line `config_reloaded` names each such key the file changed under `needs_restart`. Work in
flight finishes with the settings it started with.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from config import ConfigError
from config.loader import check_file
from config.settings import Settings
from core.logs import set_log_level
from workers.vendors.interface import VendorAdapter
from workers.vendors.registry import build_adapters

log = structlog.get_logger("usersync")

RESTART_ONLY = (
    "redis",
    "sandbox",
    "retention",
    "shutdown_grace_s",
    "logging.format",
    "gateway.host",
    "gateway.port",
    "gateway.max_body_bytes",
    "gateway.max_inflight_body_bytes",
    "gateway.header_timeout_s",
    "gateway.body_timeout_s",
    "gateway.keepalive_timeout_s",
    "gateway.max_connections",
    "gateway.processes",
    "worker.concurrency",
    "worker.poll_delay_s",
    "worker.job_timeout_s",
    "worker.metrics_host",
    "worker.metrics_port",
)
"""Settings a running process was built with, which a reload cannot change (dotted paths;
one the settings do not have is skipped)."""

Reloader = Callable[[Settings, Mapping[str, VendorAdapter]], None]


class ProcessControl:
    """What the parts of one process share about its life: the settings now in force, and
    the hooks a signal runs."""

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, VendorAdapter],
        config_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.adapters = adapters
        self.config_path = config_path
        self.on_drain: list[Callable[[], None]] = []
        self.on_reload: list[Reloader] = []
        self.on_hangup: list[Callable[[], None]] = []
        """Run on every SIGHUP before the reload (a supervisor passes it to its children,
        which read the file themselves)."""
        self.reloads = True
        """False: this process has no part of its own to reload (a supervisor of gateway
        processes only), so a SIGHUP is only passed on."""
        self.signal: str | None = None
        self.deadline: float | None = None
        self._stop = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def remaining_s(self) -> float:
        """What is left of the shutdown grace (all of it before the drain starts)."""
        if self.deadline is None:
            return self.settings.shutdown_grace_s
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def gateway_delay_s(self) -> float:
        """How long the gateway keeps serving once the drain starts (SIGTERM only)."""
        if self.signal != signal.SIGTERM.name:
            return 0.0
        return min(self.settings.gateway.drain_delay_s, self.remaining_s())

    async def wait_for_stop(self) -> None:
        """Run until SIGTERM or SIGINT (reloading on SIGHUP meanwhile), then start the
        drain: the deadline is set and every `on_drain` hook runs."""
        loop = asyncio.get_running_loop()
        stops = (signal.SIGINT, signal.SIGTERM)
        for sig in stops:
            loop.add_signal_handler(sig, self._stop_on, sig)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            await self._stop.wait()
        finally:
            for sig in stops:
                loop.remove_signal_handler(sig)
        self.deadline = loop.time() + self.settings.shutdown_grace_s
        log.info(
            "shutdown_started",
            signal=self.signal,
            grace_s=self.settings.shutdown_grace_s,
            drain_delay_s=self.gateway_delay_s(),
        )
        for hook in self.on_drain:
            hook()

    def _stop_on(self, sig: signal.Signals) -> None:
        self.signal = sig.name
        self._stop.set()

    def _hangup(self) -> None:
        if self.draining:
            log.warning("config_reload_ignored", reason="shutting_down")
            return
        for hook in self.on_hangup:
            hook()
        if self.reloads:
            self.reload()

    def reload(self) -> bool:
        """Read the config file again and apply it (see the module's docstring)."""
        path = self.config_path
        if path is None:
            log.warning("config_reload_refused", reason="no config file to read again")
            return False
        report = check_file(path)
        problems = [str(problem) for problem in report.problems]
        new, adapters = report.settings, None
        if new is not None:
            try:
                new = keep_restart_only(self.settings, new)
                adapters = build_adapters(new)
            except (ConfigError, ValidationError) as exc:
                problems.append(str(exc))
        if new is None or adapters is None:
            log.error("config_reload_refused", config=path, problems=problems)
            return False
        changed = changed_sections(self.settings, new)
        needs_restart = [key for key in RESTART_ONLY if _at(report.settings, key) != _at(new, key)]
        for hook in self.on_reload:
            hook(new, adapters)
        self.settings, self.adapters = new, adapters
        log.info("config_reloaded", config=path, changed=changed, needs_restart=needs_restart)
        set_log_level(new.logging.level)  # last: the line above is written at the old level
        return True


def keep_restart_only(running: Settings, new: Settings) -> Settings:
    """`new` with every RESTART_ONLY value of `running`, validated again (the mix must
    hold together: a vendor's timeout below the running worker's job timeout, say)."""
    merged: dict[str, Any] = new.model_dump()
    kept: dict[str, Any] = running.model_dump()
    for key in RESTART_ONLY:
        *parents, last = key.split(".")
        source, target = kept, merged
        for part in parents:
            source, target = source.get(part, {}), target.get(part, {})
        if last in source:
            target[last] = source[last]
    return Settings.model_validate(merged)


def changed_sections(old: Settings, new: Settings) -> list[str]:
    """The top-level keys whose values differ (names only: values may be secrets)."""
    return [name for name in Settings.model_fields if getattr(old, name) != getattr(new, name)]


def _at(settings: Settings | None, key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part, None)
    return value
