"""The bodies the gateway answers, as pydantic models: what `/openapi.json` describes.

The handlers build their answers as plain dicts (the hot path stays a dict and `orjson`); these
models are the documentation of those dicts, and `tests/test_openapi.py` holds the two
together (schemathesis checks every answer of the live gateway against these schemas). They
forbid unknown fields, so a key a handler adds without adding it here fails that test.
Request bodies other than the event (`core.event.Event`) are here too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.event import VENDOR_ID_PATTERN
from core.status import TargetStatus


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------------


class ErrorDetail(_Answer):
    code: str = Field(
        description="machine-readable: malformed_json (400); unauthorized, bad_signature, "
        "stale_signature, replayed_signature, signature_required (401); forbidden, "
        "source_mismatch, target_not_allowed (403); not_found (404); method_not_allowed (405); "
        "link_conflict, unreplayable, pair_in_flight (409); expired (410); body_too_large (413); "
        "unsupported_media_type (415); schema_violation, no_targets, secrets_not_configured, "
        "links_not_allowed (422); rate_limited (429); redis_unavailable, "
        "replication_timeout (503)"
    )
    message: str = Field(description="for people")
    details: Any = Field(
        description="a schema violation: a list of {path, message}, one per problem (for a "
        "query parameter, path is its name); otherwise code-specific or null"
    )


class ErrorBody(_Answer):
    """Every error answer."""

    error: ErrorDetail


# -- events ---------------------------------------------------------------------------------


class Acceptance(_Answer):
    """`POST /v1/events` 202: the event is stored in Redis and queued for every target."""

    event_id: str
    status: Literal["accepted"]
    targets: list[str] = Field(description="the vendor instances it will be delivered to")
    status_url: str = Field(description="its `GET /v1/events/{event_id}`")


class DuplicateAcceptance(_Answer):
    """200: the event id was already accepted from this source; the original acceptance,
    whatever the new body says. Nothing is stored or sent again."""

    event_id: str
    status: Literal["accepted"]
    targets: list[str]
    status_url: str
    duplicate: Literal[True]


class EventStatus(_Answer):
    """`GET /v1/events/{event_id}`: the delivery status of each target."""

    event_id: str
    source: str
    user_id: str | None = Field(description="null only if the stored event no longer parses")
    received_at: str = Field(description="when the gateway accepted it, UTC, ms")
    targets: dict[str, TargetStatus] = Field(description="vendor instance -> its status")


class Omission(_Answer):
    field: str = Field(description="a changed field left out of the request")
    reason: str


class PreviewRequest(_Answer):
    method: str
    url: str
    headers: dict[str, str] = Field(description="credentials replaced by ***")
    body: Any = Field(description="the exact body, secrets replaced by ***")


class PreviewSend(_Answer):
    outcome: Literal["send"]
    request: PreviewRequest
    omitted: list[Omission]


class PreviewSkipped(_Answer):
    outcome: Literal["skipped"]
    reason: str
    omitted: list[Omission]


class PreviewRefused(_Answer):
    outcome: Literal["refused"]
    reason: str = Field(description="e.g. no_link, schema, role_unmapped")
    message: str


PreviewTarget = Annotated[
    PreviewSend | PreviewSkipped | PreviewRefused, Field(discriminator="outcome")
]


class Preview(_Answer):
    """`POST /v1/events:preview`: what each target would receive; nothing stored or sent."""

    event_id: str
    targets: dict[str, PreviewTarget]


class BatchResult(_Answer):
    index: int = Field(ge=0, description="the event's position in `events`")
    event_id: str | None = Field(
        description="the item's event_id as sent (null if it has none that is a string)"
    )
    status: int = Field(description="what `POST /v1/events` would have answered for it")
    body: Acceptance | DuplicateAcceptance | ErrorBody = Field(
        description="what `POST /v1/events` would have answered for it"
    )


class BatchAnswer(_Answer):
    """`POST /v1/events:batch` 200: one result per event, in order, and the counts."""

    results: list[BatchResult]
    accepted: int = Field(ge=0, description="results with status 202")
    duplicates: int = Field(ge=0, description="results with status 200")
    refused: int = Field(ge=0, description="results with a 4xx status")


# -- links ----------------------------------------------------------------------------------


class LinkRequest(_Answer):
    """`PUT /v1/users/{user_id}/links/{vendor}`: the user's id at that vendor instance."""

    id: str = Field(pattern=VENDOR_ID_PATTERN, description="1-200 characters, no control character")


