"""What the gateway's handlers share: the app's state keys, the preview hook, JSON answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from config.settings import Settings
from gateway.events import Event
from usersync.dead_letters import DeadLetters
from usersync.secrets import SecretBox
from usersync.source_rate import SourceRates
from usersync.store import Store
from usersync.vendor_guard import VendorGuard

Previewer = Callable[[Event, list[str]], Awaitable[dict[str, Any]]]
"""Given a validated event and its targets: the request each target would receive."""
VendorFieldsCheck = Callable[[str, Any], list[dict[str, str]]]
"""Given a vendor instance and an event's `vendor_fields` for it: each problem the vendor's
schema finds, as `{"path": "vendor_fields.<instance>...", "message"}` (the workers' adapters,
handed in by the entry point as the previewer is)."""

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
PREVIEWER: web.AppKey[Previewer] = web.AppKey("previewer")
VENDOR_FIELDS: web.AppKey[VendorFieldsCheck] = web.AppKey("vendor_fields_check")
DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
VENDOR_GUARD = web.AppKey("vendor_guard", VendorGuard)
SOURCE_RATES = web.AppKey("source_rates", SourceRates)
SECRET_BOX = web.AppKey("secret_box", SecretBox)
"""The configured keys' box, built once with the app: every post seals with it."""


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )
