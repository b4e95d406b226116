"""`gateway.processes: N`: N processes serve the gateway's port, children of the command's own
process, which supervises them (`usersync gateway`, and `usersync run` whose worker, embedded
Redis and sandbox stay in that process).

One Python process uses one core; N children with SO_REUSEPORT listeners on one port let the
kernel spread new connections over N event loops, with nothing in between (no proxy, no
shared accept lock). The supervisor:

- **reserves the port** first: a plain bind fails when anything listens there (another
  usersync's group included, which SO_REUSEPORT would otherwise silently join), then a
  SO_REUSEPORT socket is held bound (never listening, so it takes no connection) for the
  group's life; port 0 becomes the free port it got, the same for every child;
- **starts** each child as `python -m usersync gateway --config <the same file>` with its
  orders in `USERSYNC_GATEWAY_CHILD` (its number, the port, the embedded Redis's URL, a pipe
  to say it listens), in a session of its own (a terminal's Ctrl-C reaches the supervisor
  only, which passes it on once) and with `PR_SET_PDEATHSIG` (SIGTERM when the supervisor
  dies, even SIGKILLed: no orphan); it is ready once every child listens;
- **restarts** a child that exits while not draining (0.5 s, doubling to 10 s for one that
  keeps failing; logged `gateway_process_exited`, then `gateway_process_started`);
- **passes on** SIGTERM / SIGINT (each child drains as a lone gateway does) and SIGHUP (each
  child reads the file again itself), and at the end waits for the children within the
  grace, SIGKILLing any still there past it;
- **owns the metrics directory** (`PROMETHEUS_MULTIPROC_DIR`, a fresh temporary directory
  removed at exit): the children's counters and histograms are files there that any child
  sums when scraped (`core.telemetry`), so `/metrics` is the group's whoever answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass

import orjson
import structlog

from config.settings import Settings
from core.redis_client import RedisTarget
from core.telemetry import MULTIPROCESS_DIR_ENV, forget_process
from usersync.lifecycle import ProcessControl
from usersync.redis_server import die_with_parent

log = structlog.get_logger("usersync")

CHILD_ENV = "USERSYNC_GATEWAY_CHILD"
"""The environment variable carrying a child's orders (JSON); a process started with it
serves the gateway itself, whatever `gateway.processes` says."""
PROCESS_HEADER = "X-Usersync-Process"
"""The answer header naming the child that answered (1..N), when `gateway.processes` > 1."""
START_TIMEOUT_S = 30.0
"""Longest the supervisor waits for a child to listen at start."""
RESTART_DELAY_S = (0.5, 10.0)
"""A child that exited is started again after the first delay, doubling up to the second
while it keeps exiting within STABLE_S of its start."""
STABLE_S = 60.0
KILL_AFTER_S = 2.0
"""Past the grace, children still running get this long before SIGKILL."""
POLL_S = 0.1
"""How often the supervisor looks at its children (a `poll()` each: it also reaps them)."""


class GatewayStartError(RuntimeError):
    """A gateway process could not start (the port is taken, a child exited at start)."""


@dataclass
class ChildOrders:
    """What a supervised gateway process is told by its supervisor."""

    index: int
    port: int
    ready_fd: int
    redis_url: str | None = None
    """The embedded Redis of `usersync run` (None: the configured one)."""

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ChildOrders | None:
        raw = environ.get(CHILD_ENV)
        return None if raw is None else cls(**orjson.loads(raw))

    def listening(self) -> None:
        """Tell the supervisor this process listens (once)."""
        if self.ready_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"1")
        with contextlib.suppress(OSError):
            os.close(self.ready_fd)
        self.ready_fd = -1


def reserve_port(host: str, port: int) -> socket.socket:
    """A SO_REUSEPORT socket bound to (host, port), held by the supervisor: GatewayStartError
    when anything already listens there. Its port is the group's (port 0: a free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise GatewayStartError(f"gateway port {port} on {host}: {exc.strerror}") from exc
        address = (address[0], probe.getsockname()[1], *address[2:])
    held = socket.socket(family, kind, proto)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind(address)
    except OSError as exc:
        held.close()
        raise GatewayStartError(f"gateway port {port} on {host}: {exc.strerror}") from exc
    return held


