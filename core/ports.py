"""What the gateway is handed from the delivery side, as plain callables.

The gateway may not import the workers, yet preview and the ingest check of `vendor_fields`
need the adapters. The composition root (`usersync.runtime`) builds these from the workers'
registry and hands them to `gateway.app.create_gateway_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.event import Event

Previewer = Callable[[Event, list[str]], Awaitable[dict[str, Any]]]
"""Given a validated event and its targets: the request each target would receive."""
VendorFieldsCheck = Callable[[str, Any], list[dict[str, str]]]
"""Given a vendor instance and an event's `vendor_fields` for it: each problem the vendor's
schema finds, as `{"path": "vendor_fields.<instance>...", "message"}`."""
