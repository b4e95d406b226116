"""Field-wise coalescing and the staleness rule (workers.coalesce): pure functions, no I/O.

Order keys are what the gateway computes (`Event.order_key`): `user.version` (0 to 2**53), else
`occurred_at` in milliseconds, which is negative for an instant before 1970 (the gateway
accepts any RFC 3339 date with an offset).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.event import Changes, Event
from workers import coalesce
from workers.coalesce import FieldValues

CANONICAL = sorted(name for name in Changes.model_fields if name != "tags")
EARLIEST_ORDER_KEY = int(dt.datetime(1, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
ORDER_KEYS = st.integers(min_value=EARLIEST_ORDER_KEY, max_value=2**53)
"""Every order key an accepted event can have."""
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
TAG_KEYS = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)


def order_key_of(occurred_at: str, version: int | None = None) -> int:
    """The order key the gateway gives an event."""
    return Event.model_validate(
        {
            "event_id": "evt-1",
            "occurred_at": occurred_at,
            "user": {"id": "emp-42", "version": version},
            "changes": {"email": "ada@example.com"},
        }
    ).order_key


# flatten / unflatten


def test_flatten_names_tags_and_vendor_fields_by_key() -> None:
    """Tags become `tags/<key>`, an object of vendor_fields becomes `vf/<key>`, canonical fields
    keep their name, and None (clear) is kept as a value."""
    flat = coalesce.flatten(
        {"email": "ada@example.com", "job_title": None, "tags": {"vip": "yes", "old": None}},
        {"cost_center": "CC-1", "nested": {"a": 1}},
    )
    assert flat == FieldValues(
        {
            "email": "ada@example.com",
            "job_title": None,
            "tags/vip": "yes",
            "tags/old": None,
            "vf/cost_center": "CC-1",
            "vf/nested": {"a": 1},
        }
    )


def test_flatten_keeps_a_json_patch_array_opaque() -> None:
    """A list of vendor_fields (a Plaspy JSON Patch) is `opaque`, sent as is and never split
    into field keys; the canonical changes are still flattened."""
    patch = [{"op": "add", "path": "/description", "value": "x"}, {"op": "remove", "path": "/a"}]
    flat = coalesce.flatten({"email": "ada@example.com", "tags": {"vip": "yes"}}, patch)
    assert flat.opaque == patch
    assert flat.values == {"email": "ada@example.com", "tags/vip": "yes"}
    assert not any(key.startswith(coalesce.VENDOR_FIELD_PREFIX) for key in flat.values)


def test_flatten_without_vendor_fields() -> None:
    """No vendor_fields (None or an empty object): only the canonical keys, nothing opaque."""
    nothing: list[dict[str, Any] | None] = [None, {}]
    for vendor_fields in nothing:
        flat = coalesce.flatten({"given_name": "Ada"}, vendor_fields)
        assert flat == FieldValues({"given_name": "Ada"}, opaque=None)


@settings(max_examples=150, deadline=None)
@given(
    canonical=st.dictionaries(st.sampled_from(CANONICAL), SCALARS, max_size=6),
    tags=st.dictionaries(TAG_KEYS, st.none() | st.text(max_size=8), min_size=1, max_size=4)
    | st.none(),
    vendor_fields=st.dictionaries(st.text(max_size=10), SCALARS, max_size=4),
)
def test_flatten_then_unflatten_gives_back_changes_and_vendor_fields(
    canonical: dict[str, Any], tags: dict[str, Any] | None, vendor_fields: dict[str, Any]
) -> None:
    """unflatten(flatten(changes, vendor_fields).values) is (changes, vendor_fields) again, for
    any canonical fields, non-empty tags (an empty tags object carries no change, so no key)
    and object of vendor_fields; the flattened keys are exactly the prefixed names."""
    changes = dict(canonical)
    if tags is not None:
        changes["tags"] = tags
    flat = coalesce.flatten(changes, vendor_fields)
    assert flat.opaque is None
    assert set(flat.values) == (
        set(canonical)
        | {coalesce.TAG_PREFIX + key for key in tags or {}}
        | {coalesce.VENDOR_FIELD_PREFIX + key for key in vendor_fields}
    )
    assert coalesce.unflatten(flat.values) == (changes, vendor_fields)


# fresh


def test_fresh_drops_a_value_older_than_what_the_vendor_acknowledged() -> None:
    """A key whose applied order is greater than the event's order is stale and dropped; the
    event's other keys stay."""
    values = {"email": "old@example.com", "tags/vip": "yes", "vf/cost_center": "CC-1"}
    applied = {"email": 8, "tags/vip": 3, "vf/cost_center": 7}
    assert coalesce.fresh(values, 7, applied) == {"tags/vip": "yes", "vf/cost_center": "CC-1"}


