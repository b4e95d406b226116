"""The Redis client of usersync's own code: redis-py's asyncio client, packing with hiredis.

redis-py's asyncio connections pack every command in Python, one bytes join per argument:
about 2 us an argument, 35 us for an ingest or commit script call, more than Redis takes to
run it. Its synchronous connections can hand that to hiredis (already installed for reading
replies); these connections do the same for asyncio, producing the same bytes
(tests/test_redis_client.py). arq's pool gets them too (`pack_with_hiredis`), for the
connections it opens once the worker has started.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError


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


_OURS: dict[type, type] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def connect(url: str, **options: Any) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://) whose connections pack with hiredis;
    `options` as for `Redis.from_url`. The URL chooses the transport, as in redis-py."""
    client: Redis = Redis.from_pool(ConnectionPool.from_url(url, **options))  # owns the pool
    pack_with_hiredis(client)  # before any connection is opened: every one packs with hiredis
    return client


def pack_with_hiredis(client: Redis) -> None:
    """Make the connections `client`'s pool opens from now on pack with hiredis (for a client
    built elsewhere: arq's pool, whose claim script carries a poll's job ids). Connections
    already open keep redis-py's packing, which sends the same bytes."""
    pool = client.connection_pool
    pool.connection_class = _OURS.get(pool.connection_class, pool.connection_class)
