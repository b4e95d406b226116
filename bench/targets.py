"""Issue 15's target table: every target with its figure, its same-run baseline, the ratio, met.

    .venv/bin/python bench/targets.py               # reads bench/results/*-latest.json
    .venv/bin/python bench/targets.py --markdown    # the same table for docs/performance.md

Reads what the other scripts last wrote (ingest, e2e, burst and soak `-latest.json`), prints
one table and writes bench/results/targets-latest.json. Every baseline comes from the same run
as its figure (the naive LPUSH handler of the same ingest run, bare arq + PATCH of the same
e2e setup, ...); a target a script did not measure says "not measured", one the checkout
cannot run yet (`gateway.processes` before it exists) "not available". `make bench` and
`make bench-quick` run it last, with `--started` (when make began) for the total time.

A status is met / NOT MET by the rule in the `goal` column: a ratio (figure / baseline) for
the relative targets, the figure itself for the absolute ones (CPU us, p99 ms, calls per
event). The gateway.processes row has no number in the issue: it is met when two processes
take more events/s than one ("uses every core when asked"); its ratio is the scaling.
"""

from __future__ import annotations

import argparse
import json
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs

SOURCES = ("ingest", "e2e", "burst", "soak")
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


def _get(data: dict[str, Any] | None, *path: str) -> Any:
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
    summary = _get(data, "summary") or {}

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
    connections = _get(data, "args", "connections")
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
    saturation = [r for r in _get(data, "saturation") or [] if isinstance(r, dict)]
    latency = [r for r in _get(data, "latency") or [] if isinstance(r, dict)]
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
    calls = _get(data, "calls_per_event")
    wrong, dead = _get(data, "wrong_users") or 0, _get(data, "dead") or 0
    status = NOT_MET if calls is not None and (wrong or dead) else None
    users, updates = _get(data, "args", "users"), _get(data, "args", "updates")
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
    rss = _get(data, "rss") or {}
    products = [name for name in rss if name == "gateway" or name.startswith("worker")]
    duration = _get(data, "args", "duration")
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


# --- the table ------------------------------------------------------------------------------


def load(directory: Path) -> dict[str, dict[str, Any] | None]:
    """Each source's -latest.json (None: not there or unreadable)."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in SOURCES:
        try:
            data = json.loads((directory / f"{name}-latest.json").read_text())
        except (OSError, ValueError):
            data = None
        found[name] = data if isinstance(data, dict) else None
    return found


def build(results: dict[str, dict[str, Any] | None]) -> list[Row]:
    return [
        *ingest_rows(results.get("ingest")),
        *e2e_rows(results.get("e2e")),
        *burst_rows(results.get("burst")),
        *soak_rows(results.get("soak")),
    ]


def provenance(results: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """When each source was written, and whether in its short form (--quick)."""
    return {
        name: {
            "at": _get(data, "machine", "at"),
            "quick": bool(_get(data, "args", "quick")),
            "root": _get(data, "root") or _get(data, "args", "root"),
        }
        for name, data in results.items()
        if data is not None
    }


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".rstrip()


def lines(rows: list[Row]) -> Iterator[list[str]]:
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        baseline = _figure(r.baseline, r.unit)
        if r.baseline is not None and r.baseline_is:
            baseline += f" ({r.baseline_is})"
        yield [r.target, _figure(r.value, r.unit), baseline, ratio, r.goal, r.status, r.note]


HEADERS = ("target", "measured", "baseline, same run", "ratio", "goal", "status", "note")


def render(rows: list[Row]) -> str:
    return common.table(HEADERS, list(lines(rows)))


def markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines(rows)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(common.RESULTS_DIR), help="where to read")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--started", type=float, help="epoch seconds the bench began")
    parser.add_argument("--no-write", action="store_true", help="do not write the result")
    args = parser.parse_args()
    results = load(Path(args.results))
    rows = build(results)
    sources = provenance(results)
    print("issue 15 targets (each baseline from the same run as its figure)")
    for name, where in sources.items():
        short = ", --quick" if where["quick"] else ""
        print(f"  {name}: {where['at']}{short}")
    for name in SOURCES:
        if name not in sources:
            print(f"  {name}: no {name}-latest.json")
    print(markdown(rows) if args.markdown else render(rows))
    counts = {s: sum(r.status == s for r in rows) for s in (MET, NOT_MET)}
    print(f"{counts[MET]} met, {counts[NOT_MET]} not met, of {len(rows)} rows")
    print("not measured here: every correctness test unchanged (`make test`)")
    elapsed = round(time.time() - args.started) if args.started else None
    if elapsed is not None:
        print(f"bench time: {elapsed // 60} min {elapsed % 60} s")
    if not args.no_write:
        result = {
            "sources": sources,
            "bench_s": elapsed,
            "met": counts[MET],
            "not_met": counts[NOT_MET],
            "rows": [asdict(r) for r in rows],
        }
        print(f"written: {common.write_result('targets', result)}")


if __name__ == "__main__":
    main()
