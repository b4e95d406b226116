"""From a stored event to one vendor's request: the single code path of delivery and preview."""

from __future__ import annotations

from gateway.events import Event
from usersync.store import NAME_PARTS, Store
from workers.errors import NoLink
from workers.vendors.base import ChangeSet, Translation, VendorAdapter


async def plan_delivery(store: Store, adapter: VendorAdapter, event: Event) -> Translation:
    """Resolve the vendor's id for the user and translate the changes; NoLink if none known."""
    vendor_id = event.user.external_ids.get(adapter.name) or await store.get_link(
        event.user.id, adapter.name
    )
    if vendor_id is None:
        raise NoLink(adapter.name)
    changes = event.changes.present()
    # The stored name parts only matter to compose a full name when one part changed.
    needs_profile = any(part in changes for part in NAME_PARTS)
    change = ChangeSet(
        user_id=event.user.id,
        vendor_user_id=vendor_id,
        changes=changes,
        vendor_fields=event.vendor_fields.get(adapter.name, {}),
        profile=await store.get_profile(event.user.id) if needs_profile else {},
    )
    return adapter.translate(change)
