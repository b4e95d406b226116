"""End-to-end benchmark: gateway -> Redis -> arq workers -> vendors, beside a bare arq worker.

Processes, all on loopback: a private redis-server (AOF, fsync every second, as usersync's
embedded one), `usersync sandbox` (the four vendor simulators; their journal gives the time each
call was received), `usersync gateway`, N `usersync worker` processes of the checkout at
`--root`, and for the baseline N `bench/bare_arq.py` processes (arq + aiohttp only, one call
per job, set up as usersync's worker is). A delivery is one call the sandbox received, matched
to its event by a unique email (`<marker>-<n>@example.com`).

Setups (class Setup), for each vendor latency (`--latencies`, ms: 0 answers at once, else a
sandbox latency fault on every call):
- mode "workers": `usersync gateway` + `--workers` N `usersync worker` processes vs N bare arq
  workers, for each `--targets` count: one-target events (`targets: [common.ONE_TARGET]`,
  a PATCH of two fields: the issue's headline) and four-target events (the field left out:
  one event = 4 deliveries, the figure of earlier runs);
- mode "run": ONE `usersync run` process (gateway + worker, as users start it) vs one bare
  arq worker, for each `--run-targets` count. It is given `redis.url` of the private server
  instead of starting its embedded one: the embedded one is the same redis-server with the
  same settings (common.redis_server starts usersync's EmbeddedRedis), so nothing that runs
  differs, while both systems share one server, flushed between phases and counted by the
  same INFO, and the queue can be filled before the process starts. The sandbox stays the
  shared process (the run's config disables its own).

For each setup:

1. saturation, usersync: `--events` x 4 deliveries' worth of events (each to its own user, so
   nothing coalesces) posted through `POST /v1/events:batch` with no worker running; then the
   workers start (mode "run": the filling gateway is stopped and `usersync run` drains it).
   deliveries/s = calls / (last - first received_at); worker CPU over that span (sampled from
   /proc every 0.1 s, interpolated) per delivery; peak RSS of a worker; sandbox and Redis CPU.
2. saturation, bare arq: as many jobs as there were deliveries, each the call usersync makes
   for one delivery (same method, path, auth, body), enqueued with arq's `enqueue_job`; then
   the bare workers start; measured the same way. usersync's ratio: `x bare` (deliveries/s)
   and `cpu_vs_bare` (worker CPU per delivery).
3. saturation while ingesting (system `usersync-live`): the workers (or `usersync run`)
   started first, the same events posted through the gateway one per request (50 in flight,
   as the fixed-rate phase posts them) while they deliver: the setup's
   end-to-end saturation (ingest and delivery share the cores; no bare counterpart).
4. fixed rate, usersync: workers running, events posted one per `POST /v1/events` (mode "run":
   to the run process's gateway) at a fixed rate (`--rate` events/s, default half of the
   setup's `usersync-live` saturation) for `--duration` s after a warm-up; the latency of a delivery is
   sandbox received_at - the time the client got the event's 202 (same machine, same clock):
   p50/p99/max, deliveries/s. The issue's target: p99 < 50 ms.

Every phase gets a flushed Redis, cleared journals and fresh worker processes; the gateway is
started fresh for every setup; the sandbox (and its users) lives for the whole run.

    .venv/bin/python bench/e2e.py                    # 2 workers 1 and 4 targets, run 1 target
    .venv/bin/python bench/e2e.py --quick            # smoke run, about a minute
    .venv/bin/python bench/e2e.py --workers 1,2 --latencies 0,50 --targets 4 --run-targets ""
    .venv/bin/python bench/e2e.py --root /tmp/old    # another checkout, same figures
    .venv/bin/python bench/e2e.py --profile          # + py-spy of the saturation workers

Each row also says what went wrong, if anything: calls that were not 2xx, repeated calls of
one delivery, dead letters, attempt outcomes other than `delivered` and warning/error lines
in the workers' logs. The sandbox and Redis share the machine's cores with the workers: their
CPU columns say when the simulator, not usersync, is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bare_arq
import common  # bench/ is on sys.path when a script of it runs
import folded
import orjson
import redis.asyncio as aioredis
import uvloop
import yaml

from core import keys

QUEUE = "arq:queue"
DEAD_LETTERS = keys.DEAD_LETTERS
JOB_SEQUENCE = keys.JOB_SEQUENCE
"""Incremented for every pair job usersync schedules (the gateway's and each re-run's): over
the deliveries, the job runs a delivery took (1 = none wasted)."""
BATCH = 100
POST_IN_FLIGHT = 256
"""Most event posts in flight at once in the fixed-rate phase (the pacer waits beyond)."""


@dataclass
class Bench:
    """What every phase shares: the run's Redis, sandbox, config and HTTP session."""

    args: argparse.Namespace
    root: Path
    tmp: Path
    redis_url: str
    redis_port: int
    redis: aioredis.Redis
    redis_pid: int
    config: Path
    gateway_url: str
    run_config: Path
    run_url: str
    sandbox_url: str
    sandbox: common.Service
    http: aiohttp.ClientSession
    users: int
    """Users made at all four vendors (the four-target events' pool)."""
    users_one: int
    """Users made at common.ONE_TARGET (the one-target events' pool, the larger)."""
    versions: list[int] = field(default_factory=list)
    gateway: common.Service | None = None

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {common.SOURCE_TOKEN}",
            "Content-Type": "application/json",
        }

    def pool(self, targets: int) -> int:
        """How many users exist at every instance an event of `targets` targets goes to."""
        return self.users_one if targets == 1 else self.users

    def event(self, marker: str, n: int, user: int, targets: int) -> dict[str, Any]:
        """Event n of a phase, for `user`, at that user's next version, to `targets` vendor
        instances (all four: the field left out, as today; one: `[common.ONE_TARGET]`)."""
        self.versions[user] += 1
        event_id = f"{marker}-{n}"
        email = f"{event_id}@example.com"
        return common.event_body(event_id, user, self.versions[user], email, target_names(targets))


@dataclass(frozen=True)
class Setup:
    """One configuration of the run: how usersync runs, its vendor latency, event targets.

    mode "workers": `usersync gateway` + `workers` x `usersync worker`, against as many bare
    arq workers; mode "run": ONE `usersync run` process (gateway + worker) against one bare
    arq worker. `usersync run` is given `redis.url` of the run's private redis-server rather
    than starting its embedded one: that server is the embedded one's (common.redis_server
    starts usersync's EmbeddedRedis: same binary, AOF, fsync every second), so what runs is
    the same, but both systems then share one server, flushed between phases and counted by
    the same INFO, and the saturation queue can be filled before the process starts."""

    mode: str
    workers: int
    latency_ms: int
    targets: int

    @property
    def label(self) -> str:
        where = "usersync run" if self.mode == "run" else f"{self.workers} worker(s)"
        return f"{where}, {self.targets}-target events, vendor {self.latency_ms} ms"

    @property
    def tag(self) -> str:
        return f"{self.mode[0]}{self.workers}-t{self.targets}-l{self.latency_ms}"


def target_names(count: int) -> list[str] | None:
    """What an event of `count` targets names: one instance, or all four (left out)."""
    if count == 1:
        return [common.ONE_TARGET]
    if count == len(common.KINDS):
        return None
    raise ValueError(f"events of {count} targets are not measured: 1 or {len(common.KINDS)}")


def target_instances(count: int) -> list[str]:
    """The vendor instances an event of `count` targets is delivered to."""
    return target_names(count) or list(common.KINDS)


@dataclass
class Samples:
    """CPU and RSS of some processes over time (wall clock, to compare with received_at)."""

    pids: dict[str, int]
    rows: list[tuple[float, dict[str, float], dict[str, float]]] = field(default_factory=list)

    def take(self) -> None:
        cpu = {name: common.cpu_seconds(pid) for name, pid in self.pids.items()}
        rss = {name: common.rss_mb(pid) for name, pid in self.pids.items()}
        self.rows.append((time.time(), cpu, rss))

    def cpu_at(self, name: str, at: float) -> float:
        """CPU seconds `name` had used at `at`, linear between the samples around it."""
        before = [row for row in self.rows if row[0] <= at]
        after = [row for row in self.rows if row[0] >= at]
        if not before:
            return after[0][1][name]
        if not after:
            return before[-1][1][name]
        (t0, c0, _), (t1, c1, _) = before[-1], after[0]
        if t1 == t0:
            return c0[name]
        return c0[name] + (c1[name] - c0[name]) * (at - t0) / (t1 - t0)

    def cpu_between(self, names: Iterable[str], start: float, end: float) -> float:
        return sum(self.cpu_at(name, end) - self.cpu_at(name, start) for name in names)

    def peak_rss(self, names: Iterable[str]) -> float:
        chosen = list(names)
        return max((rss[name] for _, _, rss in self.rows for name in chosen), default=0.0)


def drain_figures(counted: dict[str, Any], samples: Samples, names: list[str]) -> dict[str, Any]:
    """What a saturation phase measures between its first and last delivery (`counted`, from
    the journals): the calls, deliveries/s, the workers' CPU per delivery and share, the
    sandbox's and Redis's shares, the workers' peak RSS."""
    first, last = counted["first"], counted["last"]
    span = max(last - first, 1e-9)
    cpu = samples.cpu_between(names, first, last)
    return {
        **{k: v for k, v in counted.items() if k not in ("first", "last")},
        "span_s": round(span, 3),
        "deliveries_per_s": round(counted["calls"] / span, 1),
        "worker_cpu_s": round(cpu, 2),
        "cpu_ms_per_delivery": round(1000 * cpu / max(counted["calls"], 1), 3),
        "worker_cpu_pct": round(100 * cpu / span, 1),
        "sandbox_cpu_pct": round(100 * samples.cpu_between(["sandbox"], first, last) / span, 1),
        "redis_cpu_pct": round(100 * samples.cpu_between(["redis"], first, last) / span, 1),
        "peak_worker_rss_mb": round(samples.peak_rss(names), 1),
    }


