"""Per-source rate limit of event posts, shared by every gateway process through Redis.

GCRA, check-and-take without reservation: a post either fits now and takes its share of the
bucket, or is refused with the time until it would fit (the gateway answers 429 with
`Retry-After`); a refused post takes nothing. One key per source (`keys.source_rate`) holds
the theoretical arrival time in ms and expires when the bucket is full again. The clock is
Redis's own (`TIME`), so gateway hosts whose clocks differ still share one rate.
"""

from __future__ import annotations

from redis.asyncio import Redis

from config.settings import SourceRateLimit
from core import keys

_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
-- fits if the bucket has room for the cost (for a cost above the burst: a full bucket); the
-- whole cost is charged, so a big batch makes the posts after it wait in proportion
local over = tat + math.min(cost, burst) * interval - now - burst * interval
if over > 0 then return math.ceil(over) end
local new_tat = tat + cost * interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return 0
"""


class SourceRates:
    """The take script bound to one Redis client, registered once (every post calls it)."""

    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(_TAKE)

    async def take(self, source: str, limit: SourceRateLimit, cost: int = 1) -> int:
        """Take `cost` posts from `source`'s allowance: 0 if they fit now, else the wait in ms
        before they would (nothing taken). A cost above the burst needs a full bucket and is
        charged in full: the source's average rate holds however it batches."""
        interval_ms = 1000.0 / limit.per_second
        wait = await self._take(
            keys=[keys.source_rate(source)], args=[repr(interval_ms), limit.burst, max(1, cost)]
        )
        return int(wait)
