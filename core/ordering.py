"""Clearing a user's ordering state: the admin's repair for a poisoned order key.

Changes are applied in order key order (`user.version`, else `occurred_at`), and a change
older than what a vendor acknowledged for a field is never sent (docs/delivery.md). So one
event with a huge order key (a `user.version` of 2**53 from a buggy source, say) makes every
later change of its fields `stale`, for good. The ordering state is the `applied` hash of
each (vendor instance, user) pair and the order fields (`keys.PROFILE_ORDER_PREFIX`) of the user's name
profile; `reset` deletes them, so the next change of each field is sent whatever its order
key.

A pair in flight is left alone: a run that read `applied` before the reset and committed
after it would skip changes as stale against the poisoned orders, and write them back. So
the reset is one Lua script that first checks every pair's lease: if any is held, nothing is
cleared and the caller is told to retry once it has ended (a lease lasts the vendor's
timeout + 5 s at most). A run that begins after the reset reads the cleared state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from core import keys
from core.scripts import load_lua


@dataclass(frozen=True)
class OrderingReset:
    """What a reset did: per vendor instance, how many field orders it cleared, and how many
    name-part orders of the profile; or, when `in_flight` names pairs, nothing at all."""

    applied: dict[str, int] = field(default_factory=dict)
    profile: int = 0
    in_flight: list[str] = field(default_factory=list)
    retry_after_ms: int = 0


async def reset_ordering(
    redis: Redis, user_id: str, vendors: Sequence[str], *, profile: bool
) -> OrderingReset:
    """Clear the ordering state of `user_id` at each of `vendors` (and the profile's name
    part orders if `profile`), atomically; nothing if any of those pairs has a call in flight
    (`in_flight` names them, `retry_after_ms` is when the last lease expires at most)."""
    key_list = [keys.profile(user_id)]
    for vendor in vendors:
        key_list += [keys.applied(vendor, user_id), keys.lease(vendor, user_id)]
    script = redis.register_script(load_lua(keys.Script.ORDERING_RESET))
    reply = await script(keys=key_list, args=["1" if profile else "0"])
    if reply[0] == b"busy":
        busy = [vendors[int(index) - 1] for index in reply[1]]
        return OrderingReset(in_flight=busy, retry_after_ms=max(int(reply[2]), 0))
    cleared = dict(zip(vendors, (int(n) for n in reply[1]), strict=True))
    return OrderingReset(applied=cleared, profile=int(reply[2]))