def connected(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to local port `port`: a
    worker that has connected to Redis is about to poll (arq opens its pool first)."""
    sockets = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    sockets.add(link[8:-1])
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port and fields[9] in sockets:
            return True
    return False


def scan_logs(services: Sequence[common.Service]) -> tuple[list[str], dict[str, int]]:
    """The lines the services logged at warning or above (JSON lines by their `level`, any
    other line: the stdlib's, at warning and above, or a traceback), and the outcomes of
    the `delivery_attempt` lines (usersync logs one per attempt at info) and of every line's
    `event` under "log:<event>" (what the log costs per delivery, and what else happened)."""
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for service in services:
        if service.log_path is None or not service.log_path.exists():
            continue
        for line in service.log_path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                problems.append(f"{service.name}: {line}")
                continue
            outcomes[f"log:{entry.get('event')}"] += 1
            if entry.get("event") == "delivery_attempt":
                outcomes[str(entry.get("outcome"))] += 1
            if entry.get("level") not in ("debug", "info"):
                problems.append(f"{service.name}: {line}")
    return problems, dict(outcomes)


async def workers_connected(
    bench: Bench, services: Sequence[common.Service], timeout_s: float = 30
) -> None:
    """Until every worker process holds a connection to the bench's Redis (see `connected`)."""
    deadline = time.monotonic() + timeout_s
    while not all(connected(s.pid, bench.redis_port) for s in services):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not connect to Redis: see {bench.tmp}")
        await asyncio.sleep(0.05)


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 within {timeout_s} s")
        await asyncio.sleep(0.05)


async def make_users(bench: Bench) -> None:
    """Every user in the sandbox: the first `users` at all four vendors, up to `users_one`
    at the one-target events' vendor."""

    async def one(n: int) -> None:
        for target, vendor_id in common.vendor_user_ids(n).items():
            if n >= bench.users and target != common.ONE_TARGET:
                continue
            url = f"{bench.sandbox_url}/_sandbox/{common.KINDS[target]}/users/{vendor_id}"
            async with bench.http.put(url, json={}) as response:
                assert response.status == 200, await response.text()

    total = max(bench.users, bench.users_one)
    for start in range(0, total, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(total, start + 50))))


async def set_latency(bench: Bench, latency_ms: int) -> None:
    """Clear the faults of every kind; then, for a latency, one that delays every call."""
    for kind in common.PATHS:
        url = f"{bench.sandbox_url}/_sandbox/{kind}/faults"
        async with bench.http.delete(url) as response:
            assert response.status == 200, await response.text()
        if latency_ms:
            async with bench.http.post(
                url, json={"latency_ms": latency_ms, "count": 1_000_000_000}
            ) as response:
                assert response.status == 200, await response.text()


async def fresh(bench: Bench) -> None:
    """An empty Redis and empty journals: nothing of the previous phase is left."""
    await bench.redis.flushall()
    async with bench.http.delete(f"{bench.sandbox_url}/_sandbox/requests") as response:
        assert response.status == 200, await response.text()


async def journal(bench: Bench) -> list[tuple[str, dict[str, Any]]]:
    """Every call the four simulators received since the journals were cleared."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for kind in common.PATHS:
        async with bench.http.get(f"{bench.sandbox_url}/_sandbox/{kind}/requests") as response:
            calls += [(kind, entry) for entry in await response.json(loads=orjson.loads)]
    return calls


def start_workers(
    bench: Bench, system: str, count: int, mode: str = "workers"
) -> list[common.Service]:
    """`usersync worker` or one `usersync run` (of --root), or bare arq worker (of this
    checkout) processes."""
    if system == "usersync" and mode == "run":
        return [common.usersync("run", bench.run_config, bench.root, bench.tmp, name="run0")]
    if system == "usersync":
        return [
            common.usersync("worker", bench.config, bench.root, bench.tmp, name=f"worker{i}")
            for i in range(count)
        ]
    argv = [
        sys.executable,
        str(common.BENCH_DIR / "bare_arq.py"),
        "--redis",
        bench.redis_url,
        "--sandbox",
        bench.sandbox_url,
        "--max-jobs",
        str(bench.args.concurrency),
        "--poll-delay",
        str(bench.args.poll_delay),
    ]
    return [common.start(f"bare{i}", argv, common.ROOT, bench.tmp) for i in range(count)]


def stop_all(services: Iterable[common.Service | None]) -> None:
    for service in services:
        if service is not None:
            service.stop()


async def deliveries_begun(bench: Bench, queued: int, timeout_s: float = 60) -> None:
    """Until the first job has finished (the queue is shorter than it was filled)."""
    for _ in range(int(timeout_s / 0.02)):
        if await bench.redis.zcard(QUEUE) < queued:
            return
        await asyncio.sleep(0.02)


def start_profilers(
    services: Sequence[common.Service], marker: str
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on each worker until it exits (`--profile`):
    bench/results/e2e-profile-<marker>-<worker>.folded, and a .txt summary."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    common.RESULTS_DIR.mkdir(exist_ok=True)
    profilers = []
    for service in services:
        out = common.RESULTS_DIR / f"e2e-profile-{marker}-{service.name}.folded"
        argv = [spy, "record", "-p", str(service.pid), "-r", "200", "-f", "raw", "-o", str(out)]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profilers.append((process, out))
    return profilers


def finish_profilers(profilers: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> list[str]:
    """Wait for py-spy to write (its worker has exited); a summary next to each profile."""
    summaries = []
    for process, out in profilers:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if out.exists():
            summary = out.with_suffix(".txt")
            summary.write_text(folded.summarize(out))
            summaries.append(str(summary))
    return summaries


async def drain(bench: Bench, samples: Samples, stall_s: float = 30) -> bool:
    """Sample every 0.1 s until the arq queue is empty (every job has finished: a pair's
    next job is queued before its current one leaves); False if it stopped shrinking for
    `stall_s` (a stuck or retrying delivery: the row says it did not drain)."""
    last_size, last_change = -1, time.monotonic()
    while True:
        samples.take()
        size = await bench.redis.zcard(QUEUE)
        if size == 0:
            return True
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return False
        await asyncio.sleep(0.1)


def deliveries(calls: Sequence[tuple[str, dict[str, Any]]], marker: str) -> dict[str, Any]:
    """Count the calls of a phase: all of them, non-2xx ones, repeats of one (kind, email)."""
    ours = [
        (kind, entry)
        for kind, entry in calls
        if (common.email_of(entry["body"]) or "").startswith(marker)
    ]
    distinct = {(kind, common.email_of(entry["body"])) for kind, entry in ours}
    times = [entry["received_at"] for _, entry in ours]
    return {
        "calls": len(ours),
        "foreign": len(calls) - len(ours),
        "non_2xx": sum(not 200 <= (entry["status"] or 0) < 300 for _, entry in ours),
        "repeated": len(ours) - len(distinct),
        "call_sample": {
            kind: {key: entry[key] for key in ("method", "path", "body", "status")}
            for kind, entry in reversed(ours)
        },
        "first": min(times, default=0.0),
        "last": max(times, default=0.0),
    }


async def post_batches(
    bench: Bench, bodies: Sequence[dict[str, Any]], in_flight: int = 4, gateway_url: str = ""
) -> None:
    """Post events 100 a request, `in_flight` requests at once; every one must be accepted."""
    url = (gateway_url or bench.gateway_url) + "/v1/events:batch"
    chunks = [bodies[i : i + BATCH] for i in range(0, len(bodies), BATCH)]
    semaphore = asyncio.Semaphore(in_flight)

    async def one(chunk: Sequence[dict[str, Any]]) -> None:
        async with (
            semaphore,
            bench.http.post(
                url, data=orjson.dumps({"events": chunk}), headers=bench.headers()
            ) as response,
        ):
            answer = await response.json(loads=orjson.loads)
            assert response.status == 200 and answer["accepted"] == len(chunk), answer

    await asyncio.gather(*(one(chunk) for chunk in chunks))


def saturation_events(args: argparse.Namespace, targets: int) -> int:
    """Events of a saturation phase: `--events` four-target events' worth of deliveries."""
    return args.events * len(common.KINDS) // targets


