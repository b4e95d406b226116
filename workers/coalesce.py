"""Field-wise merging of a pair's pending changes, and the staleness rule. Pure functions.

Changes are compared per *field key*: a canonical field (`email`), one tag (`tags/<key>`), or
one vendor-native field (`vf/<key>`). For each key the vendor has acknowledged some order key
(`applied`); a pending value with an older order key is *stale* and is never sent, so a late
old change cannot overwrite a newer one. Among the fresh values the newest order key wins.

A Plaspy `vendor_fields` JSON Patch array is a sequence of operations, not fields: it cannot be
merged key by key, so an event carrying one is sent in a call of its own (`opaque`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TAG_PREFIX = "tags/"
VENDOR_FIELD_PREFIX = "vf/"


@dataclass(frozen=True)
class FieldValues:
    """One event's changes for one vendor instance, flattened to field keys."""

    values: dict[str, Any]
    opaque: list[dict[str, Any]] | None = None
    """A JSON Patch array of `vendor_fields`, sent as is and never merged."""


def flatten(
    changes: Mapping[str, Any], vendor_fields: Mapping[str, Any] | list[dict[str, Any]] | None
) -> FieldValues:
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "tags":
            values.update({TAG_PREFIX + key: item for key, item in value.items()})
        else:
            values[name] = value
    if isinstance(vendor_fields, list):
        return FieldValues(values, opaque=vendor_fields)
    for key, value in (vendor_fields or {}).items():
        values[VENDOR_FIELD_PREFIX + key] = value
    return FieldValues(values)


def unflatten(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(canonical changes, vendor_fields) of flattened values."""
    changes: dict[str, Any] = {}
    vendor_fields: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(TAG_PREFIX):
            changes.setdefault("tags", {})[key.removeprefix(TAG_PREFIX)] = value
        elif key.startswith(VENDOR_FIELD_PREFIX):
            vendor_fields[key.removeprefix(VENDOR_FIELD_PREFIX)] = value
        else:
            changes[key] = value
    return changes, vendor_fields


def fresh(values: Mapping[str, Any], order: int, applied: Mapping[str, int]) -> dict[str, Any]:
    """The values not older than what the vendor already acknowledged for their key.

    An equal order key is fresh: it is the same change again (a re-run after a crash, say), and
    sending it again is harmless where skipping it could lose it."""
    return {
        key: value for key, value in values.items() if key not in applied or applied[key] <= order
    }


def merge(items: Iterable[tuple[int, Mapping[str, Any]]]) -> tuple[dict[str, Any], dict[str, int]]:
    """Merge (order key, values) items, oldest first: newest wins per key.

    Returns the merged values and, per key, the order key of the value kept (what the vendor
    will have acknowledged once the call succeeds)."""
    merged: dict[str, Any] = {}
    orders: dict[str, int] = {}
    for order, values in items:
        for key, value in values.items():
            if key not in orders or order >= orders[key]:
                merged[key] = value
                orders[key] = order
    return merged, orders