def _set_by() -> Any:
    return Field(
        description="who gave the link its current id: a source's name (from an event's "
        "`user.external_ids`) or `admin` (this API); null for a link stored before this was kept"
    )


def _set_at() -> Any:
    return Field(description="when, UTC, ms; null as for set_by")


class Link(_Answer):
    user_id: str
    vendor: str
    id: str
    set_by: str | None = _set_by()
    set_at: str | None = _set_at()


class LinkDetail(_Answer):
    id: str
    set_by: str | None = _set_by()
    set_at: str | None = _set_at()


class Links(_Answer):
    user_id: str
    links: dict[str, str] = Field(description="vendor instance -> the user's id there")
    details: dict[str, LinkDetail] = Field(
        description="vendor instance -> its id, and who set it when (same vendors as links)"
    )


# -- dead letters ---------------------------------------------------------------------------


class Attempt(BaseModel):
    """One call that carried the event (the worker may record more keys than these)."""

    model_config = ConfigDict(extra="allow")

    at: str
    attempt: int
    http_status: int | None
    duration_ms: float
    coalesced: int = Field(description="events the call carried")
    outcome: str
    error: str | None


class DeadLetter(_Answer):
    id: str = Field(description="{source}:{event_id}:{vendor}")
    source: str
    event_id: str
    vendor: str
    user_id: str | None = Field(description="null once the event is past its retention")
    dead_at: str
    received_at: str | None
    status: TargetStatus | None
    expired: bool = Field(description="its event is past retention: no longer replayable")


class DeadLetterDetail(_Answer):
    id: str
    source: str
    event_id: str
    vendor: str
    user_id: str | None
    dead_at: str
    received_at: str | None
    status: TargetStatus | None
    expired: bool
    history: list[Attempt] = Field(description="the attempts, oldest first (the last 20)")
    event: dict[str, Any] | None = Field(description="the stored event, secrets masked")


class DeadLetterPage(_Answer):
    dead_letters: list[DeadLetter] = Field(description="newest first")
    total: int = Field(ge=0, description="letters matching the filters, whatever the page")
    next_cursor: str | None = Field(description="`cursor` of the next page; null on the last")


class Replayed(_Answer):
    id: str
    status: Literal["replayed"]
    status_url: str


class ReplayAll(_Answer):
    all: Literal[True]


class ReplayReport(_Answer):
    replayed: int = Field(ge=0)
    expired: int = Field(ge=0, description="past retention: dropped, not replayed")
    invalid: int = Field(ge=0, description="stored event no longer validates: left dead")


class Purged(_Answer):
    id: str
    status: Literal["purged"]


class PurgeReport(_Answer):
    purged: int = Field(ge=0)


# -- vendors, health ------------------------------------------------------------------------


class Circuit(_Answer):
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    open_for_s: float
    times_opened: int


class Rate(_Answer):
    configured_per_second: float
    burst: int
    effective_per_second: float = Field(description="lowered after a 429, recovering")
    paused_for_s: float
    times_throttled: int


class VendorState(_Answer):
    kind: str
    enabled: bool
    circuit: Circuit
    rate: Rate
    calls: dict[str, int] = Field(description="calls by outcome")
    usage: dict[str, int] = Field(description="usage counters the vendor reports")
    dead_letters: int


class Vendors(_Answer):
    vendors: dict[str, VendorState]


# -- ordering -------------------------------------------------------------------------------


class OrderingReset(_Answer):
    """`DELETE /v1/users/{user_id}/ordering`: the user's ordering state was cleared."""

    user_id: str
    vendors: list[str] = Field(description="the vendor instances whose pair state was cleared")
    applied_cleared: dict[str, int] = Field(
        description="vendor instance -> field orders cleared (what the vendor acknowledged)"
    )
    profile_cleared: int = Field(
        ge=0, description="name-part orders cleared from the user's profile (0 with `vendor`)"
    )


class Health(_Answer):
    status: Literal["ok"]


class Ready(_Answer):
    status: Literal["ready"]
    redis: Literal["ok"]
    config: Literal["loaded"]
