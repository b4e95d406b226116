"""The SCIM User resources in Redis, per source (`core.keys.scim_*`), and their writes.

A write is one optimistic transaction: WATCH the resource (and the `userName` keys it takes
or frees, and the user's identity links), read them, let the caller decide (`Plan`), then
MULTI: the ingest script of the event the write becomes (`Store.ingest_in_transaction`, the
same script `POST /v1/events` runs) and the resource's own keys, EXEC. So the resource's new
version is stored if and only if its event is: a lost answer retried by the identity provider
finds the resource already changed, and sends no second event; two writers of one resource
never both get a version. A transaction that lost a race is planned again from what won.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core import keys
from core.links import Ingested
from core.status import utc_now_iso
from core.store import IngestRecord, Store
from gateway.scim.errors import ScimError

MAX_ATTEMPTS = 8
"""Transactions a write tries before answering 409 (writers in other gateway processes won
every race: retry later). Writers of one resource in one process queue on a lock instead."""
REPLICATED_CHANNEL = "usersync:scim:written"
"""Pub/sub channel (no key, nobody listens) of the marker a write waits for replicas with."""
SCAN_CHUNK = 500
"""Resources read per round trip when a list must look at every resource of a source."""


@dataclass(frozen=True)
class StoredUser:
    """A resource as stored: its JSON (password sealed), version and `userName` key."""

    id: str
    version: int
    resource: dict[str, Any]
    name_key: str | None = None


@dataclass
class Plan:
    """What a write does, decided from what is stored: the new resource (None: delete it),
    the event it becomes (None: no mapped attribute changed), its `userName` key."""

    resource: dict[str, Any] | None
    version: int
    record: IngestRecord | None = None
    name_key: str | None = None


Planner = Callable[[StoredUser | None, Mapping[str, str]], Awaitable[Plan]]
"""Given the stored resource (None: none) and the user's stored links, what to write; raises
ScimError to refuse (412, 404, 409, 400)."""


_RESOURCE = keys.SCIM_RESOURCE.encode()
_VERSION = keys.SCIM_VERSION.encode()
_NAME_KEY = keys.SCIM_NAME_KEY.encode()


def _decode(raw: Mapping[bytes, bytes], resource_id: str) -> StoredUser | None:
    if _RESOURCE not in raw:
        return None
    name_key = raw.get(_NAME_KEY)
    return StoredUser(
        resource_id,
        int(raw[_VERSION]),
        orjson.loads(raw[_RESOURCE]),
        name_key.decode() if name_key else None,
    )


class ResourceStore:
    """Reads and writes of one gateway's SCIM resources (every source's, each apart)."""

    def __init__(self, redis: Redis, store: Store) -> None:
        self.redis = redis
        self._commands: Any = redis
        self.store = store
        self._writing: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        """One lock per resource being written through this store, the app's one (gone
        with its last waiter): writers of one resource in one process queue, not race."""

    async def get(self, source: str, resource_id: str) -> StoredUser | None:
        return _decode(
            await self._commands.hgetall(keys.scim_user(source, resource_id)), resource_id
        )

    async def id_of_name(self, source: str, name_key: str) -> str | None:
        value = await self._commands.get(keys.scim_user_name(source, name_key))
        return value.decode() if value is not None else None

    async def count(self, source: str) -> int:
        return int(await self._commands.zcard(keys.scim_users(source)))

    async def ids(self, source: str, start: int, stop: int) -> list[str]:
        """Resource ids in creation order, positions `start` to `stop` (inclusive, 0-based)."""
        raw = await self._commands.zrange(keys.scim_users(source), start, stop)
        return [item.decode() for item in raw]

    async def many(self, source: str, ids: Sequence[str]) -> list[StoredUser]:
        """The resources of `ids` still stored, in order, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for resource_id in ids:
                pipe.hgetall(keys.scim_user(source, resource_id))
            raws = await pipe.execute()
        found = (_decode(raw, resource_id) for raw, resource_id in zip(raws, ids, strict=True))
        return [user for user in found if user is not None]

    async def write(
        self,
        source: str,
        resource_id: str,
        canonical_user: str,
        name_keys: Sequence[str],
        plan: Planner,
    ) -> tuple[Plan, Ingested | None]:
        """Run `plan` in an optimistic transaction (see the module) and write what it says;
        the plan and its event's ingest answer. `name_keys`: the `userName` keys the write may
        take, watched with the resource (its current one is added)."""
        user_key = keys.scim_user(source, resource_id)
        lock = self._writing.setdefault(user_key, asyncio.Lock())
        async with lock:
            return await self._write(source, resource_id, canonical_user, name_keys, plan)

    async def _write(
        self,
        source: str,
        resource_id: str,
        canonical_user: str,
        name_keys: Sequence[str],
        plan: Planner,
    ) -> tuple[Plan, Ingested | None]:
        user_key = keys.scim_user(source, resource_id)
        links_key = keys.links(canonical_user)
        for attempt in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as transaction:
                pipe: Any = transaction  # redis-py types its async commands as `T | Awaitable[T]`
                try:
                    await pipe.watch(user_key, links_key)
                    current = _decode(await pipe.hgetall(user_key), resource_id)
                    old_key = current.name_key if current else None
                    watched = {k for k in (*name_keys, old_key) if k is not None}
                    if watched:
                        await pipe.watch(*(keys.scim_user_name(source, k) for k in watched))
                    taken = await self._taken(pipe, source, watched, resource_id)
                    stored_links = {
                        vendor.decode(): value.decode()
                        for vendor, value in (await pipe.hgetall(links_key)).items()
                    }
                    decided = await plan(current, stored_links)
                    if decided.name_key in taken:
                        raise ScimError(
                            409, "uniqueness", "another user of this source has this userName"
                        )
                    pipe.multi()
                    self._queue(pipe, source, resource_id, current, decided, old_key)
                    replies = await pipe.execute()
                except WatchError:
                    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                    continue
            ingested = None
            if decided.record is not None:
                ingested = Store.ingest_reply(decided.record, replies[0])
            await self._replicated(user_key)
            return decided, ingested
        raise ScimError(409, None, "the resource kept changing under this write; retry it")

    async def _replicated(self, user_key: str) -> None:
        """With `redis.min_replicas_ack`, the write is promised only once enough replicas have
        it (ReplicationTimeout, a 503, otherwise). WAIT counts from a connection's own last
        replicated command, and the transaction's connection went back to the pool: so a
        PUBLISH (replicated, on no key) is sent on this one after it, and waited for; replicas
        that have it have the transaction, which came before it in the replication stream."""
        ack = self.store.replica_ack
        if ack is None:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.publish(REPLICATED_CHANNEL, user_key)
            pipe.execute_command(*ack.command())
            _, acked = await pipe.execute()
        ack.check(acked)

    async def _taken(
        self, pipe: Any, source: str, name_keys: set[str], resource_id: str
    ) -> set[str]:
        """The `userName` keys held by another resource of the source."""
        taken = set()
        for name_key in name_keys:
            owner = await pipe.get(keys.scim_user_name(source, name_key))
            if owner is not None and owner.decode() != resource_id:
                taken.add(name_key)
        return taken

    def _queue(
        self,
        pipe: Any,
        source: str,
        resource_id: str,
        current: StoredUser | None,
        plan: Plan,
        old_key: str | None,
    ) -> None:
        """The plan's writes, the event's ingest first (its reply is `replies[0]`)."""
        if plan.record is not None:
            self.store.ingest_in_transaction(pipe, plan.record, utc_now_iso())
        user_key = keys.scim_user(source, resource_id)
        if old_key is not None and old_key != plan.name_key:
            pipe.delete(keys.scim_user_name(source, old_key))
        if plan.resource is None:
            pipe.delete(user_key)
            pipe.zrem(keys.scim_users(source), resource_id)
            return
        pipe.hset(
            user_key,
            mapping={
                keys.SCIM_RESOURCE: orjson.dumps(plan.resource),
                keys.SCIM_VERSION: plan.version,
                keys.SCIM_NAME_KEY: plan.name_key or "",
            },
        )
        if plan.name_key is not None:
            pipe.set(keys.scim_user_name(source, plan.name_key), resource_id)
        if current is None:
            created_ms = int(time.time() * 1000)
            pipe.zadd(keys.scim_users(source), {resource_id: created_ms}, nx=True)


RESOURCES = web.AppKey("scim_resources", ResourceStore)
"""The gateway's one store of SCIM resources (its write locks are per store)."""
