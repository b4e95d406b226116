"""What the engine and the preview know of a vendor: the adapter interface and its values.

An adapter is pure translation: canonical changes in (`ChangeSet`), one `VendorRequest` out,
or none (`Translation`); an HTTP answer in, a `VendorResult` or a delivery error out
(`workers.errors`). `workers.vendors.base` holds what the adapters share to do it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from config.vendors import VendorSettings
from core.masking import MASK, mask_secrets

PUBLIC_HEADERS = frozenset({"accept", "content-type", "content-length", "user-agent"})
"""Request headers shown in clear in a preview; every other one may carry a credential."""


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
        """The request as shown to people: every header but `PUBLIC_HEADERS` (so any vendor's
        credential header, whatever its name) and every secret value replaced by ***."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": {
                name: (value if name.lower() in PUBLIC_HEADERS else MASK)
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

    def vendor_fields_problems(self, fields: Any) -> list[tuple[str, str]]:
        """Each reason the vendor's schema refuses an event's `vendor_fields` for this
        instance, as (`vendor_fields.<instance>.<path>`, message), input values left out;
        empty when `translate` would take them. The gateway asks it at ingest (a 422), so
        fields a vendor refuses, and the secrets among them, are never stored."""
        ...
