"""Several Lua script calls in one round trip.

redis-py runs a script registered on a pipeline only after a SCRIPT EXISTS round trip of its
own, and one script call per round trip costs the Python client more than Redis takes to run
it. `run_together` sends each call as a bare EVALSHA in one pipeline and, for the calls Redis
answers NOSCRIPT (a restarted or flushed Redis), loads the script and sends those again. The
calls run in order but not as one transaction: each script is atomic on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered script, ready to be sent."""

    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]


async def run_together(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Each call's reply, or the error Redis answered for it (returned, not raised), in order;
    a connection error raises. A script Redis lost is loaded and its calls sent again."""
    if not calls:
        return []
    replies = await _pipelined(redis, calls)
    missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        commands: Any = redis
        for script in {id(calls[n].script): calls[n].script for n in missing}.values():
            await commands.script_load(script.script)
        again = await _pipelined(redis, [calls[n] for n in missing])
        for n, reply in zip(missing, again, strict=True):
            replies[n] = reply
    return replies


async def _pipelined(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))


def reply_or_raise(reply: Any) -> Any:
    """A reply of `run_together`, raising it if Redis answered an error."""
    if isinstance(reply, Exception):
        raise reply
    return reply
