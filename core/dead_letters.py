"""The dead-letter queue: dead deliveries listed, shown, replayed and purged.

A delivery that became `dead` is indexed by the worker in two sorted sets, `keys.DEAD_LETTERS`
and `keys.dead_letters_of(vendor)` (member: the dead letter's id, `keys.dead_letter_id`,
score: time of death in ms); the event hash keeps the event, the target's status and its
attempt history. The index is the authority on what is a dead letter:

- *replay* (`PairQueue.replay`, one Lua script) takes the letter out of both indexes, sets the
  target back to `pending` with 0 attempts and puts the event in its (vendor, user) pair's
  pending set, so it goes through ordering like any change: a replayed old change never
  overwrites a field the vendor already has newer (the worker skips it as `stale`);
- *purge* takes the letter out of both indexes only; the event's status stays `dead`.

An index entry can outlive its event (the event hash expires `retention.events_s` after its
last target became final, the entry that long after the death; a worker that finds a pending
event's hash gone, evicted or removed by hand, indexes it dead): such a letter is shown as
`expired`, cannot be
replayed (410), and replaying or purging it drops it. Entries older than the retention are
trimmed when the index is read, as the worker trims them when it adds one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from core import keys
from core.event import Event
from core.masking import mask_secrets
from core.pairs import PairQueue
from core.scripts import load_lua
from core.status import TargetStatus, utc_now_iso

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CHUNK = 500
"""Index members read per round trip while paging or filtering."""
_REPLAY_CONCURRENCY = 50
"""Replays of a bulk replay in flight at once."""
_SUMMARY = (keys.EVENT_BODY, keys.EVENT_RECEIVED_AT)
"""The event hash fields a letter's summary shows (with the target's status)."""


class DeadLetterNotFound(LookupError):
    """No dead letter has this id (never dead, replayed, purged, or not an id at all)."""


class DeadLetterExpired(LookupError):
    """The letter was indexed but its event is no longer stored (past the retention)."""


class DeadLetterUnreadable(ValueError):
    """The stored event no longer validates as a v1 event, so it cannot be replayed."""


@dataclass(frozen=True)
class Cursor:
    """Where a page of the index (newest first) ended: the last member shown and its score.

    The next page starts strictly after it, so letters dying or being replayed meanwhile
    neither repeat nor hide the ones still to come."""

    score: int
    member: str

    def encode(self) -> str:
        raw = f"{self.score}:{self.member}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor of a `next_cursor` string; ValueError if it is not one."""
        if not text or len(text) > 1000:
            raise ValueError("not a cursor")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("not a cursor") from exc
        score, _, member = raw.partition(":")
        if not score.isdigit() or keys.parse_dead_letter_id(member) is None:
            raise ValueError("not a cursor")
        return cls(int(score), member)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    """How many letters match the filters, whatever the cursor and limit."""
    next_cursor: str | None


@dataclass
class ReplayReport:
    """What a bulk replay did: replayed, found expired (and dropped), or left dead because the
    stored event no longer validates."""

    replayed: int = 0
    expired: int = 0
    invalid: int = 0
    ids: list[str] = field(default_factory=list)
    """The ids replayed."""


def _iso_ms(ms: float) -> str:
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status(raw: bytes | None) -> TargetStatus | None:
    if raw is None:
        return None
    try:
        return TargetStatus.from_json(raw)
    except ValidationError:
        return None


