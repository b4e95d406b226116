"""The Redis client of usersync's own code: redis-py's asyncio client, packing with hiredis.

redis-py's asyncio connections pack every command in Python, one bytes join per argument:
about 2 us an argument, 35 us for an ingest or commit script call, more than Redis takes to
run it. Its synchronous connections can hand that to hiredis (already installed for reading
replies); these connections do the same for asyncio, producing the same bytes
(tests/test_redis_client.py). arq's pool gets them too (`pack_with_hiredis`), for the
connections it opens once the worker has started.

Every Redis client of the product is built here from `redis` settings (`RedisTarget`): one
URL, or a Sentinel-managed primary (`redis.sentinel`), whose connections ask the Sentinels
where the primary is each time they connect, so a client follows a failover without a
restart (docs/high-availability.md). `ReplicaAck` is `redis.min_replicas_ack`: the WAIT
that a write a 202 promises ends with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeVar

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.exceptions import DataError, RedisError

from config.storage import RedisSentinelSettings, RedisSettings

R = TypeVar("R", bound=Redis)


class _HiredisPacking:
    """`pack_command` of redis-py's synchronous HiredisRespSerializer, for asyncio."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


class HiredisConnection(_HiredisPacking, Connection):
    """A TCP connection (redis://)."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection (rediss://)."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix socket connection (unix://)."""


class HiredisSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    """A TCP connection to the primary the Sentinels name."""


class HiredisSentinelSSLConnection(_HiredisPacking, SentinelManagedSSLConnection):
    """A TLS connection to the primary the Sentinels name."""


_OURS: dict[type, type] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
    SentinelManagedConnection: HiredisSentinelConnection,
    SentinelManagedSSLConnection: HiredisSentinelSSLConnection,
}


@dataclass(frozen=True)
class RedisTarget:
    """Where usersync's Redis is: a URL, or a primary the Sentinels of `sentinel` name."""

    url: str | None = None
    sentinel: RedisSentinelSettings | None = None

    @classmethod
    def of(cls, settings: RedisSettings, url: str | None = None) -> RedisTarget:
        """The configured Redis (`url`: the embedded Redis's, when none is configured)."""
        return cls(url=settings.url or url, sentinel=settings.sentinel)

    def __str__(self) -> str:
        """For logs: never a password."""
        if self.sentinel is not None:
            return f"sentinel:{self.sentinel.master}@{','.join(self.sentinel.addresses)}"
        return (self.url or "").rsplit("@", 1)[-1]

    def sentinels(self, **options: Any) -> Sentinel:
        """A redis-py Sentinel manager for `sentinel`; `options` for the data connections
        (timeouts), the Sentinels getting the same socket timeouts and their own password."""
        conf = self.sentinel
        assert conf is not None, "a Sentinel target"
        sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
        if conf.sentinel_password is not None:
            sentinel_options["password"] = conf.sentinel_password.get_secret_value()
        if conf.ssl:
            sentinel_options["ssl"] = True
        return Sentinel(  # type: ignore[no-untyped-call]
            conf.sentinel_hosts(),
            sentinel_kwargs=sentinel_options,
            db=conf.db,
            username=conf.username,
            password=conf.password.get_secret_value() if conf.password else None,
            **options,
        )

    def connection_class(self) -> type:
        """The hiredis-packing connection class of a Sentinel-managed pool."""
        ssl = self.sentinel is not None and self.sentinel.ssl
        return HiredisSentinelSSLConnection if ssl else HiredisSentinelConnection


class ReplicationTimeout(RedisError):
    """Fewer replicas than `redis.min_replicas_ack` acknowledged a write in time: the write
    may be stored (on the primary alone), but it was not promised (503 replication_timeout)."""

    def __init__(self, acked: int, wanted: int) -> None:
        super().__init__(f"{acked} of {wanted} replicas acknowledged the write in time")
        self.acked = acked
        self.wanted = wanted


@dataclass(frozen=True)
class ReplicaAck:
    """`redis.min_replicas_ack` and its timeout: a pipeline's writes are promised only once
    WAIT, sent last on the same connection, says enough replicas have them."""

    replicas: int
    timeout_ms: int

    @classmethod
    def of(cls, settings: RedisSettings) -> ReplicaAck | None:
        """None when no acknowledgement is asked (the default)."""
        if settings.min_replicas_ack == 0:
            return None
        return cls(settings.min_replicas_ack, settings.replica_ack_timeout_ms)

    def command(self) -> tuple[str, int, int]:
        """The WAIT to append to a pipeline."""
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, acked: Any) -> None:
        """Raise ReplicationTimeout unless WAIT's reply `acked` reaches `replicas`."""
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.replicas:
            raise ReplicationTimeout(int(acked), self.replicas)


def connect(target: str | RedisTarget, **options: Any) -> Redis:
    """A client for `target` whose connections pack with hiredis: a URL (redis://, rediss://
    or unix://, which chooses the transport, as in redis-py) or a Sentinel-managed primary;
    `options` as for `Redis.from_url`."""
    if isinstance(target, RedisTarget) and target.sentinel is not None:
        return master_client(target, Redis, **options)
    url = target if isinstance(target, str) else target.url
    if url is None:
        raise ValueError("no Redis configured: neither redis.url nor redis.sentinel")
    client: Redis = Redis.from_pool(ConnectionPool.from_url(url, **options))  # owns the pool
    pack_with_hiredis(client)  # before any connection is opened: every one packs with hiredis
    return client


def pack_with_hiredis(client: Redis) -> None:
    """Make the connections `client`'s pool opens from now on pack with hiredis (for a client
    built elsewhere: arq's pool, whose claim script carries a poll's job ids). Connections
    already open keep redis-py's packing, which sends the same bytes."""
    pool = client.connection_pool
    pool.connection_class = _OURS.get(pool.connection_class, pool.connection_class)


def master_client(target: RedisTarget, redis_class: type[R], **options: Any) -> R:
    """A `redis_class` client of the primary the Sentinels of `target` name (arq passes its
    ArqRedis), packing with hiredis: each connection asks the Sentinels when it connects, and
    one answered READONLY (a demoted primary) is dropped, so the client follows a failover.
    While no primary is known, commands raise a ConnectionError (the gateway answers 503)."""
    manager = target.sentinels(**options)
    client: R = manager.master_for(
        target.sentinel.master if target.sentinel else "",
        redis_class=redis_class,
        connection_class=target.connection_class(),
        connection_pool_class=_SentinelOwningPool,
    )
    return client


class _SentinelOwningPool(SentinelConnectionPool):
    """The primary's pool, owning the Sentinel clients it asks: closing the client built on it
    closes their connections too (redis-py leaves them open, one per Sentinel)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


def reraise_if_cancelling(exc: BaseException) -> None:
    """For a loop that catches Redis errors and carries on: redis-py may turn a cancellation
    that lands mid-command into an error of its own (a timeout, a lost connection). Caught
    and logged, the task would then sleep on with its cancellation spent, and whoever
    awaits it (an app's cleanup, a worker's shutdown) would wait forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