def test_fresh_keeps_a_value_with_an_equal_order() -> None:
    """An applied order equal to the event's is the same change again: kept, including a clear."""
    values = {"email": "ada@example.com", "job_title": None}
    assert coalesce.fresh(values, 5, {"email": 5, "job_title": 5}) == values


def test_fresh_keeps_keys_the_vendor_never_acknowledged() -> None:
    """Keys absent from `applied` are kept, however new other keys' applied orders are."""
    values = {"email": "ada@example.com", "tags/vip": "yes"}
    assert coalesce.fresh(values, 0, {"given_name": 2**53, "tags/other": 99}) == values
    assert coalesce.fresh(values, 3, {}) == values


def test_fresh_keeps_never_acknowledged_keys_of_an_event_before_1970() -> None:
    """An event without `user.version` that occurred before 1970 has a negative order key; its
    values for keys the vendor never acknowledged are still fresh (not skipped as stale)."""
    order = order_key_of("1969-12-31T23:59:58Z")
    assert order == -2000
    assert coalesce.fresh({"email": "ada@example.com"}, order, {}) == {"email": "ada@example.com"}


# merge


def reference_merge(
    items: list[tuple[int, dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, int]]:
    """Per key: the value of the item with the highest order, the later item on ties."""
    best: dict[str, tuple[int, int, Any]] = {}
    for position, (order, values) in enumerate(items):
        for key, value in values.items():
            best[key] = max(best.get(key, (order, position, value)), (order, position, value))
    return (
        {key: value for key, (_, _, value) in best.items()},
        {key: order for key, (order, _, _) in best.items()},
    )


@st.composite
def merge_items(draw: st.DrawFn) -> list[tuple[int, dict[str, Any]]]:
    """Items oldest first (sorted by order, ties in any order); each value names its item so a
    wrong pick cannot go unnoticed."""
    keys = st.sampled_from(["email", "given_name", "tags/vip", "vf/cost_center", "job_title"])
    orders = draw(
        st.lists(st.sampled_from(draw(st.lists(ORDER_KEYS, min_size=1, max_size=4))), max_size=8)
    )
    items = []
    for position, order in enumerate(sorted(orders)):
        chosen = draw(st.sets(keys, max_size=4))
        items.append((order, {key: f"{key}#{position}" for key in sorted(chosen)}))
    return items


@settings(max_examples=200, deadline=None)
@given(items=merge_items())
@example(items=[(-5, {"email": "email#0"})])
@example(items=[(1, {"email": "email#0"}), (1, {"email": "email#1"}), (2, {"tags/vip": "x"})])
def test_merge_keeps_per_key_the_value_of_the_highest_order(
    items: list[tuple[int, dict[str, Any]]],
) -> None:
    """For any items given oldest first, each key ends with the value of the highest order (the
    later item on ties), and the returned orders are those orders: as the reference does."""
    assert coalesce.merge(items) == reference_merge(items)


def test_merge_keeps_a_newer_clear_and_the_later_of_equal_orders() -> None:
    """A newer None (clear) beats an older value, an older value never beats a newer one, and
    of two items with one order the later wins."""
    merged, orders = coalesce.merge(
        [
            (1, {"email": "a@example.com", "job_title": "Engineer"}),
            (2, {"email": None, "tags/vip": "no"}),
            (2, {"tags/vip": "yes"}),
            (3, {"given_name": "Ada"}),
        ]
    )
    assert merged == {
        "email": None,
        "job_title": "Engineer",
        "tags/vip": "yes",
        "given_name": "Ada",
    }
    assert orders == {"email": 2, "job_title": 1, "tags/vip": 2, "given_name": 3}


def test_merge_keeps_the_values_of_an_event_before_1970() -> None:
    """A pre-1970 event's (negative) order key still carries its values through a merge, and a
    newer event still wins over it."""
    older = order_key_of("1969-12-31T23:59:58Z")
    newer = order_key_of("1969-12-31T23:59:59Z")
    merged, orders = coalesce.merge(
        [(older, {"email": "a@example.com", "given_name": "Ada"}), (newer, {"email": None})]
    )
    assert merged == {"email": None, "given_name": "Ada"}
    assert orders == {"email": newer, "given_name": older}


# fresh + merge over a stream, as the delivery engine applies them


@dataclass(frozen=True)
class Change:
    """One event changing one field key, at one version."""

    key: str
    version: int

    @property
    def value(self) -> str:
        return f"{self.key} v{self.version}"

    def flattened(self) -> FieldValues:
        if self.key.startswith(coalesce.TAG_PREFIX):
            return coalesce.flatten({"tags": {self.key.removeprefix("tags/"): self.value}}, None)
        if self.key.startswith(coalesce.VENDOR_FIELD_PREFIX):
            return coalesce.flatten({}, {self.key.removeprefix("vf/"): self.value})
        return coalesce.flatten({self.key: self.value}, None)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Change], list[list[Change]]]:
    """Changes with distinct versions, some delivered twice (a re-run), shuffled and cut into
    batches of any size: (the changes, the batches in arrival order)."""
    keys = ["email", "job_title", "tags/vip", "vf/cost_center"]
    versions = draw(st.lists(st.integers(0, 2**53), min_size=1, max_size=25, unique=True))
    changes = [Change(draw(st.sampled_from(keys)), version) for version in versions]
    repeats = draw(st.lists(st.sampled_from(changes), max_size=5))
    arrivals = draw(st.permutations(changes + repeats))
    batches: list[list[Change]] = []
    while arrivals:
        size = draw(st.integers(1, max(1, len(arrivals))))
        batches.append(arrivals[:size])
        arrivals = arrivals[size:]
    return changes, batches


