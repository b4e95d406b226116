"""From a pair's changes to one vendor's request: the one code path of delivery and preview.

The engine (`workers.engine`) and the preview (`workers.preview`) both ask this module which
vendor id a user has and what request a set of changes makes, so a preview shows exactly what
delivery would send: `tests/test_preview.py` posts the same event to both and compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.event import NAME_PARTS, Event
from core.store import Store
from workers import coalesce
from workers.errors import NoLink
from workers.vendors.interface import ChangeSet, Translation, VendorAdapter


def vendor_user_id(target: str, events: Sequence[Event], stored_link: str | None) -> str | None:
    """The user's id at `target`: the newest event that carries one, else the stored link."""
    for event in reversed(events):
        carried = event.user.external_ids.get(target)
        if carried:
            return carried
    return stored_link


def translate(
    adapter: VendorAdapter,
    user_id: str,
    vendor_id: str,
    values: Mapping[str, Any],
    opaque: list[dict[str, Any]] | None,
    profile: Mapping[str, str],
) -> Translation:
    """The vendor's request for flattened field values (`workers.coalesce`), or why none.

    `opaque` is a JSON Patch array of vendor fields, sent as it is; `profile` holds the user's
    stored name parts, which a vendor with one full-name field needs when one part changes."""
    changes, vendor_fields = coalesce.unflatten(values)
    return adapter.translate(
        ChangeSet(
            user_id=user_id,
            vendor_user_id=vendor_id,
            changes=changes,
            vendor_fields=opaque if opaque is not None else vendor_fields,
            profile=dict(profile),
        )
    )


async def plan_preview(store: Store, adapter: VendorAdapter, event: Event) -> Translation:
    """What delivering `event` alone to `adapter` would send now; NoLink if no id is known."""
    vendor_id = vendor_user_id(
        adapter.name, [event], await store.get_link(event.user.id, adapter.name)
    )
    if vendor_id is None:
        raise NoLink(adapter.name)
    changes = event.changes.present()
    values = coalesce.flatten(changes, event.vendor_fields.get(adapter.name))
    # The stored name parts only matter to compose a full name when one part changed.
    needs_profile = any(part in changes for part in NAME_PARTS)
    profile = await store.get_profile(event.user.id) if needs_profile else {}
    return translate(adapter, event.user.id, vendor_id, values.values, values.opaque, profile)
