"""`Bulkhead`: at most `max_in_flight` calls to one vendor instance at once in this process.

A vendor hanging until its timeout can take at most its bulkhead's places, never every slot
of the worker: a run that finds no place free is deferred (its events wait `in_flight`) and
gives its slot back. But a busy, healthy vendor's bulkhead is full most of the time too (a
worker whose jobs all go to one vendor runs twice as many jobs as the bulkhead holds), and
deferring there cost a whole run per deferral (begin, read, plan, commit: 1.2 extra runs per
delivery measured in bench/e2e.py with one-target events). So a run waits for a place, up to
`PATIENCE_S`, while the vendor's calls are ending (one ended within `PATIENCE_S`): a place
then frees within a call's duration divided by the places. A vendor whose calls are all
hanging has ended none lately: its runs are deferred at once, as before.
"""

from __future__ import annotations

import asyncio
import time

PATIENCE_S = 0.05
"""Longest wait for a place, and how recently a call must have ended for a run to wait."""


class Bulkhead:
    """One vendor instance's places for calls in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._places = asyncio.Semaphore(limit)
        self._ended_at = -PATIENCE_S
        """When a run last gave its place back (monotonic s)."""

    async def enter(self) -> bool:
        """Take a place: at once if one is free, else waiting up to `PATIENCE_S` while calls
        are ending. False: none was taken (the run is deferred)."""
        if not self._places.locked():
            await self._places.acquire()  # never waits
            return True
        if time.monotonic() - self._ended_at > PATIENCE_S:
            return False
        try:
            async with asyncio.timeout(PATIENCE_S):
                await self._places.acquire()
        except TimeoutError:
            return False
        return True

    def leave(self) -> None:
        """Give the place back once the call has ended."""
        self._ended_at = time.monotonic()
        self._places.release()
