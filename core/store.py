"""Reads and writes of usersync's own Redis state: events, per-target status, links, profile.

Ingest is one Lua script, so the dedupe check, the stored event, the status of every target,
its place in each target's pending set, the identity links and any arq job a pair still needs
land together or not at all: a 202 can only follow a write that contains everything needed to
deliver, and a crash in between leaves nothing half-done. Jobs are written in arq's own format
(JSON-serialised, see `core.pairs`) in the same round trip.

Concurrent ingests share round trips: each waits in the store's queue, and a writer sends all
that are waiting as one pipeline of EVALSHAs, while those arriving meanwhile wait for the next
(two writers, so one batch is sent while Redis runs the other). An idle gateway pays no delay (the writer starts at the next turn of the event loop);
a busy one pays one round trip per batch instead of one per event, which is where a Python
Redis client's time goes (shared/notes/baselines.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from arq.constants import default_queue_name, job_key_prefix
from redis.asyncio import Redis

from config.ingress import LinkMode, SourceRateLimit
from core import keys
from core.event import URGENT_PRIORITY, URGENT_TYPES
from core.links import Ingested, LinkChange, LinkConflict, LinkDetail
from core.pairs import job_payload
from core.redis_client import ReplicaAck
from core.scripts import ScriptCall, load_lua, run_together
from core.source_rate import RateLimited, rate_arguments
from core.status import TargetStatus

"""The name parts kept in the user's profile, for vendors with a single `name`."""

MAX_WRITE_BATCH = 512
"""Most ingests sent in one pipeline: bounds a batch's reply size and the wait it adds to
the first of its events."""
WRITERS = 2
"""Pipelines in flight at once: while Redis runs one batch's scripts, the next is on its way,
so neither the gateway nor Redis waits for the other (each its own connection)."""

_BODY = keys.EVENT_BODY.encode()
_RECEIVED_AT = keys.EVENT_RECEIVED_AT.encode()
_STATUS = keys.EVENT_STATUS_PREFIX.encode()

_Pending = tuple["IngestRecord", str, SourceRateLimit | None, "asyncio.Future[Ingested]"]


@dataclass(frozen=True)
class IngestRecord:
    """Everything one accepted event writes, prepared by the gateway."""

    source: str
    event_id: str
    user_id: str
    order_key: int
    event_json: bytes
    acceptance: Mapping[str, Any]
    targets: Sequence[str]
    links: Mapping[str, str]
    name_parts: Mapping[str, str | None]
    link_mode: LinkMode = "set"
    """`create`: the script refuses the event (`LinkConflict`) if a link holds another id."""
    urgent: bool | None = None
    """`core.event.Event.urgent`, as the gateway read it; None: read from `event_json`."""

    def is_urgent(self) -> bool:
        """Whether the pairs' jobs go ahead of normal ones: the ingest script is told, so it
        need not decode the event to know."""
        if self.urgent is not None:
            return self.urgent
        try:
            event = orjson.loads(self.event_json)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        return event.get("priority") == URGENT_PRIORITY or event.get("type") in URGENT_TYPES


