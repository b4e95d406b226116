"""The parts of `/openapi.json` that are not routes: what each error status means, the
headers that come with some, the security schemes and which of them each kind of caller uses.
"""

from __future__ import annotations

from typing import Any

from core.signing import SCHEME, SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER
from gateway.routing import Auth

_SIGNATURE: dict[str, list[str]] = {
    "signatureSource": [],
    "signatureTimestamp": [],
    "signature": [],
}
SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "source": [{"sourceToken": []}, _SIGNATURE],
    "admin": [{"adminToken": []}],
    "source_or_admin": [{"sourceToken": []}, {"adminToken": []}, _SIGNATURE],
    "none": [],
}

ERRORS: dict[int, str] = {
    400: "the body is not valid UTF-8 JSON",
    401: "missing or bad credentials (bearer token or request signature)",
    403: "credentials not allowed here: the admin token where a source must call, a source's "
    "token on an admin call, an event naming another source, a target the source may not use "
    "or an external id for one",
    404: "no such resource (or a path parameter that cannot name one)",
    408: "the body did not arrive within `gateway.body_timeout_s` of the headers "
    "(`body_timeout`); the connection is closed",
    409: "a conflict with what is stored: an external id that would change an identity link "
    "its source may only create (`link_conflict`, `link_mode: create`; nothing stored), a "
    "dead letter whose stored event no longer validates (it cannot be replayed), or an "
    "ordering reset while a delivery to the user is in flight (`pair_in_flight`, nothing "
    "cleared: retry after `Retry-After`)",
    410: "the dead letter's event is past its retention and no longer stored",
    412: "`If-Match` names another version of the resource than the stored one (SCIM)",
    413: "the body is larger than the limit (cut off while streaming)",
    415: "the body is not declared as Content-Type: application/json",
    422: "schema violation: `details` lists the path and message of every problem (for a "
    "query parameter, its name; unknown fields and query parameters are refused)",
    429: "the source is over its rate limit: retry after `Retry-After` seconds",
    501: "not offered by this service (SCIM `POST /.search` across resource types)",
    503: "Redis is unavailable (`redis_unavailable`), or too full for a new event "
    "(`storage_full`), or the gateway is reading too many request bodies at once "
    "(`overloaded`): nothing was accepted or changed; retry after `Retry-After`. Or too few "
    "replicas acknowledged the write in time (`replication_timeout`, with "
    "`redis.min_replicas_ack`): the event may be stored; retry with the same event_id "
    "(200 duplicate if it was)",
}
_RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "seconds",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "required": True,
            "description": "`Bearer`, or `Usersync-Signature` for a signature problem",
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}

SECURITY_SCHEMES: dict[str, Any] = {
    "sourceToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "a source's `token` (sources[].token in the config)",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`gateway.admin_token`",
    },
    "signatureSource": {
        "type": "apiKey",
        "in": "header",
        "name": SOURCE_HEADER,
        "description": "request signature, part 1 of 3: the source's name. The three headers "
        "go together, instead of (or with) the source's bearer token; a source with "
        "`require_signature` must sign.",
    },
    "signatureTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": TIMESTAMP_HEADER,
        "description": "request signature, part 2 of 3: unix seconds, within "
        "`gateway.signature_skew_s` of the gateway's clock",
    },
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": f"request signature, part 3 of 3: `{SCHEME}<hex "
        'HMAC-SHA256(hmac_secret, timestamp + "." + exact body bytes)>`; each signature is '
        "accepted once",
    },
}

DESCRIPTION = (
    "Canonical user-change events in; delivery to vendor APIs out. Every error is "
    "`ErrorBody`. Unknown fields are refused everywhere (and unknown query parameters by the "
    "dead-letter and vendor calls). aiohttp also answers HEAD for every GET, and 405 with "
    "`Allow` for a method a path does not have."
)
