"""The one place an HTTP call to a vendor is made; aiohttp errors become delivery errors here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from workers.errors import RetryableDeliveryError
from workers.vendors.interface import VendorRequest

MAX_RESPONSE_BYTES = 1024 * 1024
"""A vendor answer larger than this is cut: we only read status fields from it."""


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def send(
    session: aiohttp.ClientSession, request: VendorRequest, timeout_s: float
) -> RawResponse:
    """Make the call; network failures and timeouts are retryable by definition. The URL goes
    out exactly as the adapter built it (`vendor_url`: already percent-encoded), never decoded
    and normalised again."""
    try:
        async with session.request(
            request.method,
            URL(request.url, encoded=True),
            data=request.encoded_body(),
            headers=dict(request.headers),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            body = await response.content.read(MAX_RESPONSE_BYTES)
            return RawResponse(response.status, response.headers, body)
    except TimeoutError as exc:
        raise RetryableDeliveryError(
            "timeout", vendor_message=f"no answer within {timeout_s}s"
        ) from exc
    except aiohttp.ClientError as exc:
        raise RetryableDeliveryError("network_error", vendor_message=type(exc).__name__) from exc
