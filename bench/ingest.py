"""Ingest benchmark: the real gateway beside the simplest handlers, in one run.

    .venv/bin/python bench/ingest.py                 # 3 rounds x 10 s per system
    .venv/bin/python bench/ingest.py --quick         # 1 round x 3 s
    .venv/bin/python bench/ingest.py --root /tmp/old # another checkout's gateway

Each system is its own server process on loopback, against the same private redis-server
(AOF, fsync every second, as usersync's embedded one), loaded by wrk (`-t1 -c50`, a Lua script
making every request a new ~400-byte event with its own id; a Python aiohttp client stands in
if wrk is not installed, and is then itself the bottleneck):

- bare: aiohttp handler, orjson parse, 202 (bench/baseline_server.py);
- lpush: the same plus one `LPUSH` per request (the naive durable handler);
- arq: the same plus one arq `enqueue_job` per request;
- usersync: `usersync gateway`: bearer auth, validation, dedupe, durable storage of the event
  and its four targets' pending entries and jobs (one Lua script), 202;
- usersync-batch: `POST /v1/events:batch` with 100 events a request, 5 connections (events/s
  counted; latencies are a whole batch's).

Rounds alternate the systems so drift hits them alike; the table gives each one's median
round. After every usersync round the stored events are counted in Redis: each 202 must
have one (durability is checked, not assumed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs
import redis
from folded import summarize

from core import keys

SYSTEMS = ("bare", "lpush", "arq", "usersync", "usersync-batch")
BATCH = 100
BATCH_CONNECTIONS = 5
"""Batch requests in flight: 5 x 100 events keeps the gateway busy without queueing seconds
of work behind each connection (50 x 100 would time requests out)."""

WRK_SCRIPT = r"""
-- every request a new event: its own id, one of BENCH_USERS users, an increasing version
local counter = 0
local run = os.getenv("BENCH_RUN")
local users = tonumber(os.getenv("BENCH_USERS"))
local batch = tonumber(os.getenv("BENCH_BATCH"))
local template = '{"event_id":"%s-%d","occurred_at":"2026-11-22T10:15:00Z",'
  .. '"user":{"id":"bench-%d","version":%d,"external_ids":{"mileapp":"m%d",'
  .. '"fleet-eu":"%d","plaspy":"p%d","partoo":"t%d"}},'
  .. '"changes":{"email":"user%d.v%d@example.com","job_title":"Engineer, level %d"}}'
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

local function event()
  counter = counter + 1
  local u = counter % users
  return string.format(template, run, counter, u, counter, u, 1000 + u, u, u, u, counter, counter)
end