class Store:
    """usersync's Redis state; holds a connection pool and the queue of ingests waiting for
    the writer (see the module's docstring), no other state."""

    def __init__(
        self,
        redis: Redis,
        retention_s: int,
        queue_name: str = default_queue_name,
        *,
        replica_ack: ReplicaAck | None = None,
    ) -> None:
        self.redis = redis
        # `redis.min_replicas_ack`: each ingest pipeline ends with WAIT, one for all its events
        self.replica_ack = replica_ack
        # redis-py types asyncio commands as `Awaitable[T] | T`; `_commands` is the same client
        # seen as Any so the awaits type-check without a cast at every call.
        self._commands: Any = redis
        self.retention_ms = retention_s * 1000
        self.queue_name = queue_name
        self._ingest = redis.register_script(load_lua(keys.Script.INGEST))
        self._waiting: deque[list[_Pending]] = deque()
        self._writers: set[asyncio.Task[None]] = set()

    async def ingest(
        self, record: IngestRecord, received_at: str, rate: SourceRateLimit | None = None
    ) -> Ingested:
        """Store the event and queue it for each target's pair; (False, original answer) if a
        duplicate. A pair without a scheduled job gets one (see `core.pairs`). Written
        with whatever other ingests are waiting; a Redis error raises (the caller answers 503),
        and so does `LinkConflict` (nothing stored). With `rate`, the same script first takes
        the post from the source's allowance (`core.source_rate`, as `SourceRates.take` with
        cost 1): over it, `RateLimited` raises and nothing is stored; one round trip a post."""
        (future,) = self._submit([record], received_at, rate)
        return await future

    async def ingest_many(
        self, records: Sequence[IngestRecord], received_at: str
    ) -> list[Ingested | LinkConflict]:
        """`ingest` for several events, in order, in one pipeline: each script is atomic on
        its own and sees what the ones before it wrote, so a repeated event id is a duplicate
        of its first occurrence and two events of one pair share its job. An event refused
        for a link is answered its `LinkConflict`, the others are stored. A Redis error raises
        (the caller answers 503); the events stored before it are then answered as duplicates
        on retry."""
        if not records:
            return []
        answers = await asyncio.gather(*self._submit(records, received_at), return_exceptions=True)
        results: list[Ingested | LinkConflict] = []
        for answer in answers:
            if not isinstance(answer, Ingested | LinkConflict):
                raise answer
            results.append(answer)
        return results

    def _submit(
        self,
        records: Sequence[IngestRecord],
        received_at: str,
        rate: SourceRateLimit | None = None,
    ) -> list[asyncio.Future[Ingested]]:
        """Queue one caller's ingests for a writer (started if fewer than WRITERS run); their
        futures hold the answers. One caller's ingests are never split between pipelines."""
        loop = asyncio.get_running_loop()
        submission = [(record, received_at, rate, loop.create_future()) for record in records]
        self._waiting.append(submission)
        if len(self._writers) < WRITERS:
            writer = loop.create_task(self._write_waiting())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)  # one cancelled before it ran
        return [future for *_, future in submission]

    def _next_batch(self) -> list[_Pending]:
        """Whole submissions from the front of the queue, up to MAX_WRITE_BATCH ingests (one
        larger submission goes alone)."""
        batch = self._waiting.popleft()
        while self._waiting and len(batch) + len(self._waiting[0]) <= MAX_WRITE_BATCH:
            batch += self._waiting.popleft()
        return batch

    async def _write_waiting(self) -> None:
        """Send what is waiting as one pipeline, until nothing is; each caller gets its own
        answer or error. Never raises: a failed batch fails its callers, not the writer.

        The writer leaves `_writers` the moment it finds nothing waiting, with no await in
        between: left to the task's done-callback (run later), a submission arriving in that
        gap saw a full set of writers, started none, and waited forever."""
        try:
            await self._write_until_empty()
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._writers.discard(task)

    async def _write_until_empty(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            try:
                answers = await self._write([(record, at, rate) for record, at, rate, _ in batch])
            except BaseException as exc:  # handed to every caller of the batch
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (record, *_, future), answer in zip(batch, answers, strict=True):
                if future.done():  # its caller was cancelled; the event is stored all the same
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                    continue
                try:
                    future.set_result(self._ingested(record, answer))
                except (LinkConflict, RateLimited) as refused:
                    future.set_exception(refused)

    async def _write(
        self, items: Sequence[tuple[IngestRecord, str, SourceRateLimit | None]]
    ) -> list[Any]:
        """Run the ingest script for each item, all in one round trip (`run_together`); each
        item's reply or error."""
        now_ms = int(time.time() * 1000)
        pending = TargetStatus.pending().to_json().decode()  # one status for the whole batch
        calls = []
        for record, received_at, rate in items:
            key_list, args = self._ingest_call(record, received_at, now_ms, pending, rate)
            calls.append(ScriptCall(self._ingest, key_list, args))
        return await run_together(self.redis, calls, self.replica_ack)

    @staticmethod
    def _ingested(record: IngestRecord, reply: Any) -> Ingested:
        """The script's reply read: the original answer of a duplicate (bytes), nothing, or
        a list: `rate_limited` and the wait in ms (raised), `changed` or `link_conflict`
        (raised), each followed by vendor, id pairs."""
        if isinstance(reply, bytes):
            return Ingested(False, reply)
        if not reply:
            return Ingested(True, orjson.dumps(record.acceptance))
        kind, *flat = (item.decode() for item in reply)
        if kind == "rate_limited":
            raise RateLimited(record.source, int(flat[0]))
        pairs = dict(zip(flat[::2], flat[1::2], strict=True))
        if kind == "link_conflict":
            raise LinkConflict(
                record.source,
                record.event_id,
                record.user_id,
                {vendor: (current, record.links[vendor]) for vendor, current in pairs.items()},
            )
        changes = tuple(
            LinkChange(vendor, old_id, record.links[vendor]) for vendor, old_id in pairs.items()
        )
        return Ingested(True, orjson.dumps(record.acceptance), changes)

    def _ingest_call(
        self,
        record: IngestRecord,
        received_at: str,
        now_ms: int,
        pending: str,
        rate: SourceRateLimit | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the ingest script for one event; with `rate`, the script
        first takes one post from the source's allowance (`core.source_rate`)."""
        key_list = [
            keys.event(record.source, record.event_id),
            keys.links(record.user_id),
            keys.profile(record.user_id),
            self.queue_name,
            keys.JOB_SEQUENCE,
            keys.link_setters(record.user_id),
            keys.source_rate(record.source),
        ]
        for target in record.targets:
            key_list += [
                keys.pair(target, record.user_id),
                keys.pending(target, record.user_id),
                keys.waiting(target),
            ]
        rest = [
            received_at,
            self.retention_ms,
            now_ms,
            keys.event_ref(record.source, record.event_id),
            str(record.order_key),  # a string: Lua reads it as the script always did
            job_key_prefix,
            [
                [
                    target,
                    keys.pair_job_prefix(target, record.user_id),
                    job_payload(target, record.user_id, now_ms).decode(),
                ]
                for target in record.targets
            ],
            [[vendor, vendor_id] for vendor, vendor_id in record.links.items()],
            [[part, value or "", value is None] for part, value in record.name_parts.items()],
            record.source,
            record.link_mode,
            pending,
            record.is_urgent(),
            *rate_arguments(rate),
        ]
        args = [orjson.dumps(record.acceptance), record.event_json, orjson.dumps(rest)]
        return key_list, args

    def ingest_in_transaction(self, pipe: Any, record: IngestRecord, received_at: str) -> None:
        """Queue the ingest of `record` on `pipe`, a MULTI/EXEC pipeline of the caller's that
        writes state of its own in the same transaction (the SCIM resource store: a resource
        and the event it becomes land together or not at all). Sent as EVAL, not EVALSHA, so
        a Redis that lost its script cache cannot run the caller's writes without it; read
        the reply with `ingest_reply`."""
        key_list, args = self._ingest_call(
            record, received_at, int(time.time() * 1000), TargetStatus.pending().to_json().decode()
        )
        pipe.eval(self._ingest.script, len(key_list), *key_list, *args)

    @staticmethod
    def ingest_reply(record: IngestRecord, reply: Any) -> Ingested:
        """The answer of an ingest run by `ingest_in_transaction`, as `ingest` gives it
        (LinkConflict raised)."""
        return Store._ingested(record, reply)

    async def event_status(self, source: str, event_id: str) -> dict[str, Any] | None:
        """The status answer of docs/contract.md §2, or None if no such event is stored."""
        raw = await self._commands.hgetall(keys.event(source, event_id))
        if not raw or _BODY not in raw:
            return None
        targets = {
            name.removeprefix(_STATUS).decode(): TargetStatus.from_json(value).model_dump()
            for name, value in raw.items()
            if name.startswith(_STATUS)
        }
        return {
            "event_id": event_id,
            "source": source,
            "user_id": _user_id(raw[_BODY]),
            "received_at": raw[_RECEIVED_AT].decode(),
            "targets": dict(sorted(targets.items())),
        }

    async def get_link(self, user_id: str, vendor: str) -> str | None:
        value = await self._commands.hget(keys.links(user_id), vendor)
        return value.decode() if value is not None else None

    async def get_links(self, user_id: str) -> dict[str, LinkDetail]:
        """Every link of the user with who set it and when, read in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.links(user_id))
            pipe.hgetall(keys.link_setters(user_id))
            raw, setters = await pipe.execute()
        return {
            vendor.decode(): LinkDetail(
                vendor_id.decode(),
                _text(setters.get(keys.link_set_by_field(vendor.decode()).encode())),
                _text(setters.get(keys.link_set_at_field(vendor.decode()).encode())),
            )
            for vendor, vendor_id in sorted(raw.items())
        }

    async def set_link(
        self, user_id: str, vendor: str, vendor_id: str, set_by: str, set_at: str
    ) -> str | None:
        """Set a link and record who set it when, in one transaction; the id it held before.
        MULTI and EXEC are sent by hand in a plain pipeline so that, with
        `redis.min_replicas_ack`, the WAIT after EXEC runs on the connection that wrote."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("MULTI")
            pipe.hget(keys.links(user_id), vendor)
            pipe.hset(keys.links(user_id), vendor, vendor_id)
            pipe.hset(
                keys.link_setters(user_id),
                mapping={
                    keys.link_set_by_field(vendor): set_by,
                    keys.link_set_at_field(vendor): set_at,
                },
            )
            pipe.execute_command("EXEC")
            if self.replica_ack is not None:
                pipe.execute_command(*self.replica_ack.command())
            replies = await pipe.execute()
        if self.replica_ack is not None:
            self.replica_ack.check(replies[5])
        old = replies[4][0]  # EXEC's replies: HGET's first
        return _text(old)

    async def get_profile(self, user_id: str) -> dict[str, str]:
        """The newest known name parts of a user (for vendors with a single `name`)."""
        values = await self._commands.hmget(keys.profile(user_id), list(keys.PROFILE_PARTS))
        return {
            part: v.decode()
            for part, v in zip(keys.PROFILE_PARTS, values, strict=True)
            if v is not None
        }


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _user_id(event_json: bytes) -> str | None:
    """The user of a stored event; None if it no longer parses (its targets still show)."""
    try:
        user_id = orjson.loads(event_json)["user"]["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return user_id if isinstance(user_id, str) else None