async def post_singles(
    bench: Bench, bodies: Sequence[dict[str, Any]], gateway_url: str, in_flight: int = 50
) -> None:
    """Post events one per request, `in_flight` at once; every one must be accepted (202)."""
    url = gateway_url + "/v1/events"
    queue = list(reversed(bodies))

    async def client() -> None:
        while queue:
            body = queue.pop()
            async with bench.http.post(
                url, data=orjson.dumps(body), headers=bench.headers()
            ) as response:
                await response.read()
                assert response.status == 202, response.status

    await asyncio.gather(*(client() for _ in range(in_flight)))


async def saturation(bench: Bench, system: str, setup: Setup) -> dict[str, Any]:
    """Fill the queue with no worker running, start the workers, time the drain. In mode
    "run" the queue is filled through the configuration's `usersync gateway`, which is then
    stopped: the `usersync run` process drains it with its own gateway idle."""
    await fresh(bench)
    workers, latency_ms = setup.workers, setup.latency_ms
    marker = f"{ {'usersync': 'us', LIVE: 'live'}.get(system, 'bare') }-{setup.tag}-sat"
    count = saturation_events(bench.args, setup.targets)
    instances = target_instances(setup.targets)
    started = time.monotonic()
    if system == LIVE:
        return await saturation_live(bench, setup, marker, count)
    if system == "usersync":
        bodies = [bench.event(marker, n, n, setup.targets) for n in range(count)]
        await post_batches(bench, bodies)
        expected = count * setup.targets
        if setup.mode == "run":
            stop_all([bench.gateway])
    else:
        jobs = []
        for n in range(count):
            ids = common.vendor_user_ids(n)
            for target in instances:
                email = f"{marker}-{n}@example.com"
                jobs.append((common.KINDS[target], ids[target], email, f"Engineer, level {n}"))
        queued = await bare_arq.enqueue(bench.redis_url, jobs)
        assert queued == len(jobs), f"{queued} of {len(jobs)} jobs queued"
        expected = len(jobs)
    prefill_s = time.monotonic() - started
    services = start_workers(bench, system, workers, setup.mode)
    profilers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        names = [s.name for s in services]
        samples = Samples(
            {
                **{s.name: s.pid for s in services},
                "sandbox": bench.sandbox.pid,
                "redis": bench.redis_pid,
            }
        )
        if bench.args.profile:  # once deliveries have begun: the imports left out
            await deliveries_begun(bench, expected)
            profilers = start_profilers(services, marker)
        done = await drain(bench, samples)
        dead = await bench.redis.zcard(DEAD_LETTERS)
        jobs = int(await bench.redis.get(JOB_SEQUENCE) or 0)
        bare_errors = int(await bench.redis.get(bare_arq.ERRORS_KEY) or 0)
    finally:
        stop_all(services)
        profiles = finish_profilers(profilers)
    counted = deliveries(await journal(bench), marker)
    problems, outcomes = scan_logs(services)
    row = {
        "system": system,
        "mode": setup.mode,
        "workers": workers,
        "targets": setup.targets,
        "vendor_latency_ms": latency_ms,
        "events": count,
        "expected": expected,
        "drained": done,
        "prefill_s": round(prefill_s, 2),
        **drain_figures(counted, samples, names),
        "dead_letters": dead,
        "jobs_per_delivery": round(jobs / max(counted["calls"], 1), 3) if jobs else 1.0,
        "bare_non_2xx": bare_errors,
        "attempt_outcomes": outcomes,
        "log_problems": len(problems),
        "log_sample": problems[:5],
        "phase_s": round(time.monotonic() - started, 1),
        "profiles": profiles,
    }
    print(
        f"  {system:<8} {setup.mode}={workers} targets={setup.targets} latency={latency_ms}ms: "
        f"{row['calls']}/{expected} calls, {row['deliveries_per_s']:,.0f}/s, "
        f"{row['cpu_ms_per_delivery']} CPU ms each ({row['phase_s']} s)",
        flush=True,
    )
    return row


