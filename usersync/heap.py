"""The garbage collector of a serving process (gateway, worker, `usersync run`).

CPython's cyclic collector runs a young collection every 700 net allocations of container
objects and a full one every 100 young ones, each full one walking every object the process
holds. A post allocates hundreds (dicts, coroutines, models, futures) and, under load, many
are alive at once, so a gateway at 3,000 posts a second collected dozens of times a second
and its full collections, walking the 100,000 objects of the modules, models and settings
loaded at start, took 35-50 ms each: every request in flight waited for them. Measured with
the ingest bench (wrk, 50 connections): collecting took 5-10% of the gateway's CPU and set
its p99 (62 -> 34 ms without it; RSS unchanged).

So once a process serves, `settle_heap` moves what it allocated to start out of the
collector's sight (`gc.freeze`: never garbage, never walked again) after one last collection,
and raises the young threshold: collections come 10 times less often, each over the objects
of the last few requests. Garbage cycles are still collected (the first collection after
them); memory in between grows by at most a few thousand small objects.
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger("usersync")

YOUNG_THRESHOLD = 7_000
"""Net allocations of container objects between young collections (CPython's default: 700);
the older generations keep their thresholds (a full collection every 100 young ones)."""


def settle_heap() -> None:
    """Once the process has started serving: collect, freeze what is left (see the module),
    and collect the young generation every `YOUNG_THRESHOLD` allocations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    log.debug("heap_settled", frozen=gc.get_freeze_count(), young_threshold=YOUNG_THRESHOLD)
