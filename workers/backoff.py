"""Delay before the next attempt: exponential backoff with full jitter, floored by Retry-After."""

from __future__ import annotations

from collections.abc import Callable

from config.vendors import RetrySettings


def retry_delay(
    attempt: int,
    policy: RetrySettings,
    retry_after_s: float | None,
    random: Callable[[], float],
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Full jitter (a uniform draw below the exponential ceiling) spreads a crowd of retries after
    a vendor outage; a vendor's own Retry-After is a floor, since calling earlier is refused.
    """
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    delay: float = random() * ceiling
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay
