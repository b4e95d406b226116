"""`ScriptBatcher`: the script calls of a worker's concurrent job runs share round trips.

A worker runs up to `worker.concurrency` jobs at once, and each of them sends its begin, its
permit, its commit and its job's finish as a round trip of its own. One round trip costs the
Python client ~45 us of CPU whatever it carries, a pipelined script call ~5-10 us (measured:
/work/helpers/perf/worker-cpu-rows.md), so a busy worker spent most of its Redis time on the
trips rather than the calls. Here each caller's calls wait in a queue and a writer sends all
that are waiting as one pipeline (`core.scripts.run_together`); those arriving meanwhile
wait for the next. Two writers, so one pipeline is on its way while Redis runs the other, as
the gateway's `Store` does for ingests. An idle worker pays no delay: the writer starts at
the next turn of the event loop.

The calls of one submission are sent together and in order, so the vendor guard's record
still runs just before the commit it goes with. Each script stays atomic on its own, as in
`run_together`; calls of different jobs never depended on running in one transaction.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from core.scripts import ScriptCall, run_together

MAX_CALLS = 256
"""Most script calls in one pipeline: bounds a reply's size and the wait of its first call."""
WRITERS = 2
"""Pipelines in flight at once (each on a connection of its own)."""

_Submission = tuple[Sequence[ScriptCall], "asyncio.Future[list[Any]]"]


class ScriptBatcher:
    """A `core.scripts.ScriptSender` whose callers share pipelines; no other state."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._waiting: deque[_Submission] = deque()
        self._writers: set[asyncio.Task[None]] = set()

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Each call's reply or the error Redis answered for it, in order (as `run_together`);
        a connection error raises. The calls go with whatever others are waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((calls, future))
        if len(self._writers) < WRITERS:
            writer = loop.create_task(self._write_waiting())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)  # one cancelled before it ran
        return await future

    async def _write_waiting(self) -> None:
        """Send what is waiting, one pipeline at a time, until nothing is. Never raises but a
        cancellation: a failed pipeline fails its callers, not the writer. It leaves
        `_writers` the moment it finds nothing waiting, with no await in between, so a call
        submitted then starts a writer of its own (the store's writer learned this)."""
        try:
            while self._waiting:
                batch = self._next_batch()
                try:
                    replies = await run_together(
                        self.redis, [call for calls, _ in batch for call in calls]
                    )
                except BaseException as exc:  # every caller of the pipeline gets it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                start = 0
                for calls, future in batch:
                    if not future.done():  # its caller was cancelled: the calls ran all the same
                        future.set_result(replies[start : start + len(calls)])
                    start += len(calls)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._writers.discard(task)

    def _next_batch(self) -> list[_Submission]:
        """Whole submissions from the front of the queue, up to MAX_CALLS calls (a larger one
        goes alone)."""
        batch = [self._waiting.popleft()]
        size = len(batch[0][0])
        while self._waiting and size + len(self._waiting[0][0]) <= MAX_CALLS:
            size += len(self._waiting[0][0])
            batch.append(self._waiting.popleft())
        return batch
