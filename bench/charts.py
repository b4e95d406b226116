"""Charts of the latest benchmark results, as PNGs for the README and docs/.

Reads bench/results/<name>-latest.json and writes into docs/img/:
- soak-latency.png: ingest-to-vendor p50/p99 (and max) per sampling window over the soak,
  with the 100 ms p99 target;
- soak-memory.png: RSS of the gateway and each worker with their targets (100/150 MB), and
  Redis used_memory with the stored events against the events accepted within the retention;
- e2e-latency.png, ingest-latency.png: latency against offered rate, when those files hold a
  recognisable table (a list of rows with a rate and a p50/p99 in ms); anything else is
  skipped with a message, since those benchmarks are written separately and may change.

    .venv/bin/python bench/charts.py
    .venv/bin/python bench/charts.py --results bench/results --out docs/img

Only matplotlib's Agg backend is used: no display needed. bench/soak.py runs this at its end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from core.keys import EVENT_PREFIX

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
IMG_DIR = BENCH_DIR.parent / "docs" / "img"
TARGET_RSS_MB = {"gateway": 100.0, "worker": 150.0}
TARGET_P99_MS = 100.0
"""The soak's ingest-to-vendor p99 target (bench/soak.py)."""
E2E_TARGET_P99_MS = 50.0
"""Issue 15's ingest-to-vendor p99 at half of saturation (bench/e2e.py)."""
DPI = 110


def load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _subtitle(data: dict[str, Any]) -> str:
    machine = data.get("machine") or {}
    parts = [str(data.get("commit") or "")]
    if machine.get("cpus"):
        parts.append(f"{machine['cpus']} CPUs")
    if machine.get("at"):
        parts.append(str(machine["at"])[:16].replace("T", " "))
    return ", ".join(p for p in parts if p)


def _time_axis(series: list[dict[str, Any]]) -> tuple[list[float], str]:
    """Seconds, or minutes for a run longer than 3 minutes."""
    ts = [float(row["t"]) for row in series]
    if ts and ts[-1] > 180:
        return [t / 60 for t in ts], "time since load start (min)"
    return ts, "time since load start (s)"


def _scale(series: list[dict[str, Any]]) -> float:
    ts = [float(row["t"]) for row in series]
    return 60.0 if ts and ts[-1] > 180 else 1.0


