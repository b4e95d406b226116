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
  and its four targets' pending entries and jobs, 202 (events name no targets: all four);
- usersync-1t: the same with `targets: [<one instance>]` in every event (common.ONE_TARGET);
  the naive handlers' work does not depend on targets, so lpush is the baseline of both;
- usersync-batch: `POST /v1/events:batch` with 100 events a request, 5 connections (events/s
  counted; latencies are a whole batch's);
- usersync-p2: usersync with `gateway: {processes: 2}` (4-target events): the 1 -> 2 process
  scaling. A checkout whose config refuses the setting (or whose gateway does not start with
  it) gets the row "not available" instead of failing the run.

Rounds alternate the systems so drift hits them alike; the table gives each one's median
round. After every usersync round the stored events are counted in Redis: each 202 must
have one (durability is checked, not assumed). The gateway's CPU is that of its process and
its children (a multi-process gateway is counted whole). Redis's work over each measured run,
per accepted event: `INFO cpu` of the main thread (commands, networking, the event loop: the
issue's "Redis CPU per event") and of the whole server (+ AOF and other threads), and
`INFO commandstats` by command (a script's own commands are counted inside its EVALSHA and
again under their own names, so the table shows the scripts' usec and never a sum of all).
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs
import redis
from folded import summarize

from core import keys

SYSTEMS = ("bare", "lpush", "arq", "usersync", "usersync-1t", "usersync-batch", "usersync-p2")
GATEWAY_PROCESSES = 2
"""The process count of usersync-p2 (`gateway.processes`)."""
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
local targets = os.getenv("BENCH_TARGETS") or ""
local tail = "}"
if targets ~= "" then tail = ',"targets":' .. targets .. '}' end
local template = '{"event_id":"%s-%d","occurred_at":"2026-11-22T10:15:00Z",'
  .. '"user":{"id":"bench-%d","version":%d,"external_ids":{"mileapp":"m%d",'
  .. '"fleet-eu":"%d","plaspy":"p%d","partoo":"t%d"}},'
  .. '"changes":{"email":"user%d.v%d@example.com","job_title":"Engineer, level %d"}' .. tail
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
    url: str,
    path: str,
    seconds: float,
    connections: int,
    run: str,
    batch: int,
    script: Path,
    targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_TARGETS": json.dumps(list(targets)) if targets is not None else "",
        "BENCH_RUN": run,
        "BENCH_USERS": "10000",
        "BENCH_BATCH": str(batch),
        "BENCH_PATH": path,
        "BENCH_TOKEN": common.SOURCE_TOKEN,
    }
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
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
    url: str,
    path: str,
    seconds: float,
    connections: int,
    run: str,
    batch: int,
    targets: Sequence[str] | None = None,
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
        email = f"u{user}.v{counter}@x.io"
        return common.event_body(f"{run}-{counter}", user, counter, email, targets)

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
    url: str,
    path: str,
    seconds: float,
    connections: int,
    run: str,
    batch: int,
    script: Path,
    targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk_load(url, path, seconds, connections, run, batch, script, targets)
    return asyncio.run(_python_load(url, path, seconds, connections, run, batch, targets))


class NotAvailable(Exception):
    """The checkout cannot run this system (e.g. its config refuses `gateway.processes`)."""


def start_system(
    system: str, root: Path, tmp: Path, redis_url: str, port: int
) -> tuple[common.Service, str]:
    """The server of `system`, started and answering; and the path events are posted to."""
    if system.startswith("usersync"):
        extra = {"gateway": {"processes": GATEWAY_PROCESSES}} if system == "usersync-p2" else None
        config = common.write_config(
            tmp,
            redis_url=redis_url,
            gateway_port=port,
            sandbox_port=common.free_port(),
            extra=extra,
        )
        service = common.usersync("gateway", config, root, tmp, name=system)
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
    if not common.wait_started(service, f"http://127.0.0.1:{port}{health}"):
        reason = common.log_tail(service, 3)
        service.stop()
        if system == "usersync-p2":
            raise NotAvailable(reason)
        raise SystemExit(f"{system} exited before answering: {reason}")
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


def targets_of(system: str) -> list[str] | None:
    """The `targets` every event of `system` names (None: left out, all four instances)."""
    return [common.ONE_TARGET] if system == "usersync-1t" else None


SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
"""Commands whose commandstats time includes the commands their script ran: those are counted
again under their own names, so a sum over every command counts them twice."""


def redis_counters(client: redis.Redis) -> dict[str, Any]:
    """Redis's cumulative work so far: calls and usec per command, and its CPU seconds (the
    main thread's where Redis reports it, and the whole server's)."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    whole = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    main = cpu.get("used_cpu_sys_main_thread"), cpu.get("used_cpu_user_main_thread")
    return {
        "commands": {
            name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
            for name, value in stats.items()
        },
        "cpu_s": whole,
        "main_cpu_s": float(main[0]) + float(main[1]) if None not in main else whole,
    }


def redis_work(before: dict[str, Any], after: dict[str, Any], events: int) -> dict[str, Any]:
    """What Redis did for the measured run, per accepted event: main-thread CPU (INFO cpu:
    commands, networking, the event loop), the whole server's CPU (+ AOF and other threads),
    and commandstats by command, busiest first (a script's own commands appear inside its
    evalsha and again on their own lines; `redis_script_usec_per_event` is the scripts',
    `redis_direct_usec_per_event` the other commands', nested ones included)."""
    per_command = {}
    for name, (calls, usec) in after["commands"].items():
        calls0, usec0 = before["commands"].get(name, (0, 0))
        if calls > calls0:
            per_command[name] = {
                "calls_per_event": round((calls - calls0) / max(events, 1), 3),
                "usec_per_event": round((usec - usec0) / max(events, 1), 2),
            }
    ordered = dict(sorted(per_command.items(), key=lambda item: -item[1]["usec_per_event"]))
    scripts = sum(c["usec_per_event"] for n, c in ordered.items() if n in SCRIPT_COMMANDS)
    direct = sum(c["usec_per_event"] for n, c in ordered.items() if n not in SCRIPT_COMMANDS)

    def per_event(seconds: float) -> float:
        return round(seconds / max(events, 1) * 1e6, 2)

    return {
        "redis_cpu_us_per_event": per_event(after["main_cpu_s"] - before["main_cpu_s"]),
        "redis_cpu_all_us_per_event": per_event(after["cpu_s"] - before["cpu_s"]),
        "redis_script_usec_per_event": round(scripts, 2),
        "redis_direct_usec_per_event": round(direct, 2),
        "redis_calls_per_event": round(sum(c["calls_per_event"] for c in ordered.values()), 3),
        "redis_commands": ordered,
    }


def one_round(
    system: str, number: int, args: argparse.Namespace, tmp: Path, redis_url: str, script: Path
) -> dict[str, Any]:
    port = common.free_port()
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    try:
        service, path = start_system(system, Path(args.root), tmp, redis_url, port)
    except NotAvailable as exc:
        client.close()
        return {"available": False, "reason": str(exc)}
    url = f"http://127.0.0.1:{port}"
    batch = BATCH if system == "usersync-batch" else 1
    connections = BATCH_CONNECTIONS if batch > 1 else args.connections
    targets = targets_of(system)
    try:
        load(url, path, 2, connections, f"warm{number}", batch, script, targets)
        run = f"r{number}"
        processes = common.process_tree(service.pid)
        counters_before = redis_counters(client)
        cpu_before = common.tree_cpu_seconds(service.pid)
        profiler = start_profiler(args, system, number, service.pid)
        figures = load(url, path, args.duration, connections, run, batch, script, targets)
        cpu = common.tree_cpu_seconds(service.pid) - cpu_before
        counters_after = redis_counters(client)
        if profiler is not None:
            finish_profiler(profiler, system)
        figures["rss_mb"] = round(sum(common.rss_mb(pid) for pid in processes), 1)
        figures["processes"] = len(processes)
    finally:
        service.stop()
    events = figures["requests"] * batch
    figures["available"] = True
    figures["targets"] = len(targets) if targets is not None else len(common.KINDS)
    figures["events"] = events
    figures["events_per_s"] = events / figures["seconds"]
    figures["cpu_us_per_event"] = cpu / max(events, 1) * 1e6
    figures.update(redis_work(counters_before, counters_after, events))
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
                    if not figures["available"]:
                        print(f"round {number + 1} {system:<15} not available", flush=True)
                        continue
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
    if not all(r["available"] for r in runs):
        return next(r for r in runs if not r["available"])
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
        if not row["available"]:
            rows.append([system, "not available", *["-"] * 9])
            continue
        ratio = f"{row['events_per_s'] / lpush:.2f}x" if lpush else "-"
        rows.append(
            [
                system,
                round(row["events_per_s"]),
                ratio,
                row["p50_ms"],
                row["p99_ms"],
                round(row["cpu_us_per_event"]),
                round(row["redis_cpu_us_per_event"]),
                round(row["redis_script_usec_per_event"]),
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
            "redis CPU us/ev",
            "redis script us/ev",
            "RSS MB",
            "failed",
            "stored",
        ],
        rows,
    )
    notes = [
        f"{system}: not available ({row['reason']})"
        for system, row in summary.items()
        if not row["available"]
    ]
    for system in ("usersync", "usersync-1t"):
        row = summary.get(system, {})
        if row.get("available"):
            busiest = ", ".join(
                f"{name} {c['calls_per_event']:g}x {c['usec_per_event']:g} us"
                for name, c in list(row["redis_commands"].items())[:6]
            )
            notes.append(f"redis per {system} event (commandstats): {busiest}")
    notes.append(
        "redis CPU: INFO cpu, main thread, over the measured run; script us: commandstats "
        "usec of eval/evalsha (their own commands included)"
    )
    return "\n".join([head, body, *notes])


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
