"""Per-(vendor instance, user) delivery state in Redis: pending changes, the lease, the job.

The design (docs/delivery.md): every accepted event adds its ref to the pair's *pending* set,
scored by its order key, and makes sure the pair has exactly one scheduled arq job. A job run
takes the pair's *lease* (a token with expiry; every write it makes is fenced by that token),
reads what is pending, makes at most one vendor call carrying all of it, and commits the
outcome, which also schedules the pair's next job (a fresh id, now or after a backoff) or
clears it when nothing is left. So at most one call per pair is in flight however many
workers run, changes that arrive meanwhile are coalesced into the next call, and a wait (retry
backoff, open circuit, rate-limit slot) is a scheduled job in Redis, never a sleeping task.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
from arq.constants import default_queue_name, job_key_prefix
from redis.asyncio import Redis

from core import keys
from core.scripts import ScriptCall, ScriptSender, load_lua, reply_or_raise, run_together

DELIVER_FUNCTION = "deliver"


def job_payload(target: str, user_id: str, enqueue_ms: int) -> bytes:
    """A pair job in arq's format, serialised as `workers.worker` reads it (JSON, not pickle)."""
    return orjson.dumps(
        {"t": 1, "f": DELIVER_FUNCTION, "a": [target, user_id], "k": {}, "et": enqueue_ms}
    )


@dataclass(frozen=True)
class PendingRef:
    """One event waiting for a pair, as the begin script read it."""

    ref: str
    order: int
    event_json: bytes | None
    received_at: str | None
    status_json: bytes | None
    history_json: bytes | None


@dataclass(frozen=True)
class PairBatch:
    """What a job run holds after `begin`: the pending refs (oldest first) and the pair's
    context (acknowledged field orders, stored link, name profile, reserved slot)."""

    pending: list[PendingRef]
    applied: dict[str, int]
    link: str | None
    profile: dict[str, str]
    reserved_slot_ms: int | None
    """A rate-limit slot the pair reserved at the vendor guard (Redis's clock), if any."""
    isolate_left: int
    """Refs still to send one call each, after the vendor refused a coalesced call."""
    urgent: bool = False
    """The pair holds an urgent change: its calls take the vendor's urgent rate lane."""


BeginVerdict = Literal["ok", "idle", "stale", "busy"]
"""`ok`: the run holds the lease and a batch; `idle`: nothing pending; `stale`: the job is not
the pair's job any more; `busy`: another run holds the lease."""

CommitMode = Literal["next", "at", "release"]
"""How a run's commit schedules the pair: see `Commit`."""


@dataclass(frozen=True)
class Begun:
    """The begin script's verdict (`BeginVerdict`), with the batch when it is `ok`."""

    verdict: BeginVerdict
    batch: PairBatch | None = None
    busy_ms: int = 0
    replaced: str | None = None
    """The lease token this run took over from a worker whose heartbeat was gone."""


@dataclass
class EventUpdate:
    """A new status (and attempt history) for one pending event, written by `commit`."""

    ref: str
    status_json: bytes
    history_json: bytes
    remove: bool
    dead: bool = False


@dataclass
class Commit:
    """Everything one job run writes when it ends, fenced by its lease token.

    `mode`: "next" (schedule the pair again now if anything is pending, else clear it), "at"
    (schedule at `at_ms`: a backoff, an open circuit, a rate slot), "release" (only drop the
    lease: the current job runs again, as after a cancellation)."""

    mode: CommitMode
    at_ms: int = 0
    updates: list[EventUpdate] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    reserved_slot_ms: int | None = None
    """The pair's reserved rate-limit slot: None keeps it, `CLEAR_SLOT` clears it, else the
    slot time (ms) the vendor guard reserved."""
    isolate_left: int | None = None
    """Refs still to send one call each: None keeps the count, else the new count."""
    held: bool = False
    """The wait is for the vendor's circuit: list the job in `keys.held`, so the vendor guard
    can run it at once when the circuit closes instead of at `at_ms`."""
    urgent: bool = False
    """The run read the pair as urgent; if not and the pair is urgent now (an urgent change
    came in meanwhile), its next job runs now, ahead of normal ones, not at `at_ms`."""


