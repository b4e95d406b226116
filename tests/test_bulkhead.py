"""`Bulkhead`: never more than its places at once; a run waits for a place only while the
vendor's calls are ending, and is deferred at once when they all hang."""

from __future__ import annotations

import asyncio

from workers.bulkhead import Bulkhead


async def test_a_free_place_is_taken_and_the_limit_holds() -> None:
    """Two places: two runs enter, a third finds none (no call has ended: all hang)."""
    bulkhead = Bulkhead(2)
    assert await bulkhead.enter()
    assert await bulkhead.enter()
    assert not await bulkhead.enter()


async def test_a_run_waits_for_the_place_a_call_gives_back() -> None:
    """With calls ending, a run that finds the bulkhead full gets the next place given back."""
    bulkhead = Bulkhead(1)
    assert await bulkhead.enter()
    bulkhead.leave()  # a call ended just now: the vendor answers
    assert await bulkhead.enter()
    waiting = asyncio.create_task(bulkhead.enter())
    await asyncio.sleep(0)
    assert not waiting.done()
    bulkhead.leave()
    assert await waiting
    assert not await asyncio.create_task(bulkhead.enter())  # its place is taken again


async def test_a_run_gives_up_when_no_place_comes_back() -> None:
    """A run waiting while the one place stays taken is deferred (False), never let in."""
    bulkhead = Bulkhead(1)
    assert await bulkhead.enter()
    bulkhead.leave()
    assert await bulkhead.enter()
    assert not await bulkhead.enter()  # waits out its patience: the place never came back
    bulkhead.leave()
    assert await bulkhead.enter()