def soak_latency(data: dict[str, Any], out: Path) -> Path:
    """Top: p50/p99/max of each window's deliveries against time, target line at 100 ms.
    Bottom: events posted and calls seen per second, and arq's queue: a latency that climbs
    with the queue means the rate is above what the workers can take."""
    rows = [row for row in data["series"] if row.get("phase") in ("load", "drain")]
    series = [row for row in rows if row.get("lat_p50_ms") is not None]
    if not series:
        raise ValueError("no window with deliveries")
    xs, xlabel = _time_axis(series)
    fig, (ax, flow) = plt.subplots(
        2, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    ax.plot(xs, [r["lat_max_ms"] for r in series], ":", color="0.5", label="max")
    ax.plot(xs, [r["lat_p99_ms"] for r in series], "-o", ms=3, color="tab:red", label="p99")
    ax.plot(xs, [r["lat_p50_ms"] for r in series], "-o", ms=3, color="tab:blue", label="p50")
    ax.axhline(TARGET_P99_MS, ls="--", color="tab:red", alpha=0.5, label="p99 target (100 ms)")
    positive = [v for r in series for v in (r["lat_p50_ms"], r["lat_max_ms"]) if v and v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")  # a backlog's seconds and a quiet p50's milliseconds both show
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, max(TARGET_P99_MS, *positive) * 1.1)  # the target line always shows
    ax.set_ylabel("ingest-to-vendor latency (ms)")
    rate = data.get("rate_events_per_s") or 0
    interval = (data.get("args") or {}).get("interval", "?")
    ax.set_title(
        f"Soak: event accepted (202) to vendor call received, per {interval:g} s window\n"
        f"{rate:g} events/s x 4 vendors, {data.get('workers', '?')} workers — {_subtitle(data)}"
    )
    ax.grid(True, which="both", alpha=0.3)
    _drain_marker(ax, data["series"])
    ax.legend(loc="upper left", ncol=5, fontsize=9)

    fxs, _ = _time_axis(rows)
    previous = [row["t"] for row in data["series"]]
    dts = {id(row): row["t"] - previous[n - 1] for n, row in enumerate(data["series"]) if n}
    per_s = [
        (r["accepted"] / dts[id(r)], r["deliveries"] / 4 / dts[id(r)])
        if dts.get(id(r))
        else (0.0, 0.0)
        for r in rows
    ]
    flow.plot(fxs, [p[0] for p in per_s], "-", color="tab:blue", label="events accepted (202)/s")
    flow.plot(fxs, [p[1] for p in per_s], "-", color="tab:green", label="vendor calls seen/s ÷ 4")
    flow.axhline(rate, ls="--", color="0.5", alpha=0.6, label=f"offered ({rate:g}/s)")
    flow.set_ylabel("events per second")
    flow.set_ylim(0, max(rate, *(max(p) for p in per_s)) * 1.25)
    queue = flow.twinx()
    queue.plot(fxs, [r["arq_queue"] for r in rows], ":", color="tab:purple", label="arq queue")
    queue.set_ylabel("arq queue (jobs)", color="tab:purple")
    queue.set_ylim(0, max(10, *(r["arq_queue"] for r in rows)) * 1.25)
    _drain_marker(flow, data["series"], label=True)
    lines = flow.get_lines() + queue.get_lines()
    handles = [*lines, *flow.patches]
    flow.legend(handles, [h.get_label() for h in handles], loc="upper left", ncol=3, fontsize=9)
    flow.set_xlabel(xlabel)
    flow.grid(True, alpha=0.3)
    return _save(fig, out / "soak-latency.png")


def soak_memory(data: dict[str, Any], out: Path) -> Path:
    """RSS per process with targets; Redis used_memory and stored events with retention."""
    series = [row for row in data["series"] if row.get("phase") in ("idle", "load", "drain")]
    xs, xlabel = _time_axis(series)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    names = sorted(
        key.removesuffix("_rss_mb")
        for key in series[0]
        if key.endswith("_rss_mb") and key.startswith(("gateway", "worker"))
    )
    colors = {"gateway": "tab:blue"}
    worker_colors = iter(["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"])
    for name in names:
        color = colors.get(name) or next(worker_colors, None)
        top.plot(xs, [r[f"{name}_rss_mb"] for r in series], "-", color=color, label=name)
    for kind, target in TARGET_RSS_MB.items():
        color = "tab:blue" if kind == "gateway" else "tab:orange"
        top.axhline(target, ls="--", color=color, alpha=0.6, label=f"{kind} target ({target:g} MB)")
    top.set_ylim(0, max(160.0, *(r[f"{n}_rss_mb"] for r in series for n in names)) * 1.08)
    top.set_ylabel("RSS (MB)")
    top.set_title(
        f"Soak: memory at {data.get('rate_events_per_s', 0):g} events/s, retention "
        f"{(data.get('args') or {}).get('retention', '?')} s — {_subtitle(data)}"
    )
    top.grid(True, alpha=0.3)
    top.legend(loc="lower right", ncol=2)

    bottom.plot(
        xs, [r["redis_used_mb"] for r in series], "-", color="tab:red", label="Redis used_memory"
    )
    bottom.set_ylabel("Redis used_memory (MB)", color="tab:red")
    bottom.set_ylim(0, max(r["redis_used_mb"] for r in series) * 1.15)
    keys = bottom.twinx()
    keys.plot(
        xs,
        [r["event_keys"] for r in series],
        "-",
        color="tab:gray",
        lw=4,
        alpha=0.5,
        label=f"stored events ({EVENT_PREFIX}*)",
    )
    keys.plot(
        xs,
        [r["expected_events"] for r in series],
        "--",
        color="black",
        alpha=0.6,
        label="accepted within retention",
    )
    keys.set_ylabel(f"events ({EVENT_PREFIX}* keys)")
    keys.set_ylim(0, max(max(r["event_keys"] for r in series), 1) * 1.15)
    retention = (data.get("args") or {}).get("retention")
    if retention and series[-1]["t"] >= retention:
        bottom.axvline(retention / _scale(series), ls=":", color="0.4")
        bottom.annotate(
            " retention reached",
            (retention / _scale(series), 0),
            xytext=(2, 4),
            textcoords="offset points",
            fontsize=8,
            color="0.3",
        )
    _drain_marker(bottom, series)
    lines = bottom.get_lines()[:1] + keys.get_lines()
    bottom.legend(lines, [line.get_label() for line in lines], loc="lower right")
    bottom.set_xlabel(xlabel)
    bottom.grid(True, alpha=0.3)
    return _save(fig, out / "soak-memory.png")


def _drain_marker(ax: Axes, series: list[dict[str, Any]], label: bool = False) -> None:
    """Shade the drain after the load (no posts, the last deliveries come in)."""
    drain = [row["t"] for row in series if row.get("phase") == "drain"]
    if drain:
        scale = _scale(series)
        name = "drain (load over)" if label else None
        ax.axvspan(drain[0] / scale, drain[-1] / scale, color="0.9", zorder=0, label=name)


# --- other benchmarks: their layout is checked, and a file that differs is skipped -----------


def _rows(data: dict[str, Any], key: str, needed: tuple[str, ...]) -> list[dict[str, Any]]:
    """data[key] as a list of dicts that each have the `needed` keys with numbers."""
    rows = data.get(key)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"no list {key!r}")
    good = [r for r in rows if isinstance(r, dict) and all(_number(r.get(k)) for k in needed)]
    if not good:
        raise ValueError(f"{key!r}: no row with {', '.join(needed)}")
    return good


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _config(row: dict[str, Any]) -> str:
    """An e2e setup in words (rows of older results: separate workers, four targets)."""
    workers = row.get("workers", "?")
    vendor = row.get("vendor_latency_ms", "?")
    targets = row.get("targets", 4)
    who = (
        "usersync run"
        if row.get("mode") == "run"
        else f"{workers} worker{'s' if workers != 1 else ''}"
    )
    return f"{who}, {targets}-target\nvendor {vendor} ms"


