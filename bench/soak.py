"""Soak benchmark: a long run at half of saturation, to see memory growth and retention at work.

Starts a private redis-server, `usersync sandbox`, `usersync gateway` and two `usersync worker`
processes of the checkout at `--root` (config with a short `retention.events_s`, default
120 s, so trimming shows within the run), creates a pool of users at all four sandbox vendors
(default rate x retention, 100 to 5,000: every user has had an event once the retention has
passed), then posts events at a fixed offered rate for `--duration` seconds: an absolute
schedule (event n is due at start + n / rate), each post its own task, so a slow answer does
not slow the offered rate. Events cycle through the pool with an increasing `user.version`
per user (stale versions would be dropped) and a unique email, which identifies each vendor
call in the sandbox journal.

Every `--interval` seconds it records:
- RSS and CPU time of the gateway, each worker, the sandbox, redis-server and this client;
- Redis `INFO memory` used_memory, DBSIZE, and the keys by prefix (one SCAN): stored events
  (`core.keys.event`: status + dedupe record) against the expected count, i.e. the events
  still owed a vendor call plus those whose last call was within the last retention seconds
  (an event has no TTL while a target owes it a delivery; its retention starts when every
  target is final); arq's queue length and the dead letters;
- ingest-to-vendor latency of the vendor calls of the window: the sandbox journals' calls,
  each matched to the client-side time at which its event's 202 arrived; p50/p99/max;
- the posts of the window by answer (202, 4xx, 5xx, client error), their round trip, and how
  late the pacer sent them.

At the end: RSS flat or not (mean of the last 20% of the samples against the mean of the
samples from 20% to 30% of the run, i.e. after a warm-up, ±10%), peak RSS per process against
the targets (gateway < 100 MB, worker < 150 MB), whether the stored events stayed at rate x
retention and Redis memory plateaued in the steady state, overall latency p50/p99 (target p99
< 100 ms), whether the workers kept up, the status of a sample of calls never seen, and the
service logs (counted per level and event; warnings and errors shown). Result:
bench/results/soak-*.json with the full time series; charts: bench/charts.py, run at the end
unless --no-charts.

    .venv/bin/python bench/soak.py                   # 10 min, half of the e2e saturation
    .venv/bin/python bench/soak.py --quick --rate 10 # 60 s, to check the script works
    .venv/bin/python bench/soak.py --duration 150 --retention 60 --rate 10  # trimming, quickly
    .venv/bin/python bench/soak.py --root /tmp/old   # another checkout, same figures

The offered rate defaults to half of usersync's saturation with 2 workers and an instant
vendor in bench/results/e2e-latest.json when that file has it, else 250 events/s; each event
is four vendor calls. The journals are drained (`?drain=1`: read and removed in one step, so no
call is lost or seen twice) every `--journal-poll` seconds, in small bites: the sandbox
serialises a whole journal at once, blocking its vendor calls meanwhile, so a big read would
show up in the very latency measured. A call never seen is "unseen", and the final status
sample tells whether it was delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import common
import orjson
import yaml
from redis.asyncio import Redis

from core import keys

WORKERS = 2
DEFAULT_RATE = 250.0
TARGET_RSS_MB = {"gateway": 100.0, "worker": 150.0}
TARGET_P99_MS = 100.0
WARMUP = 0.2
"""Fraction of the run before the RSS baseline: imports, pools and caches settle first."""
FLAT_TOLERANCE = 0.10
ORPHAN_WAIT_S = 10.0
"""A journal call whose event's 202 has not arrived this long after is counted unmatched."""
JOURNAL_BITE = 100
"""Calls per journal read the default poll period aims at: a short stall of the sandbox for
the calls it delays."""
KIND_OF = common.KINDS
"""Vendor instance -> sandbox kind."""


# --- the offered rate ------------------------------------------------------------------------


def rate_from_e2e(path: Path) -> tuple[float | None, str]:
    """Half of usersync's saturation with 2 workers and an instant vendor, from bench/e2e.py's
    latest result: its `saturation` rows (`system`, `workers`, `vendor_latency_ms`,
    `deliveries_per_s` = vendor calls/s, four per event; of four-target events to separate
    workers: rows of other setups carry `targets` and `mode`); the end-to-end saturation
    (`usersync-live`, posted while delivered) where the file has it, else the drain's
    (`usersync`). That file is another benchmark's and may change: anything not as expected
    gives None, and the caller uses the default rate."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, f"{path.name} not found or unreadable"
    rows = data.get("saturation") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None, f"{path.name}: no saturation rows"
    live = [r for r in rows if isinstance(r, dict) and r.get("system") == "usersync-live"]
    for row in live or rows:
        if not isinstance(row, dict) or row.get("system", "usersync") not in (
            "usersync",
            "usersync-live",
        ):
            continue
        if row.get("workers") != WORKERS or row.get("vendor_latency_ms", 0) != 0:
            continue
        # the soak posts four-target events to separate workers: that setup's row only
        if (
            row.get("targets", len(KIND_OF)) != len(KIND_OF)
            or row.get("mode", "workers") != "workers"
        ):
            continue
        if isinstance(row.get("events_per_s"), int | float):
            events = float(row["events_per_s"])
        elif isinstance(row.get("deliveries_per_s"), int | float):
            events = float(row["deliveries_per_s"]) / len(KIND_OF)
        else:
            continue
        if events > 0:
            at = (data.get("machine") or {}).get("at", "?")
            kind = "end-to-end " if row.get("system") == "usersync-live" else ""
            return (
                round(events / 2, 1),
                f"half of the e2e {kind}saturation, {events:.1f} events/s ({at})",
            )
    return None, f"{path.name}: no saturation for {WORKERS} workers and an instant vendor"


# --- events and the journal ------------------------------------------------------------------


@dataclass
class Window:
    """What happened since the last sample."""

    posts: Counter[str] = field(default_factory=Counter)
    ack_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    vendor_errors: int = 0
    duplicates: int = 0
    unmatched: int = 0


def event_number(email: str) -> int | None:
    """n of `soak{n}@example.com`, the email of the bench's event n; None for anything else."""
    if not email.startswith("soak"):
        return None
    digits = email[4:].partition("@")[0]
    return int(digits) if digits.isdigit() else None