@dataclass(frozen=True)
class Reconciled:
    """What one reconciler pass did: pairs with work it checked, and those it gave a job."""

    checked: int
    rescheduled: int


RECONCILE_BATCH = 500
"""Owed pairs a reconciler pass reads and checks per round trip."""

CLEAR_SLOT = 0
"""`Commit.reserved_slot_ms` that clears the pair's reserved slot."""


def _slot_arg(slot_ms: int | None) -> str | int:
    """The commit script's slot argument: '' keeps, '-' clears, else the slot time."""
    if slot_ms is None:
        return ""
    return "-" if slot_ms == CLEAR_SLOT else slot_ms


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


class PairQueue:
    """The pair scripts, bound to one Redis client; holds no other state."""

    def __init__(
        self,
        redis: Redis,
        retention_s: int,
        queue_name: str = default_queue_name,
        send: ScriptSender | None = None,
    ) -> None:
        self.redis = redis
        self.send = send or functools.partial(run_together, redis)
        """How begin and commit reach Redis: a worker's batcher shares its jobs' round trips."""
        self.retention_ms = retention_s * 1000
        self.queue_name = queue_name
        self._begin = redis.register_script(load_lua(keys.Script.PAIR_BEGIN))
        self._commit = redis.register_script(load_lua(keys.Script.PAIR_COMMIT))
        self._replay = redis.register_script(load_lua(keys.Script.PAIR_REPLAY))
        self._reconcile = redis.register_script(load_lua(keys.Script.PAIR_RECONCILE))

    async def begin(
        self, target: str, user_id: str, job_id: str, token: str, lease_ms: int, max_batch: int
    ) -> Begun:
        """Take the pair's lease and read what is pending, if `job_id` is the pair's job."""
        call = ScriptCall(
            self._begin,
            [
                keys.pair(target, user_id),
                keys.lease(target, user_id),
                keys.pending(target, user_id),
                keys.applied(target, user_id),
                keys.links(user_id),
                keys.profile(user_id),
            ],
            [job_id, token, lease_ms, max_batch, target, keys.EVENT_PREFIX],
        )
        reply = reply_or_raise((await self.send([call]))[0])
        verdict = cast(BeginVerdict, reply[0].decode())
        if verdict == "busy":
            return Begun("busy", busy_ms=int(reply[1]))
        if verdict != "ok":
            return Begun(verdict)
        refs, events, applied_raw, link, profile_raw, pair_raw = reply[1:7]
        replaced = _text(reply[7]) if len(reply) > 7 else None
        pending = [
            PendingRef(
                ref=refs[2 * n].decode(),
                order=int(float(refs[2 * n + 1])),
                event_json=event[0],
                received_at=_text(event[1]),
                status_json=event[2],
                history_json=event[3],
            )
            for n, event in enumerate(events)
        ]
        applied = {
            applied_raw[n].decode(): int(applied_raw[n + 1]) for n in range(0, len(applied_raw), 2)
        }
        profile = {
            part: value.decode()
            for part, value in zip(keys.PROFILE_PARTS, profile_raw, strict=True)
            if value is not None
        }
        slot, isolate, urgent = pair_raw
        return Begun(
            "ok",
            PairBatch(
                pending=pending,
                applied=applied,
                link=_text(link),
                profile=profile,
                reserved_slot_ms=int(float(slot)) if slot is not None else None,
                isolate_left=int(isolate) if isolate is not None else 0,
                urgent=urgent is not None,
            ),
            replaced=replaced,
        )

    async def commit(
        self,
        target: str,
        user_id: str,
        token: str,
        now_ms: int,
        commit: Commit,
        before: ScriptCall | None = None,
        after: ScriptCall | None = None,
    ) -> bool:
        """Write a job run's outcome and the pair's next job; False if the lease was lost.
        `before` (the vendor guard's record of the run's call) is sent first and `after` (the
        end of the run's arq job) last, in the same round trip; an error of any raises."""
        call = self._commit_call(target, user_id, token, now_ms, commit)
        calls = [c for c in (before, call, after) if c is not None]
        replies = await self.send(calls)
        for reply in replies:
            reply_or_raise(reply)
        return bytes(replies[calls.index(call)]) == b"ok"

    def _commit_call(
        self, target: str, user_id: str, token: str, now_ms: int, commit: Commit
    ) -> ScriptCall:
        args: list[Any] = [
            token,
            now_ms,
            self.retention_ms,
            keys.pair_job_prefix(target, user_id),
            job_payload(target, user_id, now_ms),
            job_key_prefix,
            keys.EVENT_PREFIX,
            target,
            commit.mode,
            commit.at_ms,
            _slot_arg(commit.reserved_slot_ms),
            "" if commit.isolate_left is None else commit.isolate_left,
            "1" if commit.held else "0",
            len(commit.updates),
        ]
        for update in commit.updates:
            args += [
                update.ref,
                update.status_json,
                update.history_json,
                "1" if update.remove else "0",
                "1" if update.dead else "0",
            ]
        args.append(len(commit.applied))
        for key, order in commit.applied.items():
            args += [key, order]
        args.append("1" if commit.urgent else "0")
        return ScriptCall(
            self._commit,
            [
                keys.pair(target, user_id),
                keys.pending(target, user_id),
                keys.applied(target, user_id),
                keys.lease(target, user_id),
                self.queue_name,
                keys.JOB_SEQUENCE,
                keys.DEAD_LETTERS,
                keys.dead_letters_of(target),
                keys.held(target),
                keys.waiting(target),
            ],
            args,
        )

    async def replay(
        self,
        source: str,
        event_id: str,
        target: str,
        user_id: str,
        order: int,
        status_json: bytes,
        now_ms: int,
    ) -> int:
        """Put a dead delivery back in its pair's pending set: 1 done, 0 not dead, -1 expired."""
        ref = keys.event_ref(source, event_id)
        reply = await self._replay(
            keys=[
                keys.event(source, event_id),
                keys.pair(target, user_id),
                keys.pending(target, user_id),
                keys.DEAD_LETTERS,
                keys.dead_letters_of(target),
                self.queue_name,
                keys.JOB_SEQUENCE,
                keys.waiting(target),
            ],
            args=[
                keys.dead_letter_id(source, event_id, target),
                ref,
                target,
                order,
                status_json,
                keys.pair_job_prefix(target, user_id),
                job_payload(target, user_id, now_ms),
                now_ms,
                self.retention_ms,
                job_key_prefix,
            ],
        )
        return int(reply)

    async def reconcile(self, now_ms: int, batch: int = RECONCILE_BATCH) -> Reconciled:
        """One pass over every pair with work waiting (`keys.OWED_PAIRS`, SSCAN in batches,
        one script per batch): a pair whose job is gone from arq's queue gets a fresh one."""
        checked = rescheduled = 0
        cursor = 0
        while True:
            cursor, members = await self.redis.sscan(keys.OWED_PAIRS, cursor, count=batch)
            args: list[Any] = [now_ms, job_key_prefix]
            for member in members:
                key = member.decode()
                pair = keys.pending_pair(key)
                if pair is None:  # not written by us: nothing to reconcile
                    continue
                target, user_id = pair
                args += [
                    key,
                    keys.pair(target, user_id),
                    keys.pair_job_prefix(target, user_id),
                    job_payload(target, user_id, now_ms),
                ]
            if len(args) > 2:
                rescheduled += int(
                    await self._reconcile(keys=[self.queue_name, keys.JOB_SEQUENCE], args=args)
                )
            checked += len(members)
            if cursor == 0:
                return Reconciled(checked, rescheduled)