def _user_id(event_json: bytes | None) -> str | None:
    if event_json is None:
        return None
    try:
        user = orjson.loads(event_json).get("user")
        return str(user["id"]) if isinstance(user, dict) and "id" in user else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _matches(member: bytes, prefix: bytes) -> bool:
    """A member that is a dead-letter id and starts with the source filter's prefix."""
    if not member.startswith(prefix):
        return False
    try:
        return keys.parse_dead_letter_id(member.decode()) is not None
    except UnicodeDecodeError:
        return False


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DeadLetters:
    """The dead-letter queue over usersync's Redis; holds no state of its own."""

    def __init__(self, redis: Redis, pairs: PairQueue) -> None:
        self.redis = redis
        self._commands: Any = redis  # see Store: redis-py's asyncio types need this
        self.pairs = pairs
        self.retention_ms = pairs.retention_ms
        self._count_prefix = redis.register_script(load_lua(keys.Script.DEAD_LETTERS_COUNT_PREFIX))

    # -- reading ---------------------------------------------------------------------------

    async def page(
        self,
        *,
        vendor: str | None = None,
        source: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: Cursor | None = None,
        now_ms: int,
    ) -> Page:
        """Dead letters newest first, optionally of one vendor and/or one source."""
        key = keys.dead_letters_of(vendor) if vendor else keys.DEAD_LETTERS
        await self._trim([key], now_ms)
        prefix = keys.dead_letter_source_prefix(source).encode() if source else b""
        found: list[tuple[bytes, float]] = []
        if cursor is not None:
            # Letters with the cursor's own score come in reverse byte order, like Redis's.
            same = await self._commands.zrevrangebyscore(
                key, cursor.score, cursor.score, withscores=True
            )
            after = cursor.member.encode()
            found += [(m, s) for m, s in same if m < after and _matches(m, prefix)]
            top: int | str = f"({cursor.score}"
        else:
            top = "+inf"
        offset = 0
        while len(found) <= limit:
            chunk = await self._commands.zrevrangebyscore(
                key, top, "-inf", start=offset, num=_CHUNK, withscores=True
            )
            found += [(m, s) for m, s in chunk if _matches(m, prefix)]
            if len(chunk) < _CHUNK:
                break
            offset += len(chunk)
        shown = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last, score = shown[-1]
            next_cursor = Cursor(int(score), last.decode()).encode()
        if source:
            total = int(await self._count_prefix(keys=[key], args=[prefix]))
        else:
            total = int(await self._commands.zcard(key))
        items = await self._summaries([(m.decode(), s) for m, s in shown])
        return Page(items, total, next_cursor)

    async def _summaries(self, members: list[tuple[str, float]]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, _ in members:
                source, event_id, target = self._parts(member)
                pipe.hmget(keys.event(source, event_id), [*_SUMMARY, keys.status_field(target)])
            rows = await pipe.execute()
        items = []
        for (member, score), (event_json, received_at, status_json) in zip(
            members, rows, strict=True
        ):
            items.append(self._summary(member, score, event_json, received_at, status_json))
        return items

    def _summary(
        self,
        letter_id: str,
        score: float,
        event_json: bytes | None,
        received_at: bytes | None,
        status_json: bytes | None,
    ) -> dict[str, Any]:
        source, event_id, target = self._parts(letter_id)
        status = _status(status_json)
        return {
            "id": letter_id,
            "source": source,
            "event_id": event_id,
            "vendor": target,
            "user_id": _user_id(event_json),
            "dead_at": _iso_ms(score),
            "received_at": received_at.decode() if received_at is not None else None,
            "status": status.model_dump() if status is not None else None,
            "expired": event_json is None,
        }

    async def show(self, letter_id: str) -> dict[str, Any]:
        """One dead letter: its summary, the attempt history and the event, secrets masked."""
        source, event_id, target = self._parts(letter_id)
        score = await self._commands.zscore(keys.DEAD_LETTERS, letter_id)
        if score is None:
            raise DeadLetterNotFound(letter_id)
        event_json, received_at, status_json, history_json = await self._commands.hmget(
            keys.event(source, event_id),
            [*_SUMMARY, keys.status_field(target), keys.history_field(target)],
        )
        if event_json is None:
            raise DeadLetterExpired(letter_id)
        letter = self._summary(letter_id, score, event_json, received_at, status_json)
        try:
            history = orjson.loads(history_json) if history_json is not None else []
            event = orjson.loads(event_json)
        except orjson.JSONDecodeError:
            history, event = [], None
        letter["history"] = history
        letter["event"] = mask_secrets(event)
        return letter

    async def counts(self, vendors: Iterable[str], now_ms: int) -> tuple[int, dict[str, int]]:
        """(all dead letters, dead letters of each named vendor), after trimming."""
        names = list(vendors)
        await self._trim([keys.DEAD_LETTERS, *map(keys.dead_letters_of, names)], now_ms)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.DEAD_LETTERS)
            for name in names:
                pipe.zcard(keys.dead_letters_of(name))
            total, *each = await pipe.execute()
        return int(total), {name: int(n) for name, n in zip(names, each, strict=True)}

    # -- replay ----------------------------------------------------------------------------

    async def replay(self, letter_id: str, now_ms: int) -> None:
        """Send a dead letter again: DeadLetterNotFound, DeadLetterExpired (the letter is then
        dropped) or DeadLetterUnreadable (it stays) if it cannot be."""
        source, event_id, target = self._parts(letter_id)
        event_json, status_json = await self._commands.hmget(
            keys.event(source, event_id), [keys.EVENT_BODY, keys.status_field(target)]
        )
        if event_json is None:
            if await self._remove([letter_id]):
                raise DeadLetterExpired(letter_id)
            raise DeadLetterNotFound(letter_id)
        try:
            # Only its user and order are needed: validated with its secrets masked, since an
            # encrypted one need not fit the schema (the worker decrypts it to deliver).
            event = Event.model_validate(mask_secrets(orjson.loads(event_json)))
        except (ValidationError, orjson.JSONDecodeError) as exc:
            if await self._commands.zscore(keys.DEAD_LETTERS, letter_id) is None:
                raise DeadLetterNotFound(letter_id) from exc
            raise DeadLetterUnreadable(letter_id) from exc
        previous = _status(status_json)
        status = TargetStatus(
            status="pending",
            attempts=0,
            last_http_status=previous.last_http_status if previous else None,
            last_error=None,
            updated_at=utc_now_iso(),
            replayed_at=utc_now_iso(),
        )
        done = await self.pairs.replay(
            source, event_id, target, event.user.id, event.order_key, status.to_json(), now_ms
        )
        if done == 0:
            raise DeadLetterNotFound(letter_id)
        if done < 0:
            raise DeadLetterExpired(letter_id)

    async def replay_many(self, vendor: str | None, now_ms: int) -> ReplayReport:
        """Replay every letter dead now (of one vendor, or all), oldest first."""
        report = ReplayReport()
        members = await self._members(vendor)

        async def one(letter_id: str) -> None:
            try:
                await self.replay(letter_id, now_ms)
            except DeadLetterNotFound:
                return  # replayed or purged meanwhile
            except DeadLetterExpired:
                report.expired += 1
            except DeadLetterUnreadable:
                report.invalid += 1
            else:
                report.replayed += 1
                report.ids.append(letter_id)

        for chunk in _chunks(members, _REPLAY_CONCURRENCY):
            await asyncio.gather(*(one(letter_id) for letter_id in chunk))
        return report

    # -- purge -----------------------------------------------------------------------------

    async def purge(self, letter_id: str) -> bool:
        """Drop a letter from the indexes (its status stays `dead`); False if it was not one."""
        self._parts(letter_id)
        return await self._remove([letter_id]) > 0

    async def purge_many(self, vendor: str | None) -> int:
        """Drop every letter dead now (of one vendor, or all); how many were dropped."""
        members = await self._members(vendor)
        purged = 0
        for chunk in _chunks(members, 1000):
            purged += await self._remove(chunk)
        return purged

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _parts(letter_id: str) -> tuple[str, str, str]:
        parts = keys.parse_dead_letter_id(letter_id)
        if parts is None:
            raise DeadLetterNotFound(letter_id)
        return parts

    async def _members(self, vendor: str | None) -> list[str]:
        """The ids in the index now, oldest first: what a bulk operation works on."""
        key = keys.dead_letters_of(vendor) if vendor else keys.DEAD_LETTERS
        members = await self._commands.zrange(key, 0, -1)
        return [
            member.decode()
            for member in members
            if keys.parse_dead_letter_id(member.decode()) is not None
        ]

    async def _remove(self, letter_ids: Sequence[str]) -> int:
        """Take letters out of both indexes at once; how many the global index held."""
        by_vendor: dict[str, list[str]] = {}
        for letter_id in letter_ids:
            by_vendor.setdefault(self._parts(letter_id)[2], []).append(letter_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.DEAD_LETTERS, *letter_ids)
            for vendor, ids in by_vendor.items():
                pipe.zrem(keys.dead_letters_of(vendor), *ids)
            removed, *_ = await pipe.execute()
        return int(removed)

    async def _trim(self, index_keys: Sequence[str], now_ms: int) -> None:
        """Drop entries past the retention, as the worker does when it adds one."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in index_keys:
                pipe.zremrangebyscore(key, "-inf", now_ms - self.retention_ms)
            await pipe.execute()