@dataclass
class Tracker:
    """Events the client posted and the vendor calls not yet seen for each of them; memory
    stays small over a long run (a byte per event, 16 bytes per matched call)."""

    waiting: dict[int, tuple[float, set[str]]] = field(default_factory=dict)
    """event n -> (time.time() when its 202 arrived, kinds whose call is still to be seen)."""
    complete: bytearray = field(default_factory=bytearray)
    """1 at n once every kind's call of event n was seen (a later call is a duplicate)."""
    orphans: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    """(kind, n) seen in a journal before its 202 was recorded -> (received_at, t first seen)."""
    latencies: dict[str, tuple[array[float], array[float]]] = field(default_factory=dict)
    """kind -> (t of the window it was read in, latency ms) of every matched call."""
    final_at: list[float] = field(default_factory=list)
    """A heap: when each event's last call was received (time.time()), for those that became
    final within the last retention. Redis holds an event while a target owes it a delivery,
    and `retention.events_s` after its last target is final (docs/delivery.md)."""
    accepted: int = 0
    duplicates: int = 0
    unmatched: int = 0

    def accept(self, n: int, at_epoch: float) -> None:
        self.waiting[n] = (at_epoch, set(KIND_OF.values()))
        self.accepted += 1

    def match(self, kind: str, n: int, received_at: float, window: Window, t: float) -> bool:
        """Record the latency of one journal call; False if its 202 is not known yet."""
        entry = self.waiting.get(n)
        if entry is None or kind not in entry[1]:
            if (n < len(self.complete) and self.complete[n]) or entry is not None:
                window.duplicates += 1
                self.duplicates += 1
                return True
            return False
        accepted_at, kinds = entry
        kinds.discard(kind)
        if not kinds:
            del self.waiting[n]
            heapq.heappush(self.final_at, received_at)
            if n >= len(self.complete):
                self.complete.extend(bytes(n + 1 - len(self.complete) + 65536))
            self.complete[n] = 1
        latency = (received_at - accepted_at) * 1000
        window.latency_ms.append(latency)
        times, values = self.latencies.setdefault(kind, (array("d"), array("d")))
        times.append(t)
        values.append(latency)
        return True

    def expected_stored(self, now_epoch: float, retention_s: float) -> int:
        """The events Redis should hold now: those still owed a call (none seen yet, or not
        all: the journal is read a little behind, which only adds to the owed), and those
        whose last call was within the retention. A call that never comes (a lost journal
        read, a dead delivery) keeps its event counted as owed: the final checks name them."""
        while self.final_at and self.final_at[0] <= now_epoch - retention_s:
            heapq.heappop(self.final_at)
        return len(self.waiting) + len(self.final_at)


def _group(builder: Callable[[str, str], str]) -> str:
    """The group of a key builder's keys in `redis_figures` (a key's first two `:` parts)."""
    return ":".join(builder("x", "x").split(":")[:2])