request = function()
  if batch <= 1 then
    return wrk.format(nil, nil, nil, event())
  end
  local events = {}
  for i = 1, batch do events[i] = event() end
  return wrk.format(nil, nil, nil, '{"events":[' .. table.concat(events, ",") .. ']}')
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"errors":%d,'
    .. '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_load(
    url: str, path: str, seconds: float, connections: int, run: str, batch: int, script: Path
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_RUN": run,
        "BENCH_USERS": "10000",
        "BENCH_BATCH": str(batch),
        "BENCH_PATH": path,
        "BENCH_TOKEN": common.SOURCE_TOKEN,
    }
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    out = subprocess.run(
        [*argv, "-s", str(script), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT "))
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    return {
        "requests": raw["requests"],
        "seconds": raw["duration_us"] / 1e6,
        "non_2xx": raw["non_2xx"],
        "errors": raw["errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


async def _python_load(
    url: str, path: str, seconds: float, connections: int, run: str, batch: int
) -> dict[str, Any]:
    """The fallback load generator: a closed loop of `connections` aiohttp clients."""
    import aiohttp

    latencies: list[float] = []
    non_2xx = errors = 0
    counter = 0
    headers = {"Authorization": f"Bearer {common.SOURCE_TOKEN}"}

    def event() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        user = counter % 10000
        return common.event_body(f"{run}-{counter}", user, counter, f"u{user}.v{counter}@x.io")

    async def client(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal non_2xx, errors
        while time.monotonic() < deadline:
            body: Any = event() if batch <= 1 else {"events": [event() for _ in range(batch)]}
            began = time.perf_counter()
            try:
                async with session.post(url + path, json=body, headers=headers) as response:
                    await response.read()
                    non_2xx += not 200 <= response.status < 300
            except aiohttp.ClientError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(*(client(session, deadline) for _ in range(connections)))
        elapsed = time.monotonic() - began
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "non_2xx": non_2xx,
        "errors": errors,
        "p50_ms": common.percentile(latencies, 0.5) * 1000,
        "p99_ms": common.percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=0) * 1000,
    }


def load(
    url: str, path: str, seconds: float, connections: int, run: str, batch: int, script: Path
) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk_load(url, path, seconds, connections, run, batch, script)
    return asyncio.run(_python_load(url, path, seconds, connections, run, batch))


def start_system(
    system: str, root: Path, tmp: Path, redis_url: str, port: int
) -> tuple[common.Service, str]:
    """The server of `system`, started and answering; and the path events are posted to."""
    if system.startswith("usersync"):
        config = common.write_config(
            tmp, redis_url=redis_url, gateway_port=port, sandbox_port=common.free_port()
        )
        service = common.usersync("gateway", config, root, tmp)
        health = "/healthz"
        path = "/v1/events:batch" if system == "usersync-batch" else "/v1/events"
    else:
        service = common.start(
            system,
            [
                sys.executable,
                str(common.BENCH_DIR / "baseline_server.py"),
                "--mode",
                system,
                "--port",
                str(port),
                "--redis",
                redis_url,
            ],
            common.ROOT,
            tmp,
        )
        health, path = "/healthz", "/v1/events"
    common.wait_http(f"http://127.0.0.1:{port}{health}")
    return service, path


def start_profiler(
    args: argparse.Namespace, system: str, number: int, pid: int
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server during the last round's measured run (`--profile`)."""
    if not args.profile or number != args.rounds - 1 or not system.startswith("usersync"):
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = common.RESULTS_DIR / f"ingest-profile-{system}.folded"
    common.RESULTS_DIR.mkdir(exist_ok=True)
    argv = [spy, "record", "-p", str(pid), "-d", str(int(args.duration)), "-r", "200"]
    return subprocess.Popen(
        [*argv, "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish_profiler(profiler: subprocess.Popen[bytes], system: str) -> None:
    profiler.wait(60)
    folded = common.RESULTS_DIR / f"ingest-profile-{system}.folded"
    if folded.exists():
        summary = common.RESULTS_DIR / f"ingest-profile-{system}.txt"
        summary.write_text(summarize(folded))
        print(f"profile: {summary}", flush=True)


def stored_events(client: redis.Redis, run: str) -> int:
    return sum(1 for _ in client.scan_iter(match=keys.event("hris", f"{run}-*"), count=10000))


def one_round(
    system: str, number: int, args: argparse.Namespace, tmp: Path, redis_url: str, script: Path
) -> dict[str, Any]:
    port = common.free_port()
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    service, path = start_system(system, Path(args.root), tmp, redis_url, port)
    url = f"http://127.0.0.1:{port}"
    batch = BATCH if system == "usersync-batch" else 1
    connections = BATCH_CONNECTIONS if batch > 1 else args.connections
    try:
        load(url, path, 2, connections, f"warm{number}", batch, script)
        run = f"r{number}"
        cpu_before = common.cpu_seconds(service.pid)
        profiler = start_profiler(args, system, number, service.pid)
        figures = load(url, path, args.duration, connections, run, batch, script)
        cpu = common.cpu_seconds(service.pid) - cpu_before
        if profiler is not None:
            finish_profiler(profiler, system)
        figures["rss_mb"] = round(service.rss_mb(), 1)
    finally:
        service.stop()
    events = figures["requests"] * batch
    figures["events"] = events
    figures["events_per_s"] = events / figures["seconds"]
    figures["cpu_us_per_event"] = cpu / max(events, 1) * 1e6
    if system.startswith("usersync"):
        accepted = events if figures["non_2xx"] == 0 else None
        figures["stored"] = stored_events(client, run)
        # each 202 answered has its event stored; those in flight at the end may be stored too
        figures["durable_ok"] = accepted is not None and accepted <= figures["stored"]
    client.flushall()
    client.close()
    return figures


def main(args: argparse.Namespace) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {system: [] for system in args.systems}
    with tempfile.TemporaryDirectory(prefix="usersync-bench-ingest-") as name:
        tmp = Path(name)
        script = tmp / "events.lua"
        script.write_text(WRK_SCRIPT)
        with common.redis_server(tmp) as redis_url:
            for number in range(args.rounds):
                for system in args.systems:
                    figures = one_round(system, number, args, tmp, redis_url, script)
                    rounds[system].append(figures)
                    print(
                        f"round {number + 1} {system:<15} {figures['events_per_s']:>9,.0f} ev/s"
                        f"  p99 {figures['p99_ms']:.1f} ms",
                        flush=True,
                    )
    summary = {system: median_round(runs) for system, runs in rounds.items()}
    return {
        "load_generator": "wrk" if shutil.which("wrk") else "aiohttp",
        "summary": summary,
        "rounds": rounds,
        "args": vars(args),
    }


def median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median events/s (its own latencies go with it)."""
    ordered = sorted(runs, key=lambda r: r["events_per_s"])
    middle = dict(ordered[len(ordered) // 2])
    middle["events_per_s_all"] = [round(r["events_per_s"]) for r in runs]
    middle["events_per_s_median"] = statistics.median(r["events_per_s"] for r in runs)
    return middle


def report(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lpush = summary.get("lpush", {}).get("events_per_s")
    rows = []
    for system, row in summary.items():
        ratio = f"{row['events_per_s'] / lpush:.2f}x" if lpush else "-"
        rows.append(
            [
                system,
                round(row["events_per_s"]),
                ratio,
                row["p50_ms"],
                row["p99_ms"],
                round(row["cpu_us_per_event"]),
                row["rss_mb"],
                row["non_2xx"] + row["errors"],
                "yes" if row.get("durable_ok") else ("-" if "stored" not in row else "NO"),
            ]
        )
    args = result["args"]
    head = (
        f"ingest: {result['load_generator']} -c{args['connections']}, {args['duration']} s x "
        f"{args['rounds']} rounds (median round shown)"
    )
    body = common.table(
        [
            "system",
            "events/s",
            "vs lpush",
            "p50 ms",
            "p99 ms",
            "CPU us/event",
            "RSS MB",
            "failed",
            "stored",
        ],
        rows,
    )
    return head + "\n" + body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(common.ROOT))
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the usersync gateway in the last round (bench/results/ingest-profile-*)",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.rounds, arguments.duration = 1, 3
    outcome = main(arguments)
    print(report(outcome))
    if not arguments.no_write:
        print(f"written: {common.write_result('ingest', outcome)}")
