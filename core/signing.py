"""Request signatures of sources (docs/contract.md §2): HMAC-SHA256 over `timestamp + "." + body`.

Shared by the gateway, which verifies them, and the CLI's client, which makes them.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SOURCE_HEADER = "X-Usersync-Source"
TIMESTAMP_HEADER = "X-Usersync-Timestamp"
SIGNATURE_HEADER = "X-Usersync-Signature"
HEADERS = (SOURCE_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
SCHEME = "sha256="


def signature_hex(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `timestamp + "." + body` under the source's `hmac_secret`."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(
    source: str, secret: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The three headers that sign `body` (the exact bytes sent; b"" for a GET) as `source`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        SOURCE_HEADER: source,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: SCHEME + signature_hex(secret, timestamp, body),
    }