class Soak:
    """The load generator and the sampler, sharing one HTTP session and one Redis client."""

    def __init__(
        self,
        args: argparse.Namespace,
        http: aiohttp.ClientSession,
        redis: Redis,
        gateway: str,
        sandbox: str,
        sampler: common.Sampler,
    ) -> None:
        self.args = args
        self.http = http
        self.redis = redis
        self.gateway = gateway
        self.sandbox = sandbox
        self.sampler = sampler
        self.headers = {
            "Authorization": f"Bearer {common.SOURCE_TOKEN}",
            "Content-Type": "application/json",
        }
        self.tag = time.strftime("%H%M%S")
        self.tracker = Tracker()
        self.window = Window()
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.series: list[dict[str, Any]] = []
        self.phase = "load"
        self.first_event_id: str | None = None
        self.last_event_id: str | None = None

    # -- setup --

    async def make_users(self, count: int) -> None:
        """Every user of the pool at every vendor, 50 users at a time."""

        async def one(n: int) -> None:
            for target, vendor_id in common.vendor_user_ids(n).items():
                url = f"{self.sandbox}/_sandbox/{KIND_OF[target]}/users/{vendor_id}"
                async with self.http.put(url, json={}) as response:
                    if response.status != 200:
                        raise SystemExit(f"sandbox PUT {url}: {response.status}")

        for start in range(0, count, 50):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))

    async def probe(self, user: int) -> None:
        """One event through gateway, workers and all four vendors: the pipeline is up."""
        email = f"probe-{self.tag}@example.com"
        body = common.event_body(f"probe-{self.tag}", user, 1, email)
        async with self.http.post(
            self.gateway + "/v1/events", data=orjson.dumps(body), headers=self.headers
        ) as response:
            if response.status != 202:
                raise SystemExit(f"probe event: {response.status} {await response.text()}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            journals = await self.read_journals()
            if all(
                any(common.email_of(e.get("body")) == email for e in j) for j in journals.values()
            ):
                await self.clear_journals()
                return
            await asyncio.sleep(0.2)
        raise SystemExit("the probe event did not reach all four vendors within 60 s")

    # -- load --

    async def post(self, n: int, due: float) -> None:
        user = n % self.args.users
        version = n // self.args.users + 1
        body = common.event_body(f"soak-{self.tag}-{n}", user, version, f"soak{n}@example.com")
        loop = asyncio.get_running_loop()
        sent = loop.time()
        self.window.lag_ms.append((sent - due) * 1000)
        self.in_flight += 1
        try:
            async with self.http.post(
                self.gateway + "/v1/events", data=orjson.dumps(body), headers=self.headers
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            self.window.posts["client_error"] += 1
            return
        finally:
            self.in_flight -= 1
        done = loop.time()
        self.window.ack_ms.append((done - sent) * 1000)
        if status == 202:
            self.window.posts["202"] += 1
            self.tracker.accept(n, time.time())
        elif 400 <= status < 500:
            self.window.posts["4xx"] += 1
        elif status >= 500:
            self.window.posts["5xx"] += 1
        else:
            self.window.posts[str(status)] += 1

    async def pace(self, rate: float, duration: float) -> int:
        """Post event n at start + n / rate (absolute schedule: no drift, no catch-up loss)."""
        loop = asyncio.get_running_loop()
        total = int(rate * duration)
        start = loop.time()
        n = 0
        while n < total:
            due_count = min(total, int((loop.time() - start) * rate) + 1)
            while n < due_count:
                if n == 0:
                    self.first_event_id = f"soak-{self.tag}-0"
                task = asyncio.create_task(self.post(n, start + n / rate))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                n += 1
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        self.last_event_id = f"soak-{self.tag}-{total - 1}"
        if self.tasks:
            await asyncio.gather(*list(self.tasks))
        return total

    # -- sampling --

    async def read_journals(self) -> dict[str, list[dict[str, Any]]]:
        """Every kind's whole journal, drained (read and removed in one step) concurrently."""

        async def one(kind: str) -> bytes:
            url = f"{self.sandbox}/_sandbox/{kind}/requests?drain=1"
            async with self.http.get(url) as response:
                return await response.read()

        kinds = list(KIND_OF.values())
        raw = await asyncio.gather(*(one(kind) for kind in kinds))
        return {kind: list(orjson.loads(body)) for kind, body in zip(kinds, raw, strict=True)}

    async def collect(self) -> None:
        """Drain every journal and match their calls into the current window.

        Often and small, because the sandbox serialises a journal in one go (its event loop
        blocked meanwhile): a big journal read every few seconds would hold up the vendor
        calls arriving meanwhile, and the benchmark would measure itself."""
        journals = await self.read_journals()
        tracker, window = self.tracker, self.window  # after the awaits: a sample may have cut
        t = time.monotonic() - self.sampler.started
        for (kind, n), (received_at, first_seen) in list(tracker.orphans.items()):
            if tracker.match(kind, n, received_at, window, t):
                del tracker.orphans[(kind, n)]
            elif first_seen < t - ORPHAN_WAIT_S:
                del tracker.orphans[(kind, n)]  # its post failed, or it is not ours
                tracker.unmatched += 1
                window.unmatched += 1
        for kind, entries in journals.items():
            for entry in entries:
                status = entry.get("status")
                if status is not None and not 200 <= int(status) < 300:
                    window.vendor_errors += 1
                email = common.email_of(entry.get("body"))
                n = event_number(email) if isinstance(email, str) else None
                if n is None:
                    continue
                received_at = float(entry["received_at"])
                if not tracker.match(kind, n, received_at, window, t):
                    tracker.orphans[(kind, n)] = (received_at, t)

    async def collect_every(self, period: float, stop: asyncio.Event) -> None:
        """`collect` every `period` seconds until `stop` is set, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
            await self.collect()

    async def clear_journals(self) -> None:
        async with self.http.delete(f"{self.sandbox}/_sandbox/requests") as response:
            if response.status not in (200, 204):
                raise SystemExit(f"sandbox journal clear: {response.status}")

    async def redis_figures(self) -> dict[str, Any]:
        """used_memory, DBSIZE and the keys by prefix (one SCAN), queue and dead letters."""
        memory = await self.redis.info("memory")
        persistence = await self.redis.info("persistence")
        groups: Counter[str] = Counter()
        async for key in self.redis.scan_iter(count=5000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            parts = text.split(":")
            groups[":".join(parts[:2]) if len(parts) > 1 else text] += 1
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.dbsize()
            pipe.zcard("arq:queue")
            pipe.zcard(keys.DEAD_LETTERS)
            dbsize, queue, dead = await pipe.execute()
        return {
            "redis_used_mb": round(int(memory["used_memory"]) / 2**20, 2),
            "redis_used_rss_mb": round(int(memory["used_memory_rss"]) / 2**20, 2),
            "aof_mb": round(int(persistence.get("aof_current_size", 0)) / 2**20, 2),
            "dbsize": int(dbsize),
            "event_keys": groups.get(_group(keys.event), 0),
            "applied_keys": groups.get(_group(keys.applied), 0),
            "arq_queue": int(queue),
            "dead_letters": int(dead),
            "keys": dict(sorted(groups.items())),
        }

    async def sample(self) -> dict[str, Any]:
        """One row of the time series: processes, Redis, and the window's posts and calls."""
        window, self.window = self.window, Window()
        figures = await self.redis_figures()
        expected = self.tracker.expected_stored(time.time(), self.args.retention)
        latencies = window.latency_ms
        row = self.sampler.sample()
        row.update(
            phase=self.phase,
            posted=sum(window.posts.values()),
            accepted=window.posts["202"],
            http_4xx=window.posts["4xx"],
            http_5xx=window.posts["5xx"],
            client_errors=window.posts["client_error"],
            in_flight=self.in_flight,
            ack_p50_ms=_round(common.percentile(window.ack_ms, 0.5)),
            ack_p99_ms=_round(common.percentile(window.ack_ms, 0.99)),
            send_lag_max_ms=_round(max(window.lag_ms, default=0.0)),
            deliveries=len(latencies),
            lat_p50_ms=_round(common.percentile(latencies, 0.5)) if latencies else None,
            lat_p99_ms=_round(common.percentile(latencies, 0.99)) if latencies else None,
            lat_max_ms=_round(max(latencies)) if latencies else None,
            vendor_errors=window.vendor_errors,
            duplicate_calls=window.duplicates,
            unmatched_calls=window.unmatched,
            expected_events=expected,
            **figures,
        )
        self.series.append(row)
        return row

    async def sample_every(self, interval: float, stop: asyncio.Event) -> None:
        """Sample at start + k * interval until `stop` is set (absolute schedule too)."""
        start = time.monotonic()
        k = 1
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, start + k * interval - time.monotonic())
                )
            if stop.is_set():
                return
            row = await self.sample()
            k = max(k + 1, int((time.monotonic() - start) / interval) + 1)
            print(_progress(row), flush=True)