def e2e_saturation(data: dict[str, Any], out: Path) -> Path:
    """Deliveries/s at saturation per configuration, usersync beside the bare arq worker."""
    rows = _rows(data, "saturation", ("deliveries_per_s",))
    configs = list(dict.fromkeys(_config(r) for r in rows))
    systems = list(dict.fromkeys(str(r.get("system", "usersync")) for r in rows))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(10, 5))
    for n, system in enumerate(systems):
        values = {_config(r): r["deliveries_per_s"] for r in rows if r.get("system") == system}
        xs = [i + (n - (len(systems) - 1) / 2) * width for i in range(len(configs))]
        bars = ax.bar(xs, [values.get(c, 0) for c in configs], width, label=system)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(configs)), configs)
    ax.set_xlim(-0.6, max(len(configs), 3) - 0.4)  # narrow bars when there are few
    ax.set_ylabel("vendor calls per second")
    ax.set_title(f"End to end: deliveries/s at saturation — {_subtitle(data)}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, out / "e2e-saturation.png")


def e2e_latency(data: dict[str, Any], out: Path) -> Path:
    """Ingest-to-vendor p50/p99/max per configuration at its fixed rate, with the target."""
    rows = _rows(data, "latency", ("p50_ms", "p99_ms"))
    labels = [
        f"{_config(r)}\n{r['rate_events_per_s']:g} events/s"
        if _number(r.get("rate_events_per_s"))
        else _config(r)
        for r in rows
    ]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.27
    for n, (key, color) in enumerate(
        (("p50_ms", "tab:blue"), ("p99_ms", "tab:red"), ("max_ms", "0.6"))
    ):
        values = [r.get(key) if _number(r.get(key)) else 0 for r in rows]
        bars = ax.bar(
            [i + (n - 1) * width for i in range(len(rows))],
            values,
            width,
            color=color,
            label=key.removesuffix("_ms"),
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.axhline(
        E2E_TARGET_P99_MS,
        ls="--",
        color="tab:red",
        alpha=0.5,
        label=f"p99 target ({E2E_TARGET_P99_MS:g} ms)",
    )
    ax.set_xticks(range(len(rows)), labels)
    ax.set_xlim(-0.6, max(len(rows), 3) - 0.4)
    ax.set_ylabel("event accepted (202) to vendor call (ms)")
    ax.set_title(f"End to end: latency at a fixed rate — {_subtitle(data)}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, out / "e2e-latency.png")


def ingest_throughput(data: dict[str, Any], out: Path) -> Path:
    """Events/s per gateway variant (median round), and its p50/p99 answer time."""
    summary = data.get("summary")
    if not isinstance(summary, dict):
        raise TypeError("no summary")
    rows = {
        name: row
        for name, row in summary.items()
        if isinstance(row, dict) and all(_number(row.get(k)) for k in ("events_per_s", "p99_ms"))
    }
    if not rows:
        raise ValueError("summary: no row with events_per_s and p99_ms")
    names = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars = left.barh(names, [rows[n]["events_per_s"] for n in names], color="tab:blue")
    left.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    left.invert_yaxis()
    left.set_xlabel("events per second (median round)")
    left.set_title("Ingest throughput")
    left.grid(True, axis="x", alpha=0.3)
    height = 0.4
    ys = range(len(names))
    for n, (key, color) in enumerate((("p50_ms", "tab:blue"), ("p99_ms", "tab:red"))):
        values = [rows[name].get(key) if _number(rows[name].get(key)) else 0 for name in names]
        right.barh([y + (n - 0.5) * height for y in ys], values, height, color=color, label=key[:3])
    right.set_yticks(list(ys), names)
    right.invert_yaxis()
    right.set_xlabel("answer time under load (ms)")
    right.set_title("Ingest latency")
    right.grid(True, axis="x", alpha=0.3)
    right.legend()
    generator = data.get("load_generator", "?")
    fig.suptitle(f"POST /v1/events and baselines, load by {generator} — {_subtitle(data)}")
    return _save(fig, out / "ingest.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


CHARTS: dict[str, list[Callable[[dict[str, Any], Path], Path]]] = {
    "soak": [soak_latency, soak_memory],
    "e2e": [e2e_saturation, e2e_latency],
    "ingest": [ingest_throughput],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(RESULTS_DIR), help="where *-latest.json are")
    parser.add_argument("--out", default=str(IMG_DIR), help="where the PNGs go")
    args = parser.parse_args(argv)
    results, out = Path(args.results), Path(args.out)
    written = 0
    for name, makers in CHARTS.items():
        path = results / f"{name}-latest.json"
        data = load(path)
        if data is None:
            print(f"charts: {path.name} missing or unreadable, skipped")
            continue
        for make in makers:
            try:
                print(f"charts: written {make(data, out)}")
                written += 1
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                print(f"charts: {name}: not charted ({type(exc).__name__}: {exc})")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
