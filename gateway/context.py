"""What the gateway's handlers share: the app's state keys, the preview hook, JSON answers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from config.settings import Settings
from core.dead_letters import DeadLetters
from core.ports import Previewer, VendorFieldsCheck
from core.secrets import SecretBox
from core.source_rate import SourceRates
from core.store import Store
from core.vendor_guard import VendorGuard

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
