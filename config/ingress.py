"""`gateway:` and `sources:`: how the gateway listens, and who may post what."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from config.common import (
    NAME_PATTERN,
    SHA256_HEX_PATTERN,
    LongSecret,
    Strict,
    one_token,
)

LinkMode = Literal["set", "create", "none"]
"""What a source's `user.external_ids` may do to identity links (`sources[].link_mode`)."""
ADMIN_SETTER = "admin"
"""Who set an identity link through the admin API (a link set by an event shows its source's
name, so no source may take this one)."""


class GatewaySettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    admin_token: LongSecret | None = Field(
        default=None, description="bearer token of the admin calls (at least 16 characters)"
    )
    admin_token_sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX_PATTERN,
        description="instead of admin_token: the hex SHA-256 of the admin token",
    )
    batch_max_events: int = Field(default=100, ge=1, le=10_000)
    signature_skew_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="a signed request's timestamp may be this far from the gateway's clock",
    )
    max_future_skew_s: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="an event's occurred_at may be at most this far ahead of the gateway's "
        "clock (else 422): a far-future time would make every later change of its fields stale",
    )
    require_signatures: bool = Field(
        default=False,
        description="every source must sign its requests (each needs an hmac_secret)",
    )
    max_inflight_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024 * 1024 * 1024,
        description="request body bytes this process reads at once, all connections together; "
        "a body that would pass it is refused with 503 `overloaded` and Retry-After",
    )
    header_timeout_s: float = Field(
        default=10,
        gt=0,
        le=300,
        description="a connection must send a request's headers within this; else it is closed",
    )
    body_timeout_s: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="a request's whole body must arrive within this of its headers; else 408",
    )
    keepalive_timeout_s: float = Field(
        default=15,
        gt=0,
        le=3600,
        description="an idle keep-alive connection is closed after this",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="open connections per process; past it the oldest idle one is closed, "
        "or the new one answered 503 `overloaded` and closed when none is idle",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="processes serving the gateway's port (SO_REUSEPORT, started and restarted "
        "by the command's own process); 1: the command's process serves it itself",
    )
    drain_delay_s: float = Field(
        default=0,
        ge=0,
        le=300,
        description="on SIGTERM the gateway answers /readyz 503 `shutting_down` and keeps "
        "serving this long before it stops accepting connections, so a load balancer polling "
        "/readyz takes it out first (counted in shutdown_grace_s)",
    )

    @model_validator(mode="after")
    def _admin_token_once(self) -> GatewaySettings:
        one_token("admin_token", self.admin_token, self.admin_token_sha256, required=False)
        return self

    @property
    def admin_digest(self) -> bytes | None:
        """SHA-256 of the admin token, or None when the config has no admin token."""
        return one_token("admin_token", self.admin_token, self.admin_token_sha256, required=False)


class SourceRateLimit(Strict):
    per_second: float = Field(gt=0, le=100_000, description="event posts per second, sustained")
    burst: int = Field(ge=1, le=100_000, description="posts allowed at once after a quiet spell")


DEFAULT_SOURCE_RATE = SourceRateLimit(per_second=1000, burst=2000)
"""A source's rate limit when its config gives none: far above what an HR system or an IdP
posts, low enough that one source's credentials cannot fill Redis in seconds."""


class SourceSettings(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    token: LongSecret | None = Field(
        default=None, description="bearer token, at least 16 characters"
    )
    token_sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX_PATTERN,
        description="instead of token: the hex SHA-256 of the bearer token",
    )
    hmac_secret: LongSecret | None = Field(
        default=None, description="key of the request signatures, at least 16 characters"
    )
    require_signature: bool = Field(
        default=False, description="refuse this source's requests that are not signed"
    )
    rate_limit: SourceRateLimit | None = Field(
        default=DEFAULT_SOURCE_RATE,
        description="event posts allowed, all gateway processes together; left out: 1000/s, "
        "burst 2000; null: no limit",
    )
    allowed_targets: list[str] | None = Field(
        default=None, description="vendor instances this source may target; left out: all"
    )
    link_mode: LinkMode = Field(
        default="set",
        description="what the source's user.external_ids may do to identity links: set "
        "(create and change), create (create a missing link, never change one: a different id "
        "is a 409 link_conflict), none (external ids refused, 422 links_not_allowed)",
    )
    cloudevents_type_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$",
        description="what this source's CloudEvent types start with, stripped before the "
        "event type is read (e.g. `com.example.` takes `com.example.user.updated`); a type "
        "without it is refused; left out: types are the bare `user.updated`, ...",
    )
    scim: bool = Field(
        default=False,
        description="this source's identity provider may provision users through the SCIM 2.0 "
        "service provider at /scim/v2, authenticated by the source's bearer token",
    )

    @model_validator(mode="after")
    def _credentials(self) -> SourceSettings:
        one_token("token", self.token, self.token_sha256, required=True)
        if self.require_signature and self.hmac_secret is None:
            raise ValueError("require_signature needs an hmac_secret")
        if self.scim and self.require_signature:
            raise ValueError(
                "scim: identity providers authenticate with the bearer token only, so a SCIM "
                "source cannot require_signature"
            )
        return self

    @property
    def token_digest(self) -> bytes:
        """SHA-256 of the source's bearer token, however the config gives it."""
        digest = one_token("token", self.token, self.token_sha256, required=True)
        assert digest is not None
        return digest
