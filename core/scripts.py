"""The Lua scripts: loaded from `core/lua/`, and several calls of them sent in one round trip.

`load_lua` is the one place a script's text comes from: the file `core/lua/<name>.lua`, its
`--!include <name>` lines replaced by the named file, and every `${NAME}` by the layout
constant of `core.keys` of that name, so a script spells no key part or hash field itself
(a tuple constant becomes a Lua argument list of quoted strings).

redis-py runs a script registered on a pipeline only after a SCRIPT EXISTS round trip of its
own, and one script call per round trip costs the Python client more than Redis takes to run
it. `run_together` sends each call as a bare EVALSHA in one pipeline and, for the calls Redis
answers NOSCRIPT (a restarted or flushed Redis), loads the script and sends those again. The
calls run in order but not as one transaction: each script is atomic on its own.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from core import keys
from core.redis_client import ReplicaAck

_INCLUDE = re.compile(r"^--!include (\w+)$", re.MULTILINE)
_UNSAFE = re.compile(r"['$\\\n]")
"""What a constant may not hold to be put inside a Lua string as it is."""


@functools.cache
def load_lua(name: keys.Script) -> str:
    """The text of the script `name`, includes expanded and layout constants put in."""
    return substitute(lua_source(name))


def lua_source(name: keys.Script) -> str:
    """The script `name` as written, its includes expanded, placeholders left in."""
    text = importlib.resources.files("core").joinpath("lua", f"{name.value}.lua").read_text()
    return _INCLUDE.sub(lambda match: lua_source(keys.Script(match[1])), text)


def substitute(text: str) -> str:
    """`text` with every `${NAME}` replaced by the layout constant `keys.NAME`; a name that
    is no constant raises KeyError, so a typo never reaches Redis."""
    return string.Template(text).substitute(lua_constants())


@functools.cache
def lua_constants() -> dict[str, str]:
    """`core.keys`' string constants as they are, tuples of them as Lua argument lists; a
    constant that could break out of the Lua string it is put in raises ValueError."""
    constants: dict[str, str] = {}
    for name, value in vars(keys).items():
        if not name.isupper():
            continue
        if isinstance(value, str):
            items = [value]
            constants[name] = value
        elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
            items = list(value)
            constants[name] = ", ".join(f"'{item}'" for item in value)
        else:
            continue
        if any(_UNSAFE.search(item) for item in items):
            raise ValueError(f"keys.{name} cannot be put in a Lua string")
    return constants


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered script, ready to be sent. `on_reply` is given the script's
    reply (not an error) where it comes back: a caller sending it with others in one round
    trip still learns what it said (the vendor guard logs a circuit's change so)."""

    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]
    on_reply: Callable[[Any], None] | None = None


ScriptSender = Callable[[Sequence[ScriptCall]], Awaitable[list[Any]]]
"""Sends script calls as `run_together` does (each one's reply or error, in order): that
function bound to a client, or a worker's `workers.batching.ScriptBatcher`, whose callers share
round trips."""


async def run_together(
    redis: Redis, calls: Sequence[ScriptCall], wait: ReplicaAck | None = None
) -> list[Any]:
    """Each call's reply, or the error Redis answered for it (returned, not raised), in order;
    a connection error raises. A script Redis lost is loaded and its calls sent again. With
    `wait`, each pipeline ends with its WAIT, on the same connection, and ReplicationTimeout
    raises if too few replicas acknowledged what it wrote (a pipeline that ran no script,
    each answered NOSCRIPT, wrote nothing to wait for)."""
    if not calls:
        return []
    replies, acked = await _pipelined(redis, calls, wait)
    missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if wait is not None and len(missing) < len(calls):
        wait.check(acked)
    if missing:
        commands: Any = redis
        for script in {id(calls[n].script): calls[n].script for n in missing}.values():
            await commands.script_load(script.script)
        again, acked = await _pipelined(redis, [calls[n] for n in missing], wait)
        if wait is not None:
            wait.check(acked)
        for n, reply in zip(missing, again, strict=True):
            replies[n] = reply
    for call, reply in zip(calls, replies, strict=True):
        if call.on_reply is not None and not isinstance(reply, Exception):
            call.on_reply(reply)
    return replies


async def _pipelined(
    redis: Redis, calls: Sequence[ScriptCall], wait: ReplicaAck | None = None
) -> tuple[list[Any], Any]:
    """The calls' replies, and WAIT's (None without `wait`)."""
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        if wait is not None:
            pipe.execute_command(*wait.command())
        replies = list(await pipe.execute(raise_on_error=False))
    return replies, (replies.pop() if wait is not None else None)


def reply_or_raise(reply: Any) -> Any:
    """A reply of `run_together`, raising it if Redis answered an error."""
    if isinstance(reply, Exception):
        raise reply
    return reply
