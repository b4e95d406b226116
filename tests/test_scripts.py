"""`run_together`: several script calls, one round trip, and a Redis that lost its scripts."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.scripts import ScriptCall, reply_or_raise, run_together
from tests.conftest import count_writes

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
ECHO = "return ARGV[1] .. ':' .. KEYS[1]"
FAIL = "return redis.error_reply('refused here')"


async def test_calls_of_several_scripts_share_one_round_trip(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    incr, echo = redis.register_script(INCR), redis.register_script(ECHO)
    await run_together(redis, [ScriptCall(incr, ["n"], [0]), ScriptCall(echo, ["k"], ["x"])])
    writes = count_writes(monkeypatch)
    replies = await run_together(
        redis,
        [
            ScriptCall(incr, ["n"], [2]),
            ScriptCall(echo, ["k"], ["v"]),
            ScriptCall(incr, ["n"], [3]),
        ],
    )
    monkeypatch.undo()
    assert replies == [2, b"v:k", 5]
    assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 3
    assert b"SCRIPT" not in writes[0]


async def test_lost_scripts_are_loaded_and_their_calls_sent_once_more(redis: Redis) -> None:
    """After SCRIPT FLUSH every call answers NOSCRIPT, so none ran: each is sent again, once."""
    incr, echo = redis.register_script(INCR), redis.register_script(ECHO)
    await run_together(redis, [ScriptCall(incr, ["n"], [1])])
    await redis.script_flush()
    replies = await run_together(
        redis, [ScriptCall(incr, ["n"], [10]), ScriptCall(echo, ["k"], ["w"])]
    )
    assert replies == [11, b"w:k"]
    assert int(await redis.get("n")) == 11


async def test_an_error_reply_is_returned_in_its_place(redis: Redis) -> None:
    incr, fail = redis.register_script(INCR), redis.register_script(FAIL)
    replies = await run_together(redis, [ScriptCall(fail, [], []), ScriptCall(incr, ["m"], [1])])
    assert isinstance(replies[0], ResponseError) and replies[1] == 1
    with pytest.raises(ResponseError, match="refused here"):
        reply_or_raise(replies[0])
    assert reply_or_raise(replies[1]) == 1
    assert await run_together(redis, []) == []
