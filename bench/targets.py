"""Issue 15's target table: every target with its figure, its same-run baseline, the ratio, met.

    .venv/bin/python bench/targets.py               # reads bench/results/*-latest.json
    .venv/bin/python bench/targets.py --markdown    # the same table for docs/performance.md

Reads what the other scripts last wrote (ingest, e2e, burst and soak `-latest.json`), prints
one table and writes bench/results/targets-latest.json. Every baseline comes from the same run
as its figure (the naive LPUSH handler of the same ingest run, bare arq + PATCH of the same
e2e setup, ...); the rules of each row are in bench/target_rules.py. `make bench` and
`make bench-quick` run it last, with `--started` (when make began) for the total time.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import common  # bench/ is on sys.path when a script of it runs
from target_rules import (
    MET,
    NOT_MET,
    Row,
    burst_rows,
    e2e_rows,
    ingest_rows,
    lookup,
    soak_rows,
)

SOURCES = ("ingest", "e2e", "burst", "soak")


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
            "at": lookup(data, "machine", "at"),
            "quick": bool(lookup(data, "args", "quick")),
            "root": lookup(data, "root") or lookup(data, "args", "root"),
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
