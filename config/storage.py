"""`redis:` where usersync's state lives: one Redis by URL, or a Sentinel-managed primary."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.common import (
    Strict,
)


class RedisSentinelSettings(Strict):
    """A primary managed by Redis Sentinel: every Redis client of usersync asks the Sentinels
    for the primary and follows it through a failover (docs/high-availability.md)."""

    addresses: list[Annotated[str, Field(pattern=r"^[^\s:]+:[0-9]{1,5}$")]] = Field(
        min_length=1, description="the Sentinels, each `host:port`"
    )
    master: str = Field(min_length=1, description="the Sentinel master name of the primary")
    password: SecretStr | None = Field(
        default=None, description="the data nodes' password (primary and replicas)"
    )
    username: str | None = Field(default=None, description="the data nodes' ACL user")
    sentinel_password: SecretStr | None = Field(
        default=None, description="the Sentinels' own password, if they require one"
    )
    db: int = Field(default=0, ge=0, le=15, description="the database number")
    ssl: bool = Field(default=False, description="TLS to the data nodes and the Sentinels")

    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """`addresses` as (host, port) pairs, as redis-py and arq take them."""
        return [(host, int(port)) for host, port in (a.rsplit(":", 1) for a in self.addresses)]


class RedisSettings(Strict):
    url: str | None = Field(
        default=None,
        description="redis:// or rediss:// URL; left out (and no `sentinel`), `usersync run` "
        "starts an embedded Redis",
    )
    sentinel: RedisSentinelSettings | None = Field(
        default=None,
        description="a Sentinel-managed primary instead of `url` (never both): the gateway, "
        "the workers and arq's pool follow it through a failover without a restart",
    )
    min_replicas_ack: int = Field(
        default=0,
        ge=0,
        le=16,
        description="a 202 only once the event's write reached this many replicas (Redis "
        "WAIT); fewer within `replica_ack_timeout_ms`: 503 `replication_timeout` (the event "
        "may be stored: a retry with the same event_id answers 200 duplicate)",
    )
    replica_ack_timeout_ms: int = Field(
        default=1000,
        ge=1,
        le=60_000,
        description="how long a write waits for `min_replicas_ack` replicas",
    )
    embedded_dir: str = Field(
        default=".usersync/redis", description="working directory of the embedded Redis"
    )
    embedded_port: int = Field(default=6399, ge=0, le=65535, description="0 picks a free port")
    max_memory_fraction: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="the gateway refuses new events (503 storage_full) once Redis's used memory "
        "reaches this fraction of its maxmemory, leaving the rest to the workers draining it; "
        "0, or a Redis without maxmemory: no check",
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _url_or_sentinel(self) -> RedisSettings:
        if self.url is not None and self.sentinel is not None:
            raise ValueError(
                "give url (one Redis) or sentinel (a Sentinel-managed primary), not both"
            )
        return self
