"""The interface every vendor adapter implements, and the helpers they share.

An adapter is pure translation: canonical changes in, one `VendorRequest` out; an HTTP answer
in, a `VendorResult` or a `DeliveryError` out. It never performs I/O, so the preview endpoint
and the worker run exactly the same code, and adapters are tested without a network.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

import orjson

from config.settings import VendorSettings
from workers.errors import RetryableDeliveryError, SchemaRefused, VendorRefused

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "x-apikey"})
SECRET_KEYS = frozenset({"password"})
RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class ChangeSet:
    """What one delivery carries to one vendor instance.

    `changes` holds only the canonical fields that were sent (None = clear). `profile` holds the
    newest known value of the name parts (given_name, family_name, display_name), so an event
    changing only one part can still produce a vendor's full `name`.
    """

    user_id: str
    vendor_user_id: str
    changes: Mapping[str, Any]
    vendor_fields: Mapping[str, Any] | Sequence[Mapping[str, Any]] = field(default_factory=dict)
    profile: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VendorRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Any

    def encoded_body(self) -> bytes:
        return orjson.dumps(self.body)

    def masked(self) -> dict[str, Any]:
        """The request as shown to people: auth headers and secret values replaced by ***."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": {
                name: (MASK if name.lower() in SECRET_HEADERS else value)
                for name, value in self.headers.items()
            },
            "body": mask_secrets(self.body),
        }


@dataclass(frozen=True)
class Omission:
    """A changed field left out of the request, and why (logged, shown by preview)."""

    field: str
    reason: str


@dataclass(frozen=True)
class Translation:
    """The result of translating a change set: a request, or None when there is nothing to send."""

    request: VendorRequest | None
    omitted: tuple[Omission, ...] = ()


@dataclass(frozen=True)
class VendorResult:
    """A successful answer: the vendor's message and any usage counters it reported."""

    message: str | None = None
    usage: Mapping[str, int] = field(default_factory=dict)


class VendorAdapter(Protocol):
    """What the engine and the preview know about a vendor: nothing else."""

    kind: ClassVar[str]
    name: str
    settings: VendorSettings

    def translate(self, change: ChangeSet) -> Translation:
        """Build the vendor's request; raise SchemaRefused for values it would refuse."""
        ...

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """Read the answer; raise RetryableDeliveryError or VendorRefused unless it succeeded."""
        ...


def mask_secrets(value: Any) -> Any:
    """Replace secret values in a JSON body: `password` keys and JSON Patch ops on /password."""
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    if isinstance(value, dict):
        if value.get("path") == "/password" and "value" in value:
            return {**value, "value": MASK}
        return {
            key: (MASK if key in SECRET_KEYS and item is not None else mask_secrets(item))
            for key, item in value.items()
        }
    return value


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def decode_json(body: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON (a garbage answer)."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def raise_for_http_status(
    status: int, headers: Mapping[str, str], vendor_message: str | None
) -> None:
    """The HTTP-level classification shared by all vendors; returns only for 2xx."""
    if 200 <= status < 300:
        return
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableDeliveryError(
            f"http_{status}",
            http_status=status,
            vendor_message=vendor_message,
            retry_after_s=parse_retry_after(headers.get("Retry-After")),
        )
    raise VendorRefused(f"http_{status}", http_status=status, vendor_message=vendor_message)


def join_name(change: ChangeSet) -> tuple[bool, str | None]:
    """The vendor's single `name` for vendors that have one (MileApp, Plaspy).

    Returns (touched, value): touched is False when no name part changed. `display_name` wins
    when it is known; else given and family names joined, taking parts the event did not
    change from the stored profile. None means every part is now cleared.
    """
    parts = ("given_name", "family_name", "display_name")
    if not any(part in change.changes for part in parts):
        return False, None
    known = {part: change.profile.get(part) for part in parts}
    known.update({part: change.changes[part] for part in parts if part in change.changes})
    if known["display_name"]:
        return True, known["display_name"]
    joined = " ".join(part for part in (known["given_name"], known["family_name"]) if part)
    return True, joined or None


def object_vendor_fields(
    fields: Mapping[str, Any] | Sequence[Mapping[str, Any]], where: str
) -> dict[str, Any]:
    """`vendor_fields` for a vendor whose body is an object: refuse an array (Plaspy's shape)."""
    if not isinstance(fields, Mapping):
        raise SchemaRefused(
            "invalid_vendor_fields", vendor_message=f"{where}: must be an object of body fields"
        )
    return dict(fields)
