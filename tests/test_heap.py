"""A serving process's collector (`usersync.heap`): started objects frozen, young collections
further apart, and garbage cycles made afterwards still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from usersync.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def settled() -> Iterator[None]:
    """`settle_heap` for the test; the collector as it was afterwards (other tests share it)."""
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_settle_heap_freezes_what_exists_and_spaces_young_collections(settled: None) -> None:
    """What exists when the process settles is frozen; young collections are
    YOUNG_THRESHOLD allocations apart, the older generations keep theirs."""
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_threshold()[1:] == (10, 10)


def test_cycles_made_after_settling_are_still_collected(settled: None) -> None:
    """A garbage cycle made once the heap is settled is freed by the next young collection,
    without an explicit gc.collect()."""
    node = Node()
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # a cycle: reference counting alone keeps it
    held: list[list[int]] = [[] for _ in range(2 * YOUNG_THRESHOLD)]  # starts a collection
    assert gone() is None
    assert len(held) == 2 * YOUNG_THRESHOLD