def _round(value: float) -> float:
    return round(value, 1)


def _progress(row: dict[str, Any]) -> str:
    workers = " ".join(f"{row.get(f'worker{i}_rss_mb', 0):.0f}" for i in range(1, WORKERS + 1))
    return (
        f"  t={row['t']:6.0f}s {row['phase']:<5} posted={row['posted']:5} "
        f"p50={row['lat_p50_ms']} p99={row['lat_p99_ms']} ms  rss gw={row['gateway_rss_mb']:.0f} "
        f"workers={workers} MB  redis={row['redis_used_mb']:.0f} MB  "
        f"events={row['event_keys']}/{row['expected_events']}  queue={row['arq_queue']}"
    )


async def drive(
    args: argparse.Namespace, gateway: str, sandbox: str, redis_url: str, pids: dict[str, int]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, tuple[array[float], array[float]]]]:
    """Users, probe, then the paced load with sampling, then a short drain and final checks."""
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    redis = Redis.from_url(redis_url)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            sampler = common.Sampler(pids)
            soak = Soak(args, http, redis, gateway, sandbox, sampler)
            print(f"creating {args.users:,} users at the 4 sandbox vendors ...", flush=True)
            await soak.make_users(args.users + 1)
            await soak.probe(args.users)
            print(
                f"load: {args.rate:g} events/s ({args.rate * 4:g} vendor calls/s) for "
                f"{args.duration:g} s, retention {args.retention} s, sample every "
                f"{args.interval:g} s, journals read every {args.journal_poll:g} s",
                flush=True,
            )
            soak.sampler.started = time.monotonic()
            soak.phase = "idle"
            await soak.sample()  # t=0: the processes before any load
            soak.phase = "load"
            stop_sampling, stop_collecting = asyncio.Event(), asyncio.Event()
            sampling = asyncio.create_task(soak.sample_every(args.interval, stop_sampling))
            collecting = asyncio.create_task(soak.collect_every(args.journal_poll, stop_collecting))
            try:
                total = await soak.pace(args.rate, args.duration)
                stop_sampling.set()
                await sampling
                await soak.collect()
                await soak.sample()  # the last load window, cut at the end of the schedule
                soak.phase = "drain"
                deadline = time.monotonic() + max(10.0, 2 * args.interval)
                while soak.tracker.waiting and time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    await soak.sample()
            finally:
                stop_sampling.set()
                stop_collecting.set()
                await asyncio.gather(sampling, collecting, return_exceptions=True)
            await soak.sample()
            checks = await final_checks(soak, total)
            return checks, soak.series, soak.tracker.latencies
    finally:
        await redis.aclose()


