"""The rules of issue 15's target table (bench/targets.py): one row per target, worked out
from a script's result: the figure, its baseline from the same run, the ratio, the status.

A status is met / NOT MET by the row's goal: a ratio (figure / baseline) for the relative
targets, the figure itself for the absolute ones (CPU us, p99 ms, calls per event); "not
measured" when the result lacks the figure, "not available" when the checkout cannot run the
system (`gateway.processes` before it existed). The gateway.processes row has no number in the
issue: it is met when two processes take more events/s than one ("uses every core when
asked"); its ratio is the scaling.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import common  # bench/ is on sys.path when a script of it runs

MET, NOT_MET, NOT_MEASURED, NOT_AVAILABLE = "met", "NOT MET", "not measured", "not available"
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Goal:
    """`on` "ratio" (figure / baseline) or "value" (the figure), compared with `limit`."""

    on: str
    op: str
    limit: float
    unit: str = ""

    def __str__(self) -> str:
        what = "x baseline" if self.on == "ratio" else f" {self.unit}".rstrip()
        return f"{self.op} {self.limit:g}{what}"

    def met(self, value: float, ratio: float | None) -> bool:
        subject = ratio if self.on == "ratio" else value
        return subject is not None and COMPARE[self.op](subject, self.limit)


@dataclass(frozen=True)
class Row:
    """One target of the table."""

    target: str
    source: str
    value: float | None
    baseline: float | None
    baseline_is: str
    unit: str
    ratio: float | None
    goal: str
    status: str
    note: str = ""


def row(
    target: str,
    source: str,
    goal: Goal,
    value: float | None,
    baseline: float | None = None,
    baseline_is: str = "",
    unit: str = "",
    note: str = "",
    status: str | None = None,
) -> Row:
    """A row with its ratio and status worked out (a missing figure: not measured)."""
    ratio = value / baseline if value is not None and baseline else None
    if status is None:
        status = NOT_MEASURED if value is None else (MET if goal.met(value, ratio) else NOT_MET)
    return Row(
        target=target,
        source=source,
        value=None if value is None else round(value, 2),
        baseline=None if baseline is None else round(baseline, 2),
        baseline_is=baseline_is,
        unit=unit,
        ratio=None if ratio is None else round(ratio, 2),
        goal=str(goal),
        status=status,
        note=note,
    )


def lookup(data: dict[str, Any] | None, *path: str) -> Any:
    """data[path[0]][path[1]]...; None where anything is missing."""
    current: Any = data
    for key in path:
        if not isinstance(current, dict) or key not in current:
            return None
        current = current[key]
    return current


# --- ingest ---------------------------------------------------------------------------------


def ingest_rows(data: dict[str, Any] | None) -> list[Row]:
    """Single posts (4- and 1-target) and batches vs the naive LPUSH handler, the gateway's
    CPU per post, p99 vs the naive p99, Redis CPU per 4-target event, the 1 -> 2 processes
    scaling."""
    summary = lookup(data, "summary") or {}

    def system(name: str) -> dict[str, Any] | None:
        found = summary.get(name)
        return found if isinstance(found, dict) and found.get("available", True) else None

    lpush = system("lpush") or {}
    naive = "naive LPUSH handler"
    rows = []
    for name, label in (("usersync", "4-target"), ("usersync-1t", "1-target")):
        ours = system(name) or {}
        rows.append(
            row(
                f"ingest, single posts, {label} events: events/s",
                "ingest",
                Goal("ratio", ">=", 1.0),
                ours.get("events_per_s"),
                lpush.get("events_per_s"),
                naive,
                "events/s",
            )
        )
    batch = system("usersync-batch") or {}
    rows.append(
        row(
            "ingest, batch posts (100 events a request): events/s",
            "ingest",
            Goal("ratio", ">=", 2.5),
            batch.get("events_per_s"),
            lpush.get("events_per_s"),
            naive,
            "events/s",
        )
    )
    for name, label in (("usersync", "4-target"), ("usersync-1t", "1-target")):
        ours = system(name) or {}
        rows.append(
            row(
                f"gateway CPU per single post, {label}",
                "ingest",
                Goal("value", "<=", 200, "us"),
                ours.get("cpu_us_per_event"),
                lpush.get("cpu_us_per_event"),
                naive,
                "us",
            )
        )
    connections = lookup(data, "args", "connections")
    for name, label in (("usersync", "4-target"), ("usersync-1t", "1-target")):
        ours = system(name) or {}
        rows.append(
            row(
                f"ingest p99, single posts, {label}, {connections or '?'} connections",
                "ingest",
                Goal("ratio", "<=", 2.0),
                ours.get("p99_ms"),
                lpush.get("p99_ms"),
                naive,
                "ms",
            )
        )
    ours = system("usersync") or {}
    script = ours.get("redis_script_usec_per_event")
    rows.append(
        row(
            "Redis CPU per accepted 4-target event (INFO cpu, main thread)",
            "ingest",
            Goal("value", "<=", 80, "us"),
            ours.get("redis_cpu_us_per_event"),
            lpush.get("redis_cpu_us_per_event"),
            "naive LPUSH's Redis CPU per event",
            "us",
            note="" if script is None else f"commandstats: {script:g} us in scripts",
        )
    )
    rows.append(processes_row(summary))
    return rows


def processes_row(summary: dict[str, Any]) -> Row:
    """`gateway.processes: 2` against one process, same 4-target events."""
    goal = Goal("ratio", ">", 1.0)
    target = "gateway.processes: 2, events/s vs 1 process (4-target)"
    two = summary.get("usersync-p2")
    one = summary.get("usersync") or {}
    if not isinstance(two, dict):
        return row(target, "ingest", goal, None, one.get("events_per_s"), "1 process", "events/s")
    if not two.get("available", True):
        reason = str(two.get("reason", ""))[:120]
        return row(
            target, "ingest", goal, None, None, "1 process", "events/s", reason, NOT_AVAILABLE
        )
    note = (
        f"gateway CPU {two.get('cpu_us_per_event', 0):.0f} us/event over "
        f"{two.get('processes', '?')} processes"
    )
    return row(
        target,
        "ingest",
        goal,
        two.get("events_per_s"),
        one.get("events_per_s"),
        "1 process",
        "events/s",
        note,
    )


# --- e2e ------------------------------------------------------------------------------------


def _setup(r: dict[str, Any]) -> tuple[str, int, int, int]:
    """A saturation row's setup (rows of older results: separate workers, four targets)."""
    return (
        str(r.get("mode", "workers")),
        int(r.get("workers", 0)),
        int(r.get("targets", len(common.KINDS))),
        int(r.get("vendor_latency_ms", 0)),
    )


