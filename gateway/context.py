"""What the gateway's handlers share: the app's state keys, the preview hook, JSON answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

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


T = TypeVar("T")


class PerSettings(Generic[T]):
    """A value worked out from the settings once per settings object (a reload brings new
    ones) rather than per request: `build(settings)`, kept by the settings' id for the last
    few; each entry holds its settings, so that id stays theirs."""

    __slots__ = ("_build", "_values")
    KEPT = 8

    def __init__(self, build: Callable[[Settings], T]) -> None:
        self._build = build
        self._values: dict[int, tuple[Settings, T]] = {}

    def __call__(self, settings: Settings) -> T:
        entry = self._values.get(id(settings))
        if entry is None or entry[0] is not settings:
            if len(self._values) >= self.KEPT:
                self._values.clear()
            entry = self._values[id(settings)] = (settings, self._build(settings))
        return entry[1]