LIVE = "usersync-live"
"""The same events posted through the gateway one per request (as the fixed-rate phase posts
them, 50 in flight) while the workers (mode "run": the one process) deliver them: the setup's
end-to-end saturation, ingest and delivery sharing the cores, whose
half is the rate of the fixed-rate phase (half of the drain alone, with the gateway idle,
overloaded the one process: p99 1.1 s). Not compared with bare arq (whose enqueueing is the
bench's, not its workers'): a row of its own."""


async def saturation_live(bench: Bench, setup: Setup, marker: str, count: int) -> dict[str, Any]:
    """The workers (or `usersync run`) started first; the events posted through the gateway
    (its own, for run) one per request, as fast as it takes them; deliveries/s over the first
    to the last call, CPU of the workers (run: of the one process, its ingest included)."""
    started = time.monotonic()
    if setup.mode == "run":
        stop_all([bench.gateway])
    services = start_workers(bench, "usersync", setup.workers, setup.mode)
    gateway_url = bench.run_url if setup.mode == "run" else bench.gateway_url
    names = [s.name for s in services]
    samples = Samples(
        {
            **{s.name: s.pid for s in services},
            "sandbox": bench.sandbox.pid,
            "redis": bench.redis_pid,
        }
    )
    posting = True

    async def sample() -> None:
        while posting:
            samples.take()
            await asyncio.sleep(0.1)

    try:
        await workers_connected(bench, services)
        await wait_ready(bench.http, gateway_url + "/readyz")
        sampler = asyncio.create_task(sample())
        bodies = [bench.event(marker, n, n, setup.targets) for n in range(count)]
        await post_singles(bench, bodies, gateway_url)
        posting = False
        await sampler
        done = await drain(bench, samples)
    finally:
        stop_all(services)
    counted = deliveries(await journal(bench), marker)
    problems, outcomes = scan_logs(services)
    row = {
        "system": LIVE,
        "mode": setup.mode,
        "workers": setup.workers,
        "targets": setup.targets,
        "vendor_latency_ms": setup.latency_ms,
        "events": count,
        "expected": count * setup.targets,
        "drained": done,
        "prefill_s": 0.0,
        **drain_figures(counted, samples, names),
        "dead_letters": await bench.redis.zcard(DEAD_LETTERS),
        "jobs_per_delivery": 1.0,
        "bare_non_2xx": 0,
        "attempt_outcomes": outcomes,
        "log_problems": len(problems),
        "log_sample": problems[:5],
        "phase_s": round(time.monotonic() - started, 1),
        "profiles": [],
    }
    print(
        f"  {LIVE} targets={setup.targets}: {row['calls']}/{row['expected']} calls, "
        f"{row['deliveries_per_s']:,.0f}/s posted and delivered at once, "
        f"{row['cpu_ms_per_delivery']} CPU ms each ({row['phase_s']} s)",
        flush=True,
    )
    return row


async def offer(
    bench: Bench,
    marker: str,
    rate: float,
    seconds: float,
    first_user: int,
    gateway_url: str,
    targets: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Post events one per request at `rate`/s for `seconds`, paced by absolute time; the
    time each 202 arrived, by email, and figures of the posting itself."""
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * seconds))
    url = gateway_url + "/v1/events"
    semaphore = asyncio.Semaphore(POST_IN_FLIGHT)
    accepted: dict[str, float] = {}
    post_ms: list[float] = []
    refused: list[int] = []
    lateness: list[float] = []

    async def post(body: dict[str, Any]) -> None:
        try:
            sent = time.time()
            async with bench.http.post(
                url, data=orjson.dumps(body), headers=bench.headers()
            ) as response:
                await response.read()
                now = time.time()
                if response.status == 202:
                    accepted[body["changes"]["email"]] = now
                    post_ms.append(1000 * (now - sent))
                else:
                    refused.append(response.status)
        except aiohttp.ClientError:
            refused.append(0)  # no answer: counted as refused, the run goes on
        finally:
            semaphore.release()

    tasks = []
    start = loop.time() + 0.05
    for n in range(count):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await semaphore.acquire()
        lateness.append(1000 * (loop.time() - due))
        body = bench.event(marker, n, (first_user + n) % bench.pool(targets), targets)
        tasks.append(asyncio.create_task(post(body)))
    posting_s = loop.time() - start
    await asyncio.gather(*tasks)
    return accepted, {
        "events": count,
        "accepted": len(accepted),
        "refused": len(refused),
        "posting_s": round(posting_s, 2),
        "pacer_late_p99_ms": round(common.percentile(lateness, 0.99), 1),
        "post_p50_ms": round(common.percentile(post_ms, 0.5), 1),
        "post_p99_ms": round(common.percentile(post_ms, 0.99), 1),
    }


async def fixed_rate(bench: Bench, setup: Setup, rate: float) -> dict[str, Any]:
    """Workers running; warm up, then post at `rate` events/s and time each delivery. Mode
    "run": the events go to the `usersync run` process's own gateway."""
    started = time.monotonic()
    await fresh(bench)
    workers, latency_ms, targets = setup.workers, setup.latency_ms, setup.targets
    marker = f"us-{setup.tag}-rate"
    services = start_workers(bench, "usersync", workers, setup.mode)
    gateway_url = bench.run_url if setup.mode == "run" else bench.gateway_url
    try:
        await workers_connected(bench, services)
        await wait_ready(bench.http, gateway_url + "/readyz")
        samples = Samples(
            {
                **{s.name: s.pid for s in services},
                "sandbox": bench.sandbox.pid,
                "redis": bench.redis_pid,
            }
        )
        # warm-up at the same rate (connections, caches, both workers polling), not counted
        await offer(bench, f"warm-{marker}", rate, bench.args.warmup, 0, gateway_url, targets)
        await drain(bench, samples)
        warm_calls = len(await journal(bench))
        async with bench.http.delete(f"{bench.sandbox_url}/_sandbox/requests") as response:
            assert response.status == 200
        first_user = round(rate * bench.args.warmup) + 1
        accepted, posting = await offer(
            bench, marker, rate, bench.args.duration, first_user, gateway_url, targets
        )
        done = await drain(bench, samples)
        dead = await bench.redis.zcard(DEAD_LETTERS)
        jobs = int(await bench.redis.get(JOB_SEQUENCE) or 0)
    finally:
        stop_all(services)
    calls = await journal(bench)
    counted = deliveries(calls, marker)
    seen: dict[tuple[str, str], float] = {}
    by_second: dict[int, list[float]] = {}
    origin = min(accepted.values(), default=0.0)
    for kind, entry in calls:
        email = common.email_of(entry["body"])
        if email in accepted and (kind, email) not in seen:
            latency = 1000 * (entry["received_at"] - accepted[email])
            seen[(kind, email)] = latency
            by_second.setdefault(int(entry["received_at"] - origin), []).append(latency)
    latencies = list(seen.values())
    timeline = [  # second of the phase, deliveries, p50, p99, max (ms): where a stall was
        [second, len(values)]
        + [round(common.percentile(values, q), 1) for q in (0.5, 0.99)]
        + [round(max(values), 1)]
        for second, values in sorted(by_second.items())
    ]
    span = max(counted["last"] - counted["first"], 1e-9)
    problems, outcomes = scan_logs(services)
    row = {
        "mode": setup.mode,
        "workers": workers,
        "targets": targets,
        "vendor_latency_ms": latency_ms,
        "rate_events_per_s": round(rate, 1),
        "offered_deliveries_per_s": round(rate * targets, 1),
        **posting,
        "expected": posting["accepted"] * targets,
        **{k: v for k, v in counted.items() if k not in ("first", "last")},
        "drained": done,
        "deliveries_per_s": round(counted["calls"] / span, 1),
        "p50_ms": round(common.percentile(latencies, 0.5), 1),
        "p99_ms": round(common.percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "worst_second": max(timeline, key=lambda row: row[4], default=None),
        "timeline": timeline,
        "worker_cpu_pct": round(
            100
            * samples.cpu_between([s.name for s in services], counted["first"], counted["last"])
            / span,
            1,
        ),
        "peak_worker_rss_mb": round(samples.peak_rss([s.name for s in services]), 1),
        "dead_letters": dead,
        "jobs_per_delivery": round(jobs / max(counted["calls"] + warm_calls, 1), 3),
        "attempt_outcomes": outcomes,
        "log_problems": len(problems),
        "log_sample": problems[:5],
        "phase_s": round(time.monotonic() - started, 1),
    }
    print(
        f"  rate     {setup.label}: {rate:,.0f} events/s, "
        f"{row['calls']}/{row['expected']} calls, p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms ({row['phase_s']} s)",
        flush=True,
    )
    return row


async def drive(bench: Bench) -> dict[str, Any]:
    args = bench.args
    await wait_ready(bench.http, f"{bench.sandbox_url}/_sandbox/healthz")
    started = time.monotonic()
    await make_users(bench)
    print(
        f"{bench.users:,} users x 4 vendors, {bench.users_one:,} at {common.ONE_TARGET}, made "
        f"in {time.monotonic() - started:.1f} s"
    )
    saturation_rows: list[dict[str, Any]] = []
    latency_rows: list[dict[str, Any]] = []
    latency_now = -1
    try:
        for setup in args.setups:
            if setup.latency_ms != latency_now:
                await set_latency(bench, setup.latency_ms)
                latency_now = setup.latency_ms
            print(setup.label, flush=True)
            await fresh(bench)
            gateway = common.usersync("gateway", bench.config, bench.root, bench.tmp)
            bench.gateway = gateway
            try:
                await wait_ready(bench.http, bench.gateway_url + "/readyz")
                ours = await saturation(bench, "usersync", setup)
                bare = await saturation(bench, "bare", setup)
                ours["vs_bare"] = round(
                    ours["deliveries_per_s"] / max(bare["deliveries_per_s"], 1e-9), 2
                )
                ours["cpu_vs_bare"] = round(
                    ours["cpu_ms_per_delivery"] / max(bare["cpu_ms_per_delivery"], 1e-9), 2
                )
                saturation_rows += [ours, bare]
                live = await saturation(bench, LIVE, setup)
                saturation_rows.append(live)
                rate = args.rate or live["deliveries_per_s"] / setup.targets / 2
                latency_rows.append(await fixed_rate(bench, setup, rate))
                gateway_errors = scan_logs([gateway])[0]
            finally:
                stop_all([bench.gateway])
                bench.gateway = None
            if gateway_errors:
                latency_rows[-1]["gateway_log_sample"] = gateway_errors[:5]
    finally:
        await set_latency(bench, 0)
    return {
        "saturation": saturation_rows,
        "latency": latency_rows,
        "targets": targets(saturation_rows, latency_rows),
    }


P99_TARGET_MS = 50.0
"""Ingest-to-vendor p99 at half of saturation (issue 15)."""


def where(row: dict[str, Any]) -> str:
    """A row's configuration in words (rows of an older result have no mode or targets)."""
    mode = "usersync run" if row.get("mode") == "run" else f"{row['workers']} worker(s)"
    targets = row.get("targets", len(common.KINDS))
    return f"{mode}, {targets}-target, vendor {row['vendor_latency_ms']} ms"


def targets(
    saturation_rows: list[dict[str, Any]], latency_rows: list[dict[str, Any]]
) -> list[tuple[str, Any, bool]]:
    """The issue's targets, for the configurations this run measured: (what, figure, met)."""
    checks: list[tuple[str, Any, bool]] = []
    for row in saturation_rows:
        if row["system"] != "usersync":
            continue
        checks.append((f">= 1x bare arq, {where(row)}", row["vs_bare"], row["vs_bare"] >= 1))
        checks.append(
            (
                f"worker CPU/delivery <= 1x bare's, {where(row)}",
                row["cpu_vs_bare"],
                row["cpu_vs_bare"] <= 1,
            )
        )
    for row in latency_rows:
        figure = row["p99_ms"]
        checks.append(
            (
                f"p99 < {P99_TARGET_MS:g} ms at {row['rate_events_per_s']} events/s, {where(row)}",
                figure,
                figure < P99_TARGET_MS,
            )
        )
    return checks


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root)
    with (
        tempfile.TemporaryDirectory(prefix="usersync-bench-e2e-") as tmp_name,
        common.redis_server(Path(tmp_name)) as redis_url,
    ):
        tmp = Path(tmp_name)
        gateway_port, sandbox_port = common.free_port(), common.free_port()
        config = common.write_config(
            tmp,
            redis_url=redis_url,
            gateway_port=gateway_port,
            sandbox_port=sandbox_port,
            concurrency=args.concurrency,
            poll_delay_s=args.poll_delay,
        )
        config_text = config.read_text()
        run_port = common.free_port()
        (tmp / "run").mkdir()
        run_config = common.write_config(  # `usersync run`: the sandbox is the shared one
            tmp / "run",
            redis_url=redis_url,
            gateway_port=run_port,
            sandbox_port=sandbox_port,
            concurrency=args.concurrency,
            poll_delay_s=args.poll_delay,
            extra={"sandbox": {"enabled": False}},
        )
        client = aioredis.Redis.from_url(redis_url)
        sandbox = common.usersync("sandbox", config, root, tmp)
        connector = aiohttp.TCPConnector(limit=POST_IN_FLIGHT + 16)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                bench = Bench(
                    args=args,
                    root=root,
                    tmp=tmp,
                    redis_url=redis_url,
                    redis_port=int(redis_url.rsplit(":", 1)[1].split("/")[0]),
                    redis=client,
                    redis_pid=int((await client.info("server"))["process_id"]),
                    config=config,
                    gateway_url=f"http://127.0.0.1:{gateway_port}",
                    run_config=run_config,
                    run_url=f"http://127.0.0.1:{run_port}",
                    sandbox_url=f"http://127.0.0.1:{sandbox_port}",
                    sandbox=sandbox,
                    http=http,
                    users=args.users,
                    users_one=args.users_one,
                    versions=[0] * max(args.users, args.users_one),
                )
                try:
                    figures = await drive(bench)
                finally:
                    stop_all([bench.gateway])
        finally:
            sandbox.stop()
            await client.aclose()
    settings = yaml.safe_load(config_text)
    return {
        "root": str(root),
        "usersync_logging_level": settings["logging"]["level"],
        "usersync_worker": settings["worker"],
        **figures,
    }


def report(result: dict[str, Any]) -> None:
    print()
    print(
        f"usersync at {result['root']} (logging at {result['usersync_logging_level']}); "
        f"saturation: {result['args']['events'] * len(common.KINDS):,} deliveries a phase "
        f"({result['args']['events']:,} four-target events, or one-target events as many)"
    )
    rows = [
        (
            r["system"],
            "run" if r.get("mode") == "run" and r["system"] != "bare" else r["workers"],
            r.get("targets", len(common.KINDS)),
            r["vendor_latency_ms"],
            f"{r['calls']}/{r['expected']}",
            r["deliveries_per_s"],
            f"{r['vs_bare']:.2f}" if "vs_bare" in r else "",
            r["cpu_ms_per_delivery"],
            r["worker_cpu_pct"],
            r["sandbox_cpu_pct"],
            r["redis_cpu_pct"],
            r["peak_worker_rss_mb"],
            f"{r['jobs_per_delivery']:.2f}",
            r["dead_letters"] if r["system"] != "bare" else r["bare_non_2xx"],
        )
        for r in result["saturation"]
    ]
    print(
        common.table(
            (
                "system",
                "workers",
                "targets",
                "vendor ms",
                "delivered",
                "deliveries/s",
                "x bare",
                "CPU ms/deliv",
                "worker CPU %",
                "sandbox CPU %",
                "redis CPU %",
                "peak RSS MB",
                "jobs/deliv",
                "dead/non-2xx",
            ),
            rows,
        )
    )
    print()
    print("fixed rate (usersync): latency = sandbox received_at - client got the 202")
    rows = [
        (
            "run" if r.get("mode") == "run" else r["workers"],
            r.get("targets", len(common.KINDS)),
            r["vendor_latency_ms"],
            r["rate_events_per_s"],
            r["offered_deliveries_per_s"],
            f"{r['calls']}/{r['expected']}",
            r["deliveries_per_s"],
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            (r["worst_second"] or [0, 0, 0, 0.0])[3],
            r["post_p99_ms"],
            r["worker_cpu_pct"],
        )
        for r in result["latency"]
    ]
    print(
        common.table(
            (
                "workers",
                "targets",
                "vendor ms",
                "events/s",
                "offered deliv/s",
                "delivered",
                "deliveries/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "worst 1 s p99",
                "post p99 ms",
                "worker CPU %",
            ),
            rows,
        )
    )
    print("\ntargets (the issue's; at the default rate, half of saturation):")
    print(
        common.table(
            ("target", "figure", "met"),
            [
                (what, f"{figure:.2f}" if "bare" in what else figure, "yes" if met else "NO")
                for what, figure, met in result["targets"]
            ],
        )
    )
    for r in result["saturation"] + result["latency"]:
        others = {
            k: v
            for k, v in r["attempt_outcomes"].items()
            if k != "delivered" and not k.startswith("log:")
        }
        if others or r["dead_letters"] or r["non_2xx"] or r["repeated"] or not r["drained"]:
            print(
                f"\nnote: {r.get('system', 'rate')} {where(r)}: "
                f"attempts {r['attempt_outcomes']}, "
                f"dead letters {r['dead_letters']}, non-2xx {r['non_2xx']}, "
                f"repeated calls {r['repeated']}, drained {r['drained']}"
            )
    problems = [
        line
        for r in result["saturation"] + result["latency"]
        for line in r["log_sample"] + r.get("gateway_log_sample", [])
    ]
    if problems:
        print("\nlogged by the services (first lines):")
        for line in problems[:20]:
            print(f"  {line[:300]}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(common.ROOT), help="the checkout to measure")
    parser.add_argument("--events", type=int, default=5000, help="events per saturation run")
    parser.add_argument("--duration", type=float, default=20.0, help="fixed-rate phase, s")
    parser.add_argument("--warmup", type=float, default=3.0, help="before the fixed rate, s")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="events/s of the fixed-rate phase (default: half "
        "the usersync saturation of the same configuration)",
    )
    parser.add_argument("--workers", default="2", help="worker process counts, e.g. 1,2")
    parser.add_argument("--latencies", default="0", help="vendor latencies in ms, e.g. 0,50")
    parser.add_argument(
        "--targets", default="1,4", help="targets per event of the worker setups: 1, 4 or 1,4"
    )
    parser.add_argument(
        "--run-targets",
        default="1",
        help="targets per event of the `usersync run` setup (one process vs one bare "
        "worker); empty: no such setup",
    )
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once per worker")
    parser.add_argument("--poll-delay", type=float, default=0.01, help="arq poll delay, s")
    parser.add_argument("--users", type=int, default=0, help="sandbox users (default: enough)")
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the workers (usersync and bare) of the saturation phases "
        "(bench/results/e2e-profile-*.folded and .txt)",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.duration, args.warmup = min(args.events, 300), 3.0, 1.0
    args.root = str(Path(args.root).resolve())
    args.workers = [int(n) for n in str(args.workers).split(",")]
    args.latencies = [int(n) for n in str(args.latencies).split(",")]
    args.targets = [int(n) for n in str(args.targets).split(",") if n]
    args.run_targets = [int(n) for n in str(args.run_targets).split(",") if n]
    for count in args.targets + args.run_targets:
        if count not in (1, len(common.KINDS)):
            parser.error(f"targets per event: 1 or {len(common.KINDS)}, not {count}")
    args.setups = [  # one-target first: the headline figures
        setup
        for latency in args.latencies
        for count in sorted(set(args.targets) | set(args.run_targets))
        for setup in [
            *(Setup("workers", n, latency, count) for n in args.workers if count in args.targets),
            *([Setup("run", 1, latency, count)] if count in args.run_targets else []),
        ]
    ]
    # every saturation event its own user (nothing coalesces), and the fixed-rate phase
    # reuses users in turn: enough that a user's events are seconds apart
    args.users = args.users or max(args.events, 1000)
    args.users_one = (
        max(args.users, saturation_events(args, 1)) if 1 in args.targets + args.run_targets else 0
    )
    return args


def main() -> None:
    args = parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(run(args))
    result = {**figures, "args": {**vars(args), "setups": [asdict(s) for s in args.setups]}}
    report(result)
    if not args.no_write:
        print(f"\nwritten: {common.write_result('e2e', result)}")


if __name__ == "__main__":
    main()
