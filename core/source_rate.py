"""Per-source rate limit of event posts, shared by every gateway process through Redis.

GCRA, check-and-take without reservation: a post either fits now and takes its share of the
bucket, or is refused with the time until it would fit (the gateway answers 429 with
`Retry-After`); a refused post takes nothing. One key per source (`keys.source_rate`) holds
the theoretical arrival time in ms and expires when the bucket is full again. The clock is
Redis's own (`TIME`), so gateway hosts whose clocks differ still share one rate.
"""

from __future__ import annotations

from redis.asyncio import Redis

from config.ingress import SourceRateLimit
from core import keys
from core.scripts import load_lua


class RateLimited(Exception):
    """A post over its source's allowance, refused by the ingest script that would have
    stored it (`core.store.Store.ingest` with a rate): nothing was taken or stored."""

    def __init__(self, source: str, wait_ms: int) -> None:
        super().__init__(f"source {source} is over its rate limit for {wait_ms} ms")
        self.source = source
        self.wait_ms = wait_ms


def rate_arguments(limit: SourceRateLimit | None) -> tuple[float, int]:
    """The ingest script's rate arguments: the interval in ms and the burst; (0, 0) takes
    nothing (no limit, or taken apart with `SourceRates.take`)."""
    if limit is None:
        return 0.0, 0
    return 1000.0 / limit.per_second, limit.burst


class SourceRates:
    """The take script bound to one Redis client, registered once (every post calls it)."""

    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(load_lua(keys.Script.SOURCE_RATE_TAKE))

    async def take(self, source: str, limit: SourceRateLimit, cost: int = 1) -> int:
        """Take `cost` posts from `source`'s allowance: 0 if they fit now, else the wait in ms
        before they would (nothing taken). A cost above the burst needs a full bucket and is
        charged in full: the source's average rate holds however it batches."""
        interval_ms = 1000.0 / limit.per_second
        wait = await self._take(
            keys=[keys.source_rate(source)], args=[repr(interval_ms), limit.burst, max(1, cost)]
        )
        return int(wait)