class _Child:
    """One slot of the group: the process now in it, and its restart delay."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.popen: subprocess.Popen[bytes] | None = None
        self.ready_fd = -1
        self.ready = False
        self.started = 0.0
        self.delay = RESTART_DELAY_S[0]
        self.restart_at: float | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.returncode is None

    def read_ready(self) -> None:
        """Whether the child said it listens (non-blocking read of its pipe)."""
        if self.ready or self.ready_fd < 0:
            return
        try:
            said = os.read(self.ready_fd, 1)
        except BlockingIOError:
            return
        self.ready = said == b"1"
        os.close(self.ready_fd)
        self.ready_fd = -1


class GatewayGroup:
    """The N gateway processes of one supervisor (see the module)."""

    def __init__(
        self,
        count: int,
        config_path: str,
        port: int,
        control: ProcessControl,
        redis_url: str | None,
    ) -> None:
        self.config_path = os.path.abspath(config_path)
        self.port = port
        self.control = control
        self.redis_url = redis_url
        self.children = [_Child(index) for index in range(1, count + 1)]
        self.metrics_dir = tempfile.mkdtemp(prefix="usersync-gateway-metrics-")
        self.signalled = False

    def spawn(self, child: _Child) -> None:
        if child.ready_fd >= 0:  # the previous one's pipe, never read to its end
            os.close(child.ready_fd)
            child.ready_fd = -1
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        orders = ChildOrders(child.index, self.port, write_fd, self.redis_url)
        env = {**os.environ, CHILD_ENV: orders.to_env(), MULTIPROCESS_DIR_ENV: self.metrics_dir}
        try:
            child.popen = subprocess.Popen(
                [sys.executable, "-m", "usersync", "gateway", "--config", self.config_path],
                stdin=subprocess.DEVNULL,
                env=env,
                pass_fds=(write_fd,),
                start_new_session=True,  # the supervisor alone gets a terminal's Ctrl-C
                preexec_fn=die_with_parent(),  # Linux: it dies with us, whatever the signal
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        child.ready_fd, child.ready, child.restart_at = read_fd, False, None
        child.started = time.monotonic()
        log.info("gateway_process_started", process=child.index, pid=child.popen.pid)

    async def start(self) -> None:
        """Start every child; return once each listens (GatewayStartError if one exits or
        is not listening within START_TIMEOUT_S)."""
        for child in self.children:
            self.spawn(child)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(child.ready for child in self.children):
            for child in self.children:
                child.read_ready()
                assert child.popen is not None
                if not child.ready and child.popen.poll() is not None:
                    raise GatewayStartError(
                        f"gateway process {child.index} exited with {child.popen.returncode} "
                        "at start (its log lines say why)"
                    )
            if time.monotonic() > deadline:
                raise GatewayStartError(f"gateway processes not listening in {START_TIMEOUT_S} s")
            await asyncio.sleep(POLL_S / 2)

    async def watch(self) -> None:
        """Restart children that exit, until the drain starts."""
        while not self.control.draining:
            now = time.monotonic()
            for child in self.children:
                child.read_ready()
                if child.popen is not None and child.popen.poll() is not None:
                    self.exited(child, now)
                elif child.restart_at is not None and now >= child.restart_at:
                    self.spawn(child)
            await asyncio.sleep(POLL_S)

    def exited(self, child: _Child, now: float) -> None:
        assert child.popen is not None
        if now - child.started > STABLE_S:
            child.delay = RESTART_DELAY_S[0]
        code = child.popen.returncode
        log.warning(
            "gateway_process_exited",
            process=child.index,
            pid=child.popen.pid,
            exit_code=code if code >= 0 else None,
            signal=signal.Signals(-code).name if code < 0 else None,
            restart_in_s=child.delay,
        )
        forget_process(self.metrics_dir, child.popen.pid)
        child.popen = None
        child.restart_at = now + child.delay
        child.delay = min(child.delay * 2, RESTART_DELAY_S[1])

    def send(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.running and child.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(sig)

    def drain(self) -> None:
        """The drain began: each child gets the signal the supervisor got."""
        self.signalled = True
        self.send(signal.Signals[self.control.signal or signal.SIGTERM.name])

    async def stop(self) -> None:
        """Every child has exited when this returns (SIGKILL past the grace)."""
        if not self.signalled:
            self.signalled = True
            self.send(signal.SIGTERM)
        deadline = time.monotonic() + self.control.remaining_s() + KILL_AFTER_S
        while pending := self.pending():
            if time.monotonic() > deadline:
                log.warning("gateway_processes_killed", pids=[popen.pid for popen in pending])
                for popen in pending:
                    with contextlib.suppress(ProcessLookupError):
                        popen.kill()
                    popen.wait()
                break
            await asyncio.sleep(POLL_S / 2)
        for child in self.children:
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
                child.ready_fd = -1
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def pending(self) -> list[subprocess.Popen[bytes]]:
        """The children still running (each `poll()` reaps one that exited)."""
        return [
            child.popen
            for child in self.children
            if child.popen is not None and child.popen.poll() is None
        ]


@contextlib.asynccontextmanager
async def gateway_processes(
    settings: Settings, redis: RedisTarget, control: ProcessControl
) -> AsyncIterator[str]:
    """`gateway.processes` children serving the gateway for the block; yields the URL. They
    use this process's embedded Redis when it has one (`redis`, with no Redis configured). A
    group that cannot start is logged `gateway_processes_failed` and the process exits 1."""
    embedded = None if settings.redis.url or settings.redis.sentinel else redis.url
    gateway = settings.gateway
    try:
        async with _group(gateway.processes, gateway.host, gateway.port, control, embedded) as url:
            yield url
    except GatewayStartError as exc:
        log.error("gateway_processes_failed", error=str(exc))  # noqa: TRY400 - the message says it
        raise SystemExit(1) from None


@contextlib.asynccontextmanager
async def _group(
    count: int,
    host: str,
    port: int,
    control: ProcessControl,
    redis_url: str | None,
) -> AsyncIterator[str]:
    if control.config_path is None:
        raise GatewayStartError("gateway.processes > 1 needs a config file the children read")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores is not None and count > cores:  # more loops than cores: each waits for a turn
        log.warning("gateway_processes_over_cores", processes=count, cores=cores)
    held = reserve_port(host, port)
    group = GatewayGroup(count, control.config_path, held.getsockname()[1], control, redis_url)
    control.on_drain.append(group.drain)
    control.on_hangup.append(lambda: group.send(signal.SIGHUP))
    watcher: asyncio.Task[None] | None = None
    try:
        await group.start()
        watcher = asyncio.create_task(group.watch())
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{shown}:{group.port}"
        log.info("gateway_listening", url=url, processes=count)
        yield url
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await group.stop()
        held.close()