@settings(max_examples=200, deadline=None)
@given(stream=streams())
def test_a_shuffled_stream_ends_on_the_newest_version_and_never_goes_back(
    stream: tuple[list[Change], list[list[Change]]],
) -> None:
    """Versioned single-field changes, arriving shuffled in arbitrary batches and applied as the
    engine does (sort a batch by order, `fresh` against `applied`, `merge`, send, then raise
    `applied` to the merged orders): each key ends on its highest version's value, what is sent
    for a key never goes back to an older version, and each value sent is that version's."""
    changes, batches = stream
    applied: dict[str, int] = {}
    sent: dict[str, list[int]] = defaultdict(list)
    final: dict[str, Any] = {}
    for batch in batches:
        batch = sorted(batch, key=lambda change: change.version)
        items = [
            (change.version, coalesce.fresh(change.flattened().values, change.version, applied))
            for change in batch
        ]
        merged, orders = coalesce.merge(items)
        assert set(orders) == set(merged)
        for key, value in merged.items():
            assert value == Change(key, orders[key]).value
            sent[key].append(orders[key])
            final[key] = value
        for key, order in orders.items():
            applied[key] = max(applied.get(key, order), order)
    newest = {
        key: max(c.version for c in changes if c.key == key) for key in {c.key for c in changes}
    }
    assert final == {key: Change(key, version).value for key, version in newest.items()}
    for key, versions in sent.items():
        assert versions == sorted(versions), (key, versions)
