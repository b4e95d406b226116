"""bench/targets.py and target_rules.py: the issue's target table from the scripts' results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # bench/ is a folder of scripts: on the path for this import only
try:
    import target_rules as rules
    import targets
finally:
    sys.path.remove(str(BENCH))


def ingest(usersync_per_s: float, lpush_per_s: float, **extra: Any) -> dict[str, Any]:
    lpush = {"events_per_s": lpush_per_s, "cpu_us_per_event": 130.0, "p99_ms": 10.0}
    lpush["redis_cpu_us_per_event"] = 18.0
    ours = {"events_per_s": usersync_per_s, "cpu_us_per_event": 150.0, "p99_ms": 25.0}
    ours["redis_cpu_us_per_event"] = 90.0
    return {"summary": {"lpush": lpush, "usersync": ours, **extra}, "args": {"connections": 50}}


def by_target(rows: list[rules.Row]) -> dict[str, rules.Row]:
    return {r.target: r for r in rows}


def test_ratio_targets_compare_figure_with_its_same_run_baseline() -> None:
    """A relative target is met by figure / baseline against its limit, not by the figure."""
    fast = by_target(rules.ingest_rows(ingest(4000, 3000)))
    slow = by_target(rules.ingest_rows(ingest(2000, 3000)))
    name = "ingest, single posts, 4-target events: events/s"
    assert (fast[name].status, fast[name].ratio) == (rules.MET, 1.33)
    assert (slow[name].status, slow[name].ratio) == (rules.NOT_MET, 0.67)
    p99 = by_target(rules.ingest_rows(ingest(4000, 3000)))
    assert p99["ingest p99, single posts, 4-target, 50 connections"].status == rules.NOT_MET


def test_absolute_targets_judge_the_figure_itself() -> None:
    """Gateway CPU (<= 200 us) and Redis CPU (<= 80 us) are judged on the figure alone."""
    rows = by_target(rules.ingest_rows(ingest(4000, 3000)))
    cpu = rows["gateway CPU per single post, 4-target"]
    assert (cpu.value, cpu.baseline, cpu.status) == (150.0, 130.0, rules.MET)
    redis = rows["Redis CPU per accepted 4-target event (INFO cpu, main thread)"]
    assert (redis.value, redis.status) == (90.0, rules.NOT_MET)


def test_a_system_the_checkout_cannot_run_is_not_available() -> None:
    """usersync-p2 refused by the config reads 'not available'; left out, 'not measured'."""
    refused = {"available": False, "reason": "unknown key 'processes'"}
    rows = by_target(rules.ingest_rows(ingest(1, 1, **{"usersync-p2": refused})))
    name = "gateway.processes: 2, events/s vs 1 process (4-target)"
    assert rows[name].status == rules.NOT_AVAILABLE
    assert "processes" in rows[name].note
    missing = by_target(rules.ingest_rows(ingest(1, 1)))
    assert missing[name].status == rules.NOT_MEASURED
    two = {"available": True, "events_per_s": 3000.0, "processes": 3, "cpu_us_per_event": 300}
    scaled = by_target(rules.ingest_rows(ingest(2000, 1, **{"usersync-p2": two})))
    assert (scaled[name].ratio, scaled[name].status) == (1.5, rules.MET)


def test_e2e_pairs_each_setup_with_the_bare_row_of_the_same_setup() -> None:
    """usersync run is compared with the bare row of its own setup, not another's."""
    rows = [
        {"system": "usersync", "mode": "workers", "workers": 2, "targets": 1,
         "vendor_latency_ms": 0, "deliveries_per_s": 900.0, "cpu_ms_per_delivery": 1.0},
        {"system": "bare", "mode": "workers", "workers": 2, "targets": 1,
         "vendor_latency_ms": 0, "deliveries_per_s": 1000.0, "cpu_ms_per_delivery": 1.2},
        {"system": "usersync", "mode": "run", "workers": 1, "targets": 1,
         "vendor_latency_ms": 0, "deliveries_per_s": 600.0, "cpu_ms_per_delivery": 1.5},
        {"system": "bare", "mode": "run", "workers": 1, "targets": 1,
         "vendor_latency_ms": 0, "deliveries_per_s": 500.0, "cpu_ms_per_delivery": 1.0},
    ]  # fmt: skip
    latency = [{"mode": "run", "workers": 1, "targets": 1, "vendor_latency_ms": 0,
                "rate_events_per_s": 250.0, "p50_ms": 8.0, "p99_ms": 60.0}]  # fmt: skip
    found = by_target(rules.e2e_rows({"saturation": rows, "latency": latency}))
    workers = found["end to end, gateway + 2 workers, 1-target: deliveries/s"]
    assert (workers.ratio, workers.status) == (0.9, rules.NOT_MET)
    run = found["end to end, usersync run (1 process), 1-target: deliveries/s"]
    assert (run.baseline, run.ratio, run.status) == (500.0, 1.2, rules.MET)
    cpu = found["worker CPU per delivery, usersync run (1 process), 1-target"]
    assert (cpu.ratio, cpu.status) == (1.5, rules.NOT_MET)
    p99 = found["ingest-to-vendor p99 at half saturation, usersync run (1 process), 1-target"]
    assert p99.status == rules.NOT_MET


def test_older_e2e_rows_read_as_separate_workers_and_four_targets() -> None:
    """A result written before setups had mode and targets still fills its rows."""
    rows = [
        {"system": "usersync", "workers": 2, "vendor_latency_ms": 0,
         "deliveries_per_s": 400.0, "cpu_ms_per_delivery": 2.0},
        {"system": "bare", "workers": 2, "vendor_latency_ms": 0,
         "deliveries_per_s": 460.0, "cpu_ms_per_delivery": 1.6},
    ]  # fmt: skip
    found = by_target(rules.e2e_rows({"saturation": rows, "latency": []}))
    row = found["end to end, gateway + 2 workers, 4-target: deliveries/s"]
    assert (row.baseline, row.ratio) == (460.0, 0.87)


def test_burst_and_soak_rows() -> None:
    """Coalescing <= 0.1 calls per event unless a document is wrong; RSS flat per process."""
    burst = {"calls_per_event": 0.08, "wrong_users": 0, "dead": 0, "args": {"users": 100}}
    assert rules.burst_rows(burst)[0].status == rules.MET
    assert rules.burst_rows({**burst, "wrong_users": 2})[0].status == rules.NOT_MET
    rss = {
        "gateway": {"after_warmup_mb": 70.0, "end_mb": 71.0, "flat": True},
        "worker1": {"after_warmup_mb": 70.0, "end_mb": 90.0, "flat": False},
        "redis": {"after_warmup_mb": 5.0, "end_mb": 30.0, "flat": None},
    }
    soak = by_target(rules.soak_rows({"rss": rss, "args": {"duration": 600}}))
    assert set(soak) == {"RSS flat in the soak: gateway", "RSS flat in the soak: worker1"}
    assert soak["RSS flat in the soak: worker1"].status == rules.NOT_MET


def test_missing_results_are_not_measured() -> None:
    """With no result files every row says 'not measured', none 'met'."""
    rows = targets.build(dict.fromkeys(targets.SOURCES))
    assert rows
    assert {r.status for r in rows} == {rules.NOT_MEASURED}
    assert "not measured" in targets.render(rows)
