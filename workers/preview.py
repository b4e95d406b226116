"""`POST /v1/events:preview`: what each target would receive, computed by the delivery code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.event import Event
from core.ports import Previewer
from core.store import Store
from workers.errors import PermanentDeliveryError
from workers.planning import plan_preview
from workers.vendors.interface import Omission, VendorAdapter


def _omitted(omissions: tuple[Omission, ...]) -> list[dict[str, str]]:
    return [{"field": o.field, "reason": o.reason} for o in omissions]


def make_previewer(store: Store, adapters: Mapping[str, VendorAdapter]) -> Previewer:
    async def preview(event: Event, targets: list[str]) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for target in targets:
            try:
                translation = await plan_preview(store, adapters[target], event)
            except PermanentDeliveryError as exc:
                answers[target] = {
                    "outcome": "refused",
                    "reason": exc.reason,
                    "message": exc.describe(),
                }
                continue
            if translation.request is None:
                answers[target] = {
                    "outcome": "skipped",
                    "reason": "nothing_to_send",
                    "omitted": _omitted(translation.omitted),
                }
            else:
                answers[target] = {
                    "outcome": "send",
                    "request": translation.request.masked(),
                    "omitted": _omitted(translation.omitted),
                }
        return answers

    return preview