async def final_checks(soak: Soak, total: int) -> dict[str, Any]:
    """After the drain: the status of a sample of the deliveries never seen in a journal (not
    delivered, or a journal read lost), and retention at work: the first event gone, the last
    one's TTL."""
    tracker = soak.tracker
    missing = sum(len(kinds) for _, kinds in tracker.waiting.values())
    horizon = time.time() - soak.args.retention + 10
    recent = [n for n, (at, _) in tracker.waiting.items() if at > horizon]
    statuses: Counter[str] = Counter()
    for n in random.sample(recent, min(len(recent), 300)):
        kinds = tracker.waiting[n][1]
        async with soak.http.get(
            f"{soak.gateway}/v1/events/soak-{soak.tag}-{n}", headers=soak.headers
        ) as response:
            if response.status == 404:
                statuses["event_gone"] += len(kinds)
                continue
            body = orjson.loads(await response.read())
        for target, state in body.get("targets", {}).items():
            if KIND_OF.get(target) in kinds:
                statuses[str(state.get("status"))] += 1
    first_stored = None
    first_status = None
    if soak.first_event_id:
        key = keys.event("hris", soak.first_event_id)
        first_stored = bool(await soak.redis.exists(key))
        async with soak.http.get(
            f"{soak.gateway}/v1/events/{soak.first_event_id}", headers=soak.headers
        ) as response:
            first_status = response.status
    last_ttl_s = None
    if soak.last_event_id:
        pttl = await soak.redis.pttl(keys.event("hris", soak.last_event_id))
        last_ttl_s = round(pttl / 1000, 1) if pttl and pttl > 0 else pttl
    return {
        "events_scheduled": total,
        "events_accepted": tracker.accepted,
        "deliveries_expected": tracker.accepted * len(KIND_OF),
        "deliveries_seen": tracker.accepted * len(KIND_OF) - missing,
        "deliveries_unseen": missing,
        "unseen_status_sample": dict(statuses),
        "duplicate_calls": tracker.duplicates,
        "unmatched_calls": tracker.unmatched,
        "first_event_stored_at_end": first_stored,
        "first_event_get_status": first_status,
        "last_event_ttl_s": last_ttl_s,
    }


