"""Outcomes of a delivery that are not success, shared by the engine and every adapter.

    DeliveryError
     ├── RetryableDeliveryError      try again later (network, timeout, 408, 425, 429, 5xx)
     └── PermanentDeliveryError      never retry: `dead` at once, with the reason
          ├── VendorRefused          the vendor answered with a 4xx or a body-level failure
          ├── SchemaRefused          the vendor's documented schema would refuse it: never sent
          └── NoLink                 no vendor user id is known for this user

Library errors (aiohttp, JSON decoding) are mapped into this tree at the adapter/transport
boundary with `raise ... from exc`, so the engine only ever sees these classes.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery attempt did not succeed. `reason` is short, stable and safe to log."""

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        vendor_message: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.vendor_message = vendor_message

    def describe(self) -> str:
        """One line for status answers and dead letters: reason, then the vendor's words."""
        if self.vendor_message:
            return f"{self.reason}: {self.vendor_message}"
        return self.reason


class RetryableDeliveryError(DeliveryError):
    """Worth another attempt; `retry_after_s` is the vendor's own hint, if it gave one."""

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        vendor_message: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, http_status=http_status, vendor_message=vendor_message)
        self.retry_after_s = retry_after_s


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the delivery is dead until an operator replays it."""


class VendorRefused(PermanentDeliveryError):
    """The vendor said no (a 4xx other than 408/425/429, or `status:false`/`success:false`)."""


class SchemaRefused(PermanentDeliveryError):
    """A value the vendor's documented schema refuses; the request was not sent."""


class NoLink(PermanentDeliveryError):
    """No vendor user id is known for the user; replayable once a link exists."""

    def __init__(self, vendor: str) -> None:
        super().__init__("no_link", vendor_message=f"no {vendor} id is known for this user")