def _where(mode: str, workers: int, targets: int, latency: int) -> str:
    who = "usersync run (1 process)" if mode == "run" else f"gateway + {workers} workers"
    vendor = f", vendor {latency} ms" if latency else ""
    return f"{who}, {targets}-target{vendor}"


def e2e_rows(data: dict[str, Any] | None) -> list[Row]:
    """Per setup: deliveries/s and worker CPU per delivery vs bare arq + PATCH of the same
    setup, and the ingest-to-vendor p99 at half of saturation."""
    saturation = [r for r in lookup(data, "saturation") or [] if isinstance(r, dict)]
    latency = [r for r in lookup(data, "latency") or [] if isinstance(r, dict)]
    bare = {_setup(r): r for r in saturation if r.get("system") == "bare"}
    rows = []
    for ours in (r for r in saturation if r.get("system") == "usersync"):
        setup = _setup(ours)
        base = bare.get(setup, {})
        where = _where(*setup)
        rows.append(
            row(
                f"end to end, {where}: deliveries/s",
                "e2e",
                Goal("ratio", ">=", 1.0),
                ours.get("deliveries_per_s"),
                base.get("deliveries_per_s"),
                "bare arq + PATCH",
                "deliveries/s",
            )
        )
        rows.append(
            row(
                f"worker CPU per delivery, {where}",
                "e2e",
                Goal("ratio", "<=", 1.0),
                ours.get("cpu_ms_per_delivery"),
                base.get("cpu_ms_per_delivery"),
                "bare arq + PATCH",
                "ms",
            )
        )
    for r in latency:
        setup = _setup(r)
        rate = r.get("rate_events_per_s")
        rows.append(
            row(
                f"ingest-to-vendor p99 at half saturation, {_where(*setup)}",
                "e2e",
                Goal("value", "<", 50, "ms"),
                r.get("p99_ms"),
                None,
                "",
                "ms",
                f"{rate:g} events/s, p50 {r.get('p50_ms')} ms" if rate is not None else "",
            )
        )
    if not rows:
        rows.append(row("end to end vs bare arq + PATCH", "e2e", Goal("ratio", ">=", 1.0), None))
    return rows


# --- burst and soak -------------------------------------------------------------------------


def burst_rows(data: dict[str, Any] | None) -> list[Row]:
    """Vendor calls per event and vendor (1 = no coalescing) when users get quick updates;
    coalescing must not cost correctness (every document right, nothing dead)."""
    calls = lookup(data, "calls_per_event")
    wrong, dead = lookup(data, "wrong_users") or 0, lookup(data, "dead") or 0
    status = NOT_MET if calls is not None and (wrong or dead) else None
    users, updates = lookup(data, "args", "users"), lookup(data, "args", "updates")
    note = f"{users} users x {updates} updates; wrong documents {wrong}, dead {dead}"
    return [
        row(
            "burst coalescing: vendor calls per event and vendor",
            "burst",
            Goal("value", "<=", 0.1),
            calls,
            1.0 if calls is not None else None,
            "one call per event (none merged)",
            "calls",
            note if data else "",
            status,
        )
    ]


def soak_rows(data: dict[str, Any] | None) -> list[Row]:
    """RSS of each usersync process at the end of the soak against after its warm-up: flat
    within the soak's tolerance (bench/soak.py FLAT_TOLERANCE)."""
    rss = lookup(data, "rss") or {}
    products = [name for name in rss if name == "gateway" or name.startswith("worker")]
    duration = lookup(data, "args", "duration")
    if not products:
        return [row("RSS flat in the soak", "soak", Goal("ratio", "<=", 1.1), None)]
    rows = []
    for name in products:
        figures = rss[name]
        flat = figures.get("flat")
        rows.append(
            row(
                f"RSS flat in the soak: {name}",
                "soak",
                Goal("ratio", "<=", 1.1),
                figures.get("end_mb"),
                figures.get("after_warmup_mb"),
                "its RSS after the warm-up",
                "MB",
                f"{duration:g} s, peak {figures.get('peak_mb')} MB" if duration else "",
                None if flat is None else (MET if flat else NOT_MET),
            )
        )
    return rows