# --- the summary -----------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def rss_summary(series: list[dict[str, Any]], names: list[str], duration: float) -> dict[str, Any]:
    """Per process: idle, after warm-up, end (last 20%), peak, change, flat, under target."""
    load = [row for row in series if row["phase"] == "load"]
    baseline_rows = [r for r in load if WARMUP * duration <= r["t"] < (WARMUP + 0.1) * duration]
    baseline_rows = baseline_rows or load[: max(1, len(load) // 5)]
    end_rows = [r for r in load if r["t"] >= 0.8 * duration] or load[-1:]
    idle = next((row for row in series if row["phase"] == "idle"), None)
    out: dict[str, Any] = {}
    for name in names:
        key = f"{name}_rss_mb"
        baseline = _mean([r[key] for r in baseline_rows])
        end = _mean([r[key] for r in end_rows])
        peak = max((r[key] for r in series), default=0.0)
        change = (end / baseline - 1) if baseline and end is not None else None
        target = TARGET_RSS_MB.get(name.rstrip("0123456789"))
        out[name] = {
            "idle_mb": idle[key] if idle else None,
            "after_warmup_mb": _round(baseline) if baseline is not None else None,
            "end_mb": _round(end) if end is not None else None,
            "peak_mb": peak,
            "change_pct": round(change * 100, 1) if change is not None else None,
            # judged for the product's processes only: Redis grows until the retention is reached
            "flat": None
            if target is None
            else change is not None and abs(change) <= FLAT_TOLERANCE,
            "target_mb": target,
            "under_target": None if target is None else peak < target,
        }
    return out


def cpu_summary(series: list[dict[str, Any]], names: list[str]) -> dict[str, float]:
    """Mean CPU use of each process over the load phase, in % of one core."""
    load = [row for row in series if row["phase"] in ("idle", "load")]
    if len(load) < 2:
        return {}
    span = load[-1]["t"] - load[0]["t"]
    return {
        name: round((load[-1][f"{name}_cpu_s"] - load[0][f"{name}_cpu_s"]) / span * 100, 1)
        for name in names
        if span > 0
    }


def redis_summary(series: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Stored events against rate x retention, and Redis memory flat in the steady state.

    The steady state starts once the retention has passed (events expire as fast as they
    come) and every user of the pool has had an event (each user's identity links are kept
    without expiry: they grow with the pool, not with time), plus two samples; its first and
    last thirds are compared. Too short a steady state (under a third of the run) says
    nothing."""
    rate, retention, duration = args.rate, args.retention, args.duration
    load = [row for row in series if row["phase"] == "load"]
    steady_from = max(retention, args.users / rate) + 2 * args.interval
    steady = [row for row in load if row["t"] >= steady_from]
    out: dict[str, Any] = {
        "expected_events_at_rate": round(rate * retention),
        "peak_event_keys": max((r["event_keys"] for r in series), default=0),
        "peak_used_mb": max((r["redis_used_mb"] for r in series), default=0.0),
        "end_used_mb": load[-1]["redis_used_mb"] if load else None,
        "end_dbsize": load[-1]["dbsize"] if load else None,
        "end_keys": load[-1]["keys"] if load else None,
        "dead_letters_end": series[-1]["dead_letters"] if series else None,
    }
    if duration - steady_from < duration / 3 or len(steady) < 3:
        out["assessable"] = False
        out["note"] = f"not judged: steady from {steady_from:g} s, run {duration:g} s"
        return out
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    mem_first = _mean([r["redis_used_mb"] for r in first]) or 0.0
    mem_last = _mean([r["redis_used_mb"] for r in last]) or 0.0
    ratios = [r["event_keys"] / r["expected_events"] for r in steady if r["expected_events"]]
    mem_change = mem_last / mem_first - 1 if mem_first else None
    out.update(
        assessable=True,
        steady_from_s=steady[0]["t"],
        used_mb_steady_first=_round(mem_first),
        used_mb_steady_last=_round(mem_last),
        used_mb_change_pct=round(mem_change * 100, 1) if mem_change is not None else None,
        memory_plateau=mem_change is not None and abs(mem_change) <= FLAT_TOLERANCE,
        event_keys_steady_mean=round(_mean([r["event_keys"] for r in steady]) or 0),
        stored_over_expected_mean=round(_mean(ratios) or 0, 3),
        stored_over_expected_max=round(max(ratios, default=0), 3),
        events_trimmed=bool(ratios) and max(ratios) <= 1 + FLAT_TOLERANCE,
    )
    return out


def latency_summary(
    latencies: dict[str, tuple[array[float], array[float]]], duration: float
) -> dict[str, Any]:
    """p50/p99/max of every matched call, per vendor and in all; also after the warm-up."""

    def figures(values: list[float]) -> dict[str, Any]:
        return {
            "calls": len(values),
            "p50_ms": _round(common.percentile(values, 0.5)),
            "p99_ms": _round(common.percentile(values, 0.99)),
            "max_ms": _round(max(values, default=0.0)),
        }

    out: dict[str, Any] = {}
    everything: list[float] = []
    after: list[float] = []
    for kind, (times, values) in sorted(latencies.items()):
        everything += values
        after += [v for t, v in zip(times, values, strict=True) if t >= WARMUP * duration]
        out[kind] = figures(list(values))
    out["all"] = figures(everything)
    out["all_after_warmup"] = figures(after)
    out["target_p99_ms"] = TARGET_P99_MS
    out["under_target"] = out["all"]["p99_ms"] < TARGET_P99_MS
    return out


LOG_EVENT = re.compile(rb'"event":"([^"]*)"')
LOG_LEVEL = re.compile(rb'"level":"([a-z]*)"')
REDIS_BANNER = (
    "Redis is starting",
    "Redis version=",
    "Configuration loaded",
    "Server initialized",
    "User requested shutdown",
    "ready to exit",
)
"""Lines of redis-server's start and stop logged at warning level (`#`) that warn of nothing."""


def service_logs(directory: Path) -> dict[str, Any]:
    """Each service's log, read (streamed: an info log of a long run is large) before the
    temporary directory goes: lines per level and event name, and the first lines that are not
    info (warnings, errors, tracebacks)."""
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.log")):
        names: Counter[str] = Counter()
        notable: list[str] = []
        lines = 0
        with path.open("rb") as stream:
            for line in stream:
                lines += 1
                level = LOG_LEVEL.search(line)
                event = LOG_EVENT.search(line)
                if level is None or event is None:
                    names["(not JSON)" if line.strip() else "(blank)"] += 1
                    key = "text"
                else:
                    key = level.group(1).decode()
                    names[f"{key}:{event.group(1).decode()}"] += 1
                if key != "info" and len(notable) < 10 and line.strip():
                    notable.append(line.decode(errors="replace").rstrip()[:400])
        out[path.stem] = {"lines": lines, "events": dict(names.most_common(20)), "notable": notable}
    redis_log = directory / "redis" / "redis.log"
    if redis_log.exists():
        warnings = [
            line[:300]
            for line in redis_log.read_text(errors="replace").splitlines()
            if " # " in line and not any(word in line for word in REDIS_BANNER)
        ]
        out["redis"] = {"lines": len(warnings), "events": {}, "notable": warnings[:10]}
    return out


# --- running it ------------------------------------------------------------------------------


def soak_config(directory: Path, redis_url: str, retention: int) -> tuple[Path, int, int]:
    """common.write_config with `retention_s`, and each vendor's `retry.max_age_s` cut to it
    (the config refuses a retry window longer than the retention); the ports."""
    gateway_port, sandbox_port = common.free_port(), common.free_port()
    path = common.write_config(
        directory,
        redis_url=redis_url,
        gateway_port=gateway_port,
        sandbox_port=sandbox_port,
        retention_s=retention,
    )
    config = yaml.safe_load(path.read_text())
    for vendor in config["vendors"].values():
        vendor.setdefault("retry", {})["max_age_s"] = retention
    path.write_text(yaml.safe_dump(config))
    return path, gateway_port, sandbox_port


def wait_ready(service: common.Service, url: str, timeout_s: float = 30) -> None:
    """common.wait_http, but give up at once (with its log) if the process has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            log = service.log_path.read_text(errors="replace") if service.log_path else ""
            raise SystemExit(f"{service.name} exited ({service.process.returncode}):\n{log}")
        try:
            common.wait_http(url, timeout_s=0.5)
        except SystemExit:
            continue
        else:
            return
    raise SystemExit(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def services(
    root: Path, directory: Path, redis_url: str, retention: int
) -> Iterator[tuple[str, str, dict[str, common.Service]]]:
    """Sandbox, gateway and the workers of `root`, stopped (SIGINT, then SIGKILL) on exit."""
    config, gateway_port, sandbox_port = soak_config(directory, redis_url, retention)
    started: dict[str, common.Service] = {}
    try:
        started["sandbox"] = common.usersync("sandbox", config, root, directory)
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        wait_ready(started["sandbox"], sandbox + "/_sandbox/healthz")
        started["gateway"] = common.usersync("gateway", config, root, directory)
        gateway = f"http://127.0.0.1:{gateway_port}"
        wait_ready(started["gateway"], gateway + "/readyz")
        for n in range(1, WORKERS + 1):
            name = f"worker{n}"
            started[name] = common.usersync("worker", config, root, directory, name=name)
        yield gateway, sandbox, started
    finally:
        for service in reversed(list(started.values())):
            service.stop()


def redis_pid(url: str) -> int | None:
    """redis-server's pid, from INFO server (for its RSS and CPU)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    except Exception:  # noqa: BLE001 - only a nicety for the samples
        return None
    finally:
        client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything of the checkout at --root, soak it, stop it, summarise."""
    root = Path(args.root).resolve()
    directory = Path(tempfile.mkdtemp(prefix="usersync-soak-"))
    try:
        with (
            common.redis_server(directory) as redis_url,
            services(root, directory, redis_url, args.retention) as (gw, sb, started),
        ):
            pids = {name: service.pid for name, service in started.items()}
            pid = redis_pid(redis_url)
            if pid:
                pids["redis"] = pid
            pids["client"] = os.getpid()
            checks, series, latencies = _run_loop(drive(args, gw, sb, redis_url, pids))
            dead = {n: s.process.poll() for n, s in started.items() if s.process.poll()}
        logs = service_logs(directory)
    finally:
        if args.keep:
            print(f"kept: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    names = [name for name in pids if name not in ("client",)]
    return {
        "root": str(root),
        "commit": _commit(root),
        "rate_events_per_s": args.rate,
        "rate_source": args.rate_source,
        "workers": WORKERS,
        "args": {k: v for k, v in vars(args).items() if k != "rate_source"},
        "rss": rss_summary(series, names, args.duration),
        "cpu_pct": cpu_summary(series, [*names, "client"]),
        "redis": redis_summary(series, args),
        "latency": latency_summary(latencies, args.duration),
        "posts": _post_totals(series, args.rate),
        "checks": checks,
        "exited_early": dead,
        "logs": logs,
        "series": series,
    }


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _post_totals(series: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """Posts by answer, pacer lag, and whether the workers kept up (arq's queue at the end of
    the load holds less than a second of vendor calls)."""
    keys = ("posted", "accepted", "http_4xx", "http_5xx", "client_errors", "vendor_errors")
    totals: dict[str, Any] = {key: sum(row[key] for row in series) for key in keys}
    load = [row for row in series if row["phase"] == "load"]
    totals["send_lag_max_ms"] = max((row["send_lag_max_ms"] for row in load), default=0.0)
    totals["ack_p99_ms_worst_window"] = max((row["ack_p99_ms"] for row in load), default=0.0)
    totals["arq_queue_max"] = max((row["arq_queue"] for row in series), default=0)
    totals["arq_queue_end_of_load"] = load[-1]["arq_queue"] if load else None
    span = load[-1]["t"] if load else 0.0
    calls = sum(row["deliveries"] for row in load)
    totals["vendor_calls_seen_per_s"] = round(calls / span, 1) if span else None
    totals["kept_up"] = bool(load) and load[-1]["arq_queue"] <= max(100.0, rate * len(KIND_OF))
    return totals


def _verdict(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "NO"


def report(result: dict[str, Any]) -> None:
    args = result["args"]
    print()
    print(
        f"soak: {result['rate_events_per_s']:g} events/s ({result['rate_source']}) for "
        f"{args['duration']:g} s, {result['workers']} workers, retention {args['retention']} s"
    )
    rows = [
        [
            name,
            row["idle_mb"],
            row["after_warmup_mb"],
            row["end_mb"],
            row["peak_mb"],
            f"{row['change_pct']:+.1f}%" if row["change_pct"] is not None else "-",
            _verdict(row["flat"]),
            "-" if row["target_mb"] is None else f"< {row['target_mb']:g}",
            result["cpu_pct"].get(name, "-"),
        ]
        for name, row in result["rss"].items()
    ]
    print(
        common.table(
            [
                "RSS MB",
                "idle",
                "after warm-up",
                "end (last 20%)",
                "peak",
                "change",
                "flat ±10%",
                "target",
                "CPU %",
            ],
            rows,
        )
    )
    print()
    redis = result["redis"]
    lines = [
        ["expected events (rate x retention)", redis["expected_events_at_rate"]],
        ["peak stored events", redis["peak_event_keys"]],
        ["peak used_memory MB", redis["peak_used_mb"]],
        ["end used_memory MB", redis["end_used_mb"]],
        ["end DBSIZE", redis["end_dbsize"]],
        ["dead letters", redis["dead_letters_end"]],
    ]
    if redis.get("assessable"):
        lines += [
            ["steady state from s", redis["steady_from_s"]],
            ["stored / expected events, mean", redis["stored_over_expected_mean"]],
            ["stored / expected events, max", redis["stored_over_expected_max"]],
            ["events trimmed as configured", "yes" if redis["events_trimmed"] else "NO"],
            [
                "used_memory steady first -> last MB",
                f"{redis['used_mb_steady_first']} -> {redis['used_mb_steady_last']}",
            ],
            ["used_memory plateau ±10%", "yes" if redis["memory_plateau"] else "NO"],
        ]
    else:
        lines.append(["plateau", redis["note"]])
    print(common.table(["Redis", "value"], lines))
    keys = " ".join(f"{k}={v:,}" for k, v in (redis["end_keys"] or {}).items())
    print(f"keys at the end of the load: {keys}")
    print()
    latency = result["latency"]
    print(
        common.table(
            ["ingest-to-vendor", "calls", "p50 ms", "p99 ms", "max ms"],
            [
                [name, row["calls"], row["p50_ms"], row["p99_ms"], row["max_ms"]]
                for name, row in latency.items()
                if isinstance(row, dict)
            ],
        )
    )
    print(f"p99 target < {TARGET_P99_MS:g} ms: {'met' if latency['under_target'] else 'MISSED'}")
    print()
    posts, checks = result["posts"], result["checks"]
    print(
        common.table(
            ["posts and deliveries", "value"],
            [
                ["posted", posts["posted"]],
                ["202", posts["accepted"]],
                [
                    "4xx / 5xx / client errors",
                    f"{posts['http_4xx']} / {posts['http_5xx']} / {posts['client_errors']}",
                ],
                ["pacer send lag max ms", posts["send_lag_max_ms"]],
                ["worst window ack p99 ms", posts["ack_p99_ms_worst_window"]],
                ["vendor calls seen per s (load)", posts["vendor_calls_seen_per_s"]],
                [
                    "arq queue max / at end of load",
                    f"{posts['arq_queue_max']} / {posts['arq_queue_end_of_load']}",
                ],
                ["workers kept up", _verdict(posts["kept_up"])],
                [
                    "deliveries expected / seen",
                    f"{checks['deliveries_expected']} / {checks['deliveries_seen']}",
                ],
                ["unseen by status (sample)", checks["unseen_status_sample"] or "-"],
                ["vendor non-2xx answers", posts["vendor_errors"]],
                ["duplicate vendor calls", checks["duplicate_calls"]],
                ["journal calls matching no 202", checks["unmatched_calls"]],
                ["first event stored at end", _verdict(checks["first_event_stored_at_end"])],
                ["GET first event at end", checks["first_event_get_status"]],
                ["last event TTL s", checks["last_event_ttl_s"]],
            ],
        )
    )
    print()
    for name, log in result["logs"].items():
        print(f"log {name}: {log['lines']:,} lines {log['events']}")
        for line in log["notable"][:5]:
            print(f"    {line}")
    if result["exited_early"]:
        print(f"EXITED EARLY: {result['exited_early']}")
    if not posts["kept_up"]:
        print("NOTE: the workers fell behind (arq's queue grew): the rate is above saturation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(common.ROOT), help="checkout to measure")
    parser.add_argument("--rate", type=float, help="events/s (default: half of e2e saturation)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--retention", type=int, default=120, help="retention.events_s of the run (>= 60)"
    )
    parser.add_argument(
        "--users",
        type=int,
        help="user pool, cycled through (default: rate x retention, 100 to 5,000, so every "
        "user has had an event once the retention has passed)",
    )
    parser.add_argument(
        "--journal-poll",
        type=float,
        help="seconds between reads (and clears) of the sandbox journals (default: about 100 "
        "calls a read, 0.25 to 2 s)",
    )
    parser.add_argument("--quick", action="store_true", help="60 s of load instead of 600")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-charts", action="store_true", help="do not run bench/charts.py")
    parser.add_argument(
        "--no-write", action="store_true", help="do not write bench/results (nor charts)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 60.0
    if args.retention < 60:
        parser.error("--retention must be at least 60 (the config refuses less)")
    if args.rate is None:
        rate, source = rate_from_e2e(common.RESULTS_DIR / "e2e-latest.json")
        args.rate, args.rate_source = (rate, source) if rate else (DEFAULT_RATE, "default")
        if not rate:
            print(f"rate: {DEFAULT_RATE:g} events/s ({source})")
    else:
        args.rate_source = "--rate"
    if args.journal_poll is None:
        calls_per_s = args.rate * len(KIND_OF)
        args.journal_poll = round(min(2.0, max(0.25, JOURNAL_BITE / calls_per_s)), 2)
    if args.users is None:
        args.users = min(5000, max(100, int(args.rate * args.retention)))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    report(result)
    if args.no_write:
        return 0
    path = common.write_result("soak", result)
    print(f"written: {path}")
    if not args.no_charts:
        charts = Path(__file__).resolve().parent / "charts.py"
        subprocess.run([sys.executable, str(charts)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
